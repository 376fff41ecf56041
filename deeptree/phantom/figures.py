"""Figures of notebook 01 that the shared viz module does not provide (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from deeptree.phantom.growth import DIAMETER_EXPONENT, AirwayTreeSpec, kitaoka_angle
from deeptree.phantom.stats import WEIBEL_DIAMETER_MM, generation_table
from deeptree.phantom.synth import LAYER_TISSUES
from deeptree.phantom.thorax import TISSUES


def plot_branching_rules(tree: AirwayTreeSpec):
    """Three panels: daughter/parent diameter and branching angle against the flow ratio
    (with Kitaoka's rules as curves), and mean diameter per generation against Weibel's.

    Returns
    -------
    matplotlib.figure.Figure
    """
    b = tree.branches
    kids = [c for c in b if c.generation >= 2]
    r = np.array([c.flow / b[c.parent].flow for c in kids])
    ratio = np.array([c.radius_mm / b[c.parent].radius_mm for c in kids])
    angle = []
    for c in kids:
        u, v = (np.subtract(x.end_mm, x.start_mm) for x in (b[c.parent], c))
        angle.append(
            np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))
        )
    grid = np.linspace(0.02, 0.98, 100)
    # 10 inches, not more: the book shrinks a figure to about 800 px, and the fonts with it
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.6))
    ax[0].scatter(r, ratio, s=6, alpha=0.5, label="phantom branches")
    ax[0].plot(grid, grid ** (1 / DIAMETER_EXPONENT), "k", label=f"r^(1/{DIAMETER_EXPONENT})")
    ax[0].set(xlabel="flow-dividing ratio r", ylabel="d_daughter / d_parent", title="diameter rule")
    ax[1].scatter(r, angle, s=6, alpha=0.5)
    ax[1].plot(grid, [np.degrees(kitaoka_angle(x)) for x in grid], "k")
    ax[1].set(xlabel="flow-dividing ratio r", ylabel="branching angle (deg)", title="angle rule")
    rows = generation_table(tree)
    g = [row["generation"] for row in rows]
    ax[2].semilogy(g, [row["diameter_mm"] for row in rows], "o-", label="phantom (mean)")
    ax[2].semilogy(range(len(WEIBEL_DIAMETER_MM)), WEIBEL_DIAMETER_MM, "k--", label="Weibel 1963")
    ax[2].set(xlabel="generation", ylabel="lumen diameter (mm)", title="diameter per generation")
    for a in ax[[0, 2]]:
        a.legend()
    fig.tight_layout()
    return fig


def plot_hu_histograms(samples: Mapping[str, Mapping[str, np.ndarray]], bins=None):
    """Normalised HU histograms per tissue, one line per source (e.g. phantom vs real CT).

    Parameters
    ----------
    samples : mapping source name -> mapping tissue -> 1D array of HU
        As returned by :func:`deeptree.phantom.stats.tissue_samples`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    bins = np.arange(-1100, 301, 10) if bins is None else bins
    tissues = list(next(iter(samples.values())))
    # at most 10 inches wide: the book shrinks a figure to about 800 px, and the fonts with it
    width = min(10.0, 3.4 * len(tissues))
    fig, axes = plt.subplots(1, len(tissues), figsize=(width, 3.4))
    for ax, tissue in zip(np.atleast_1d(axes), tissues, strict=True):
        for name, per_tissue in samples.items():
            values = per_tissue[tissue]
            ax.hist(
                values,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.5,
                label=f"{name} (median {np.median(values):.0f})",
            )
        ax.set(title=tissue, xlabel="HU", yticks=[])
        ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_synth_draws(cases, titles, *, window=(-1000.0, 1000.0)):
    """Label map and synthesised CTs side by side: one axial slice above the carina and one
    coronal slice through the trachea per case (:mod:`deeptree.phantom.synth`).

    Parameters
    ----------
    cases : sequence of deeptree.phantom.synth_cases.SynthCase
        The first one's label map is drawn in the first column.
    titles : sequence of str
        One per case.
    window : (float, float)
        Display window (HU); wide, so that dense contrast and bone stay distinct.

    Returns
    -------
    matplotlib.figure.Figure
    """

    def slices(case):
        airway = case.case.airway > 0
        _, jj, kk = np.nonzero(airway)
        top = kk.max()
        upper = kk > top - max(3, (top - kk.min()) // 6)  # the trachea
        j0 = int(np.median(jj[upper]))
        k0 = int(np.median(kk[upper]))
        return (lambda a: a[:, :, k0].T), (lambda a: a[:, j0, :].T)

    fig, axes = plt.subplots(2, len(cases) + 1, figsize=(3.2 * (len(cases) + 1), 6.4))
    axial, coronal = slices(cases[0])
    cmap = plt.get_cmap("tab20", len(TISSUES) + len(LAYER_TISSUES))
    for row, cut in enumerate((axial, coronal)):
        axes[row, 0].imshow(cut(cases[0].labels), cmap=cmap, origin="lower", interpolation="nearest",
                            vmin=-0.5, vmax=len(TISSUES) + len(LAYER_TISSUES) - 0.5)  # fmt: skip
    axes[0, 0].set_title("label map")
    for col, (case, title) in enumerate(zip(cases, titles, strict=True), start=1):
        axial, coronal = slices(case)
        for row, cut in enumerate((axial, coronal)):
            axes[row, col].imshow(cut(case.case.ct), cmap="gray", origin="lower",
                                  vmin=window[0], vmax=window[1])  # fmt: skip
        axes[0, col].set_title(title, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("axial, trachea")
    axes[1, 0].set_ylabel("coronal")
    fig.tight_layout()
    return fig
