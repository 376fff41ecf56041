"""matplotlib figures: orthogonal planes, maximum-intensity projections and overlays.

Display conventions, the same in every figure of the project: arrays are in nibabel's
(i, j, k) order with k the cranio-caudal axis (head up); slices are shown in voxel orientation
with k pointing up, and the physical spacing sets the aspect ratio (no resampling). Colours
come from :mod:`deeptree.viz.colors`: true positive red, false negative blue, false positive
green (the paper's Fig. 3); the three anatomy classes in fixed colours; the attention map as a
translucent heat map; breakage centres magenta.

Overlays (``overlays=`` of :func:`show_planes` and of the slice viewers of
:mod:`deeptree.viz.widgets`) map a legend name to ``(mask, colour)`` or, for label volumes,
``(labels, {value: colour})`` or ``(labels, {value: colour}, {value: legend name})``;
:func:`case_overlays` builds them for a case (ground truth, prediction comparison, anatomy) in
the project's colours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba

from deeptree.anatomy import CLASS_NAMES
from deeptree.viz.colors import (
    CLASS_COLORS,
    COLORS,
    COMPARISON_COLORS,
    COMPARISON_NAMES,
    LUNG_WINDOW,
)

# --------------------------------------------------------------------------------------------
# matplotlib
# --------------------------------------------------------------------------------------------
_PLANES = {
    # name: (axis fixed, (row axis, column axis) of the shown image after transposition)
    "axial": 2,
    "coronal": 1,
    "sagittal": 0,
}


def _plane(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D slice of ``volume`` in ``plane`` at ``index``, transposed so that rows run
    along the second remaining axis (shown with ``origin="lower"``)."""
    axis = _PLANES[plane]
    return np.take(volume, index, axis=axis).T


def _aspect(spacing: Sequence[float], plane: str) -> float:
    axis = _PLANES[plane]
    col_axis, row_axis = [a for a in range(3) if a != axis]
    return float(spacing[row_axis]) / float(spacing[col_axis])


def _overlay_rgba(mask: np.ndarray, color, alpha: float) -> np.ndarray:
    """RGBA float image of a mask in one colour, or of a label image with ``color`` a mapping
    value -> colour (other values transparent)."""
    mask = np.asarray(mask)
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    if isinstance(color, Mapping):
        for value, c in color.items():
            rgba[mask == value] = to_rgba(c, alpha)
    else:
        rgba[mask.astype(bool)] = to_rgba(color, alpha)
    return rgba


def _legend_entries(overlays: Mapping) -> list[tuple[str, str]]:
    """(legend text, colour) of each overlay, one per label value for label overlays."""
    entries = []
    for name, spec in overlays.items():
        color = spec[1]
        if isinstance(color, Mapping):
            names = spec[2] if len(spec) > 2 else {}
            entries += [(names.get(v, f"{name} {v}"), c) for v, c in color.items()]
        else:
            entries.append((name, color))
    return entries


def _draw_legend(fig, overlays: Mapping) -> None:
    entries = _legend_entries(overlays)
    if entries:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in entries]
        fig.legend(
            handles,
            [t for t, _ in entries],
            loc="lower center",
            ncol=min(len(entries), 6),
            frameon=False,
        )


def show_planes(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    overlays: Mapping[str, tuple] | None = None,
    index: Sequence[int] | None = None,
    window: tuple[float, float] | None = LUNG_WINDOW,
    alpha: float = 0.6,
    title: str | None = None,
    cmap: str = "gray",
    colorbar: str | None = None,
):
    """Axial, coronal and sagittal slices of a volume, with optional mask overlays.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
        CT in HU (or any scalar volume).
    spacing : 3 floats
        Voxel size in mm; sets each panel's aspect ratio.
    overlays : mapping name -> (mask, colour) or (labels, {value: colour}[, {value: name}])
        Masks (or label volumes) of the volume's shape drawn in translucent colour, with a
        legend; see :func:`case_overlays`.
    index : 3 ints, optional
        Slice indices (i, j, k); default: the centre, or the centre of mass of the first
        overlay when given.
    window : (low, high) or None
        Display window in the volume's units (default the lung window, HU).
    alpha : float
        Overlay opacity.
    title : str, optional
    cmap : str
        Colour map of the volume.
    colorbar : str, optional
        When given, a colour bar of the volume's values (the window) with this label, units
        included (e.g. ``"H (voxels)"``); default none (a CT in the lung window needs none).

    Returns
    -------
    matplotlib.figure.Figure
    """
    volume = np.asarray(volume)
    overlays = dict(overlays or {})
    if index is None:
        index = _default_index(volume, overlays)
    vmin, vmax = window if window is not None else (float(volume.min()), float(volume.max()))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, plane in zip(axes, _PLANES, strict=True):
        i = index[_PLANES[plane]]
        image = ax.imshow(
            _plane(volume, plane, i),
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            origin="lower",
            aspect=_aspect(spacing, plane),
            interpolation="nearest",
        )
        for mask, color, *_ in overlays.values():
            ax.imshow(
                _overlay_rgba(_plane(mask, plane, i), color, alpha),
                origin="lower",
                aspect=_aspect(spacing, plane),
                interpolation="nearest",
            )
        ax.set_title(f"{plane} (slice {i})")
        ax.set_xticks([])
        ax.set_yticks([])
    _draw_legend(fig, overlays)
    if title:
        fig.suptitle(title)
    # a colour bar goes in after tight_layout (which ignores it), in a right margin kept free
    fig.tight_layout(rect=(0, 0.06 if overlays else 0, 0.94 if colorbar else 1, 1))
    if colorbar:  # the three panels share one window, so one bar reads them all
        fig.colorbar(image, ax=list(axes), label=colorbar, fraction=0.02, pad=0.02)
    return fig


