"""Figures of notebook 06: crop galleries, simulated samples, and where a repair's voxels come
from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deeptree.io import check_same_grid
from deeptree.pipeline import SegmentationResult, merge
from deeptree.stage2.data import Stage2Sample


def repair_labels(result: SegmentationResult) -> tuple[np.ndarray, np.ndarray]:
    """Label volumes of a result before and after the connection, for 3D figures.

    Returns
    -------
    before : ndarray of uint8, shape (I, J, K)
        The stage-1 mask: 1 = its main tree (largest component), 3 = the other pieces.
    after : ndarray of uint8, shape (I, J, K)
        The final mask: 1 = stage-1 voxels, 2 = voxels the connector added; 3 = stage-1
        voxels left out of the final component. Colours: :data:`~deeptree.viz.colors.REPAIR_COLORS`.
    """
    first = result.stage1_mask.astype(bool)
    main = merge(first, np.zeros_like(first)).astype(bool)
    before = np.where(main, 1, np.where(first, 3, 0)).astype(np.uint8)
    final = result.mask.astype(bool)
    after = np.where(final & first, 1, np.where(final, 2, np.where(first, 3, 0))).astype(np.uint8)
    return before, after


def repair_sources(stage1_mask: np.ndarray, final_mask: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Where the voxels behind a repair's precision come from, against the ground truth.

    The stage-1 main tree (its largest 26-connected component) is split into true voxels
    (0 here) and false positives that touch the GT (within one voxel, 26-neighbourhood: a
    lumen drawn too wide) or lie elsewhere. What the final mask adds to that main tree is
    split into stage-1 pieces it joined and voxels the connector drew itself, each in or
    outside the GT. The paper's precision falls when the added voxels lie outside the GT.

    Parameters
    ----------
    stage1_mask, final_mask, gt : ndarray, shape (I, J, K), binary
        The stage-1 mask, the repaired mask (e.g. ``SegmentationResult.mask``) and the GT
        airway, on one grid. Not modified.

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        0 = background, a true stage-1 voxel, or a stage-1 voxel left out of the final
        mask; 1-6 as in :data:`~deeptree.viz.colors.SOURCE_NAMES` (colours :data:`~deeptree.viz.colors.SOURCE_COLORS`). The groups
        are disjoint; ``np.bincount(labels.ravel(), minlength=7)[1:]`` counts them.

    Raises
    ------
    InputError
        Masks of different shapes.
    """
    from scipy import ndimage

    first, final, truth = (np.asarray(m) > 0 for m in (stage1_mask, final_mask, gt))
    check_same_grid(first, final, "stage-1 mask", "final mask")
    check_same_grid(first, truth, "stage-1 mask", "ground truth")
    main = merge(first, np.zeros_like(first)).astype(bool)
    touching = ndimage.binary_dilation(truth, ndimage.generate_binary_structure(3, 3))
    added = final & ~main
    joined, drawn = added & first, added & ~first
    out = np.zeros(first.shape, np.uint8)
    false = main & ~truth
    out[false & touching] = 1
    out[false & ~touching] = 2
    out[joined & truth] = 3
    out[joined & ~truth] = 4
    out[drawn & truth] = 5
    out[drawn & ~truth] = 6
    return out


def plot_crop_gallery(items: Sequence[dict], title: str | None = None):
    """Training crops side by side: CT, attention and target through each crop's centre.

    Parameters
    ----------
    items : sequence of dict
        :class:`~deeptree.stage2.data.Stage2CropDataset` items (``"image"`` (2, X, Y, Z), ``"label"``
        (1, X, Y, Z), ``"negative"``).
    title : str, optional

    Returns
    -------
    matplotlib Figure with one column per crop and rows CT (gray), attention (magma, 0-1)
    and the target ``Y^B`` as a maximum projection along k over the CT slice (red).
    The slice is the axial plane (k) holding most target voxels (the middle one if none).
    """
    import matplotlib.pyplot as plt

    n = len(items)
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.6), squeeze=False)
    for col, item in enumerate(items):
        ct, att = item["image"][0].numpy(), item["image"][1].numpy()
        target = item["label"][0].numpy().astype(bool)
        per_k = target.sum(axis=(0, 1))
        k = int(np.argmax(per_k)) if per_k.any() else ct.shape[2] // 2
        kind = "negative" if item.get("negative") else "gap"
        axes[0, col].imshow(ct[:, :, k].T, cmap="gray", origin="lower", vmin=0, vmax=0.6)
        axes[0, col].set_title(f"{kind}, k={k}", fontsize=9)
        axes[1, col].imshow(att[:, :, k].T, cmap="magma", origin="lower", vmin=0, vmax=1)
        axes[2, col].imshow(ct[:, :, k].T, cmap="gray", origin="lower", vmin=0, vmax=0.6)
        overlay = np.zeros((*target.shape[:2], 4))
        overlay[target.any(axis=2)] = (1.0, 0.1, 0.1, 0.85)
        axes[2, col].imshow(overlay.transpose(1, 0, 2), origin="lower")
    for row, name in enumerate(("CT", "attention H_bar", "target Y^B (MIP)")):
        axes[row, 0].set_ylabel(name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_labels(sample: Stage2Sample) -> np.ndarray:
    """A simulation as one label volume (uint8, (I, J, K)): 1 broken airway, 2 the gaps
    ``Y^B``, 3 the fragments; colours :data:`~deeptree.viz.colors.SAMPLE_COLORS`."""
    out = np.zeros(sample.mask.shape, dtype=np.uint8)
    out[sample.mask] = 1
    out[sample.label] = 2
    out[sample.fragments] = 3
    return out