def mip(
    volume: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    ax=None,
    cmap: str = "bone",
    title: str | None = None,
    window: tuple[float, float] | None = None,
):
    """Maximum intensity projection of a volume or mask along one axis.

    Parameters
    ----------
    volume : ndarray, shape (I, J, K)
        A mask (bool/uint8; anatomy labels project to their maximum class) or a scalar
        volume. For an airway in a CT, pass ``-ct`` or a mask: air is dark in HU.
    spacing : 3 floats
        mm, for the aspect ratio.
    axis : int
        Projection axis: 1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional
        Draw into it; otherwise a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    projection = np.asarray(volume).max(axis=axis).T
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    vmin, vmax = window if window is not None else (None, None)
    ax.imshow(
        projection,
        cmap=cmap,
        origin="lower",
        aspect=_aspect(spacing, plane),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"MIP ({plane})")
    return fig


def comparison_labels(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Voxel-wise comparison of a prediction with ground truth.

    Parameters
    ----------
    pred, gt : ndarray of bool or uint8 {0, 1}, shape (I, J, K)

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        0 background, 1 true positive, 2 false negative, 3 false positive
        (coloured red, blue, green by :data:`COMPARISON_COLORS`).
    """
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"comparison_labels: pred shape {pred.shape} != gt shape {gt.shape}")
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[pred & gt] = 1
    out[~pred & gt] = 2
    out[pred & ~gt] = 3
    return out


def _default_index(volume: np.ndarray, overlays: Mapping) -> tuple[int, int, int]:
    first = next(iter(overlays.values()), None)
    if first is not None and np.any(first[0]):
        return tuple(int(round(c)) for c in np.argwhere(first[0]).mean(axis=0))
    return tuple(s // 2 for s in volume.shape)


def case_overlays(
    gt: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    anatomy: np.ndarray | None = None,
    *,
    lung: np.ndarray | None = None,
) -> dict[str, tuple]:
    """Overlays of a case for :func:`show_planes` / :func:`deeptree.viz.widgets.slice_viewer`, in the colours of
    the napari layers of :func:`~deeptree.viz.napari_case.show_case`.

    Parameters
    ----------
    gt, pred : ndarray of bool/uint8, shape (I, J, K), optional
        Ground truth and prediction. Both: one comparison overlay (TP red, FN blue, FP green);
        one of them: a mask overlay in the airway colour.
    anatomy : ndarray of uint8 {0, 1, 2, 3}, optional
        Anatomy classes in :data:`CLASS_COLORS`.
    lung : ndarray of bool/uint8, optional

    Returns
    -------
    dict name -> overlay tuple
        Drawn in order: lung, anatomy, then the airway / comparison on top.
    """
    overlays: dict[str, tuple] = {}
    if lung is not None:
        overlays["lung"] = (np.asarray(lung).astype(bool), COLORS["lung"])
    if anatomy is not None:
        overlays["anatomy"] = (np.asarray(anatomy), CLASS_COLORS, CLASS_NAMES)
    if gt is not None and pred is not None:
        overlays["comparison"] = (comparison_labels(pred, gt), COMPARISON_COLORS, COMPARISON_NAMES)
    elif gt is not None:
        overlays["ground truth"] = (np.asarray(gt).astype(bool), COLORS["airway"])
    elif pred is not None:
        overlays["prediction"] = (np.asarray(pred).astype(bool), COLORS["airway"])
    return overlays


def label_mip(
    labels: np.ndarray,
    colors: Mapping[int, str],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    priority: Sequence[int] | None = None,
    names: Mapping[int, str] | None = None,
    ax=None,
    title: str | None = None,
):
    """Projection of a label volume along one axis, each pixel in the colour of the most
    important label on its ray.

    Parameters
    ----------
    labels : ndarray of int, shape (I, J, K)
    colors : mapping value -> colour
        Values not in the mapping (and 0) are not drawn.
    spacing : 3 floats
        mm, for the aspect ratio.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    priority : sequence of values, optional
        Most important first (default: the order of ``colors``). For a comparison,
        ``(2, 3, 1)`` puts missed (FN) and false branches over the true positives.
    names : mapping value -> legend text, optional
        Adds a legend.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = np.asarray(labels)
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    order = list(priority) if priority is not None else list(colors)
    shown = np.zeros(labels.shape[:axis] + labels.shape[axis + 1 :], dtype=labels.dtype)
    for value in reversed(order):  # paint the least important first
        shown[(labels == value).any(axis=axis)] = value
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.set_facecolor("black")
    ax.imshow(
        _overlay_rgba(shown.T, dict(colors), 1.0),
        origin="lower",
        aspect=_aspect(spacing, plane),
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"projection ({plane})")
    if names:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[v]) for v in names]
        ax.legend(handles, list(names.values()), loc="lower right", fontsize=8, framealpha=0.6)
    return fig


def comparison_mip(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    axis: int = 1,
    ax=None,
    title: str | None = None,
):
    """Projection of a prediction compared with ground truth: true positive red, false
    negative blue, false positive green (paper Fig. 3); errors drawn over true positives.

    Parameters
    ----------
    pred, gt : ndarray of bool/uint8, shape (I, J, K)
    spacing : 3 floats
        mm.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    return label_mip(
        comparison_labels(pred, gt),
        COMPARISON_COLORS,
        spacing,
        axis=axis,
        priority=(2, 3, 1),
        names=COMPARISON_NAMES,
        ax=ax,
        title=title,
    )


def mip_overlay(
    mask: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    heat: np.ndarray | None = None,
    centres: np.ndarray | None = None,
    axis: int = 1,
    ax=None,
    title: str | None = None,
    heat_alpha: float = 0.7,
):
    """Projection of a mask in grey with a translucent heat map (the attention map) and
    points (breakage centres) on top.

    Parameters
    ----------
    mask : ndarray of bool/uint8, shape (I, J, K)
        E.g. a stage-1 prediction or a broken mask.
    spacing : 3 floats
        mm.
    heat : ndarray of float in [0, 1], shape (I, J, K), optional
        Maximum along the rays, in the "magma" colormap, transparent where 0.
    centres : ndarray, shape (n, 3), optional
        Voxel (i, j, k), drawn as magenta circles.
    axis : int
        1 = coronal view (default), 0 = sagittal, 2 = axial.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    aspect = _aspect(spacing, plane)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    ax.imshow(
        np.asarray(mask).astype(np.uint8).max(axis=axis).T,
        cmap="gray",
        vmin=0,
        vmax=1.5,
        origin="lower",
        aspect=aspect,
        interpolation="nearest",
    )
    if heat is not None:
        projection = np.asarray(heat, dtype=np.float32).max(axis=axis).T
        rgba = plt.get_cmap(COLORS["attention"])(projection)
        rgba[..., 3] = heat_alpha * np.clip(projection, 0, 1)
        ax.imshow(rgba, origin="lower", aspect=aspect, interpolation="nearest")
    if centres is not None and len(centres):
        centres = np.asarray(centres).reshape(-1, 3)
        cols = [a for a in range(3) if a != axis]
        ax.scatter(
            centres[:, cols[0]],
            centres[:, cols[1]],
            s=60,
            facecolors="none",
            edgecolors=COLORS["gap"],
            linewidths=1.5,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"MIP ({plane})")
    return fig


def show_slices(
    panels: Mapping[str, tuple],
    *,
    aspect: float = 1.0,
    colorbar: bool = True,
    title: str | None = None,
):
    """Side-by-side 2D slices of different quantities on the same grid.

    Parameters
    ----------
    panels : mapping title -> (image, cmap, (low, high))
        ``image`` is a 2D array in (i, j) order of one axial slice (shown with j up);
        ``cmap`` a matplotlib colormap name or object (e.g. :func:`~deeptree.viz.colors.label_cmap`);
        ``(low, high)`` the display range. NaN pixels are left blank.
    aspect : float
        Pixel aspect ratio (spacing along j / spacing along i).
    colorbar : bool
        Add a colour bar to the last panel.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    image = None
    for ax, (name, (array, cmap, (low, high))) in zip(axes[0], panels.items(), strict=True):
        image = ax.imshow(
            np.asarray(array, dtype=float).T,
            origin="lower",
            cmap=cmap,
            vmin=low,
            vmax=high,
            aspect=aspect,
            interpolation="nearest",
        )
        ax.set(title=name, xticks=[], yticks=[])
    if colorbar and image is not None:
        fig.colorbar(image, ax=axes[0][-1], shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def is_blank(image: np.ndarray, min_std: float = 1.0) -> bool:
    """True if an RGB(A) image is (nearly) uniform: its RGB standard deviation is below
    ``min_std`` (on the 0-255 scale)."""
    image = np.asarray(image)
    return float(image[..., :3].std()) < min_std


def show_image(image: np.ndarray, title: str | None = None, ax=None):
    """Show an RGB(A) picture (a napari rendering) with matplotlib.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100))
    else:
        fig = ax.figure
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig
