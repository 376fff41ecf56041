"""The two-stage DeepTree pipeline: stage 1, breakage attention, stage 2 at every centre,
union, largest component.

:func:`segment` runs the whole method on a CT (paper Sec. 2.3, "When performing the
inference"):

1. stage 1 (``deeptree.stage1.predict.predict_stage1``, sliding window) -> initial mask;
2. breakage attention :math:`\\bar H` of that mask and its centres
   (``deeptree.attention``);
3. stage 2 at every centre: the (normalised CT, :math:`\\bar H`) box of the stage-2 patch
   size centred on it -> breakage probability
   (:func:`deeptree.stage2.predict.predict_breakage`); where boxes overlap, their
   probabilities are averaged and the predicted breakage is the mean ``> 0.5``
   (:func:`deeptree.stage2.predict.paste_patches`);
4. union of the stage-1 mask and the predicted breakage, then the largest 26-connected
   component (:func:`merge`).

Step 3's averaging is this implementation's choice (the paper only says that the outputs at
all breaking locations "are combined with the initial segmentation"): centres lie a few
voxels apart, so most voxels near a gap are seen by several boxes, and OR-ing the boxes'
masks let every box add its own false positives. Averaging is how nnU-Net combines
overlapping sliding-window predictions (there with Gaussian weights, which kept more of the
false positives here: ``benchmarks/HISTORY.md``, stage 2).

Step 4 keeps the component of the union that holds the stage-1 main tree (its largest
component). That is the union's largest component in practice; the rule guarantees that
stage 2 never drops a voxel of the stage-1 main tree, even if it joined some fragments into
a bigger piece elsewhere.

:func:`repair` runs steps 2-4 on a given mask (e.g. a stage-1 output read from disk), with
the stage-2 network or the non-learned gap filler of ``deeptree.stage2.gapfill`` in step 3
(a :data:`~deeptree.stage2.predict.Connector`); :func:`segment_file` runs :func:`segment` on a
NIfTI file, at the spacing the checkpoints were trained at (``deeptree.resample``).
:func:`deeptree.stage2.task.evaluate_gap_repair` and
:func:`deeptree.evaluation.compare.compare_on_stage1` measure what a connector adds.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deeptree.attention import breakage_attention, breakage_centres
from deeptree.checkpoints import LoadedModel
from deeptree.io import (
    InputError,
    check_same_grid,
    check_spacing,
    check_volume,
    read_nifti,
    write_nifti,
)
from deeptree.masks import as_binary_mask, label_components, largest_components
from deeptree.networks import choose_device
from deeptree.orientation import check_orientation
from deeptree.resample import (
    ModelGrid,
    anatomical_spacing,
    check_intensity,
    checkpoint_spacing,
    from_model_grid,
    same_spacing,
    to_model_grid,
)
from deeptree.stage1.data import normalize_ct
from deeptree.stage1.predict import predict_stage1
from deeptree.stage2.gapfill import fill_gaps
from deeptree.stage2.predict import (
    GAPFILL_CONNECTORS,
    Connector,
    Stage2Patch,
    _sync,
    paste_patches,
    predict_breakage,
    split_connector,
)

#: Non-learned connectors accepted as ``stage2`` (``deeptree.stage2.gapfill`` path kinds).
#: Most stage-1 components that attention and stage 2 consider (the largest ones; see
#: :func:`repair`). A trained stage 1 leaves tens (cpu models: ~25; a 512x512x320 stand-in
#: with simulated breakages: 235); an untrained one leaves tens of thousands of specks, whose
#: attention and stage-2 crops then cost minutes per CT (measured on the H200 run of
#: 2026-11-26, benchmarks/RESULTS.md).
MAX_COMPONENTS = 1000


@dataclass
class SegmentationResult:
    """Final mask and intermediate results of :func:`segment` / :func:`repair`.

    Attributes
    ----------
    mask : ndarray of uint8, shape (I, J, K)
        Final airway: one 26-connected component (empty only if stage 1 found nothing).
    stage1_mask : ndarray of uint8, shape (I, J, K)
        Stage-1 mask (input of the attention).
    h_bar : ndarray of float32, shape (I, J, K)
        Breakage attention of the stage-1 mask.
    centres : ndarray of int64, shape (n, 3)
        Breakage centres (voxels).
    patches : list of Stage2Patch
        Stage-2 predictions (empty for the gap filler or without stage 2).
    added : ndarray of bool, shape (I, J, K)
        Voxels the connector added to the stage-1 mask (before the largest component).
    affine : ndarray (4, 4)
        The input's affine (diagonal with the spacing if none was given).
    seconds : dict
        Wall time per step: ``stage1``, ``attention``, ``stage2``, ``merge``, ``total``.
    joins : list
        ``deeptree.stage2.gapfill.Join`` records (gap filler only).
    ignored_components : int
        Stage-1 components left out of the attention because there were more than
        ``max_components`` (smallest first); 0 normally.
    """

    mask: np.ndarray
    stage1_mask: np.ndarray
    h_bar: np.ndarray
    centres: np.ndarray
    patches: list[Stage2Patch]
    added: np.ndarray
    affine: np.ndarray
    seconds: dict = field(default_factory=dict)
    joins: list = field(default_factory=list)
    ignored_components: int = 0


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def merge(stage1_mask: np.ndarray, added: np.ndarray, name: str = "stage-1 mask") -> np.ndarray:
    """Union of the stage-1 mask and the connector's voxels, reduced to one component.

    Keeps the 26-connected component of the union that holds the largest component of the
    stage-1 mask (its main tree), so every voxel of the stage-1 main tree is kept; with an
    empty stage-1 mask, the largest component of ``added``.

    Parameters
    ----------
    stage1_mask, added : ndarray, shape (I, J, K), binary
        Not modified.

    Returns
    -------
    ndarray of uint8, shape (I, J, K), one component (or empty).
    """

    first = as_binary_mask(stage1_mask, name, allow_empty=True)
    extra = as_binary_mask(added, "added voxels", allow_empty=True)
    check_same_grid(first, extra, name, "added voxels")
    union = first | extra
    labels, n = label_components(union)
    if n == 0:
        return np.zeros(union.shape, dtype=np.uint8)
    first_labels, n_first = label_components(first)
    if n_first:
        sizes = np.bincount(first_labels.ravel())
        sizes[0] = 0
        anchor = np.unravel_index(np.argmax(first_labels == int(np.argmax(sizes))), first.shape)
        keep = labels[anchor]
    else:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        keep = int(np.argmax(sizes))
    return (labels == keep).astype(np.uint8)


def repair(
    stage1_mask: np.ndarray,
    ct: np.ndarray,
    stage2: Connector,
    *,
    stage2_patch: Sequence[int] | None = None,
    alpha: float | None = None,
    centre_threshold: float | None = None,
    normalized: bool = False,
    affine: np.ndarray | None = None,
    device=None,
    amp: bool = True,
    batch_size: int = 4,
    max_gap: float = 15.0,
    max_components: int | None = MAX_COMPONENTS,
    name: str = "CT",
) -> SegmentationResult:
    """Attention, connector at every centre, union and largest component on a given mask.

    Parameters
    ----------
    stage1_mask : ndarray, shape (I, J, K), binary
        The mask to repair (a stage-1 output). Not modified.
    ct : ndarray, shape (I, J, K)
        HU (or normalised with ``normalized=True``). Not modified.
    stage2 : Connector
        The stage-2 network (a bare module needs ``stage2_patch``; the
        :class:`~deeptree.checkpoints.LoadedModel` of
        :func:`~deeptree.stage2.predict.load_stage2_model` carries its patch size, alpha and
        threshold), one of
        ``"gapfill"``/``"gapfill-straight"``/``"gapfill-intensity"`` for the non-learned
        filler, or None (no connection: largest component of the stage-1 mask).
    stage2_patch : 3 ints, optional
    alpha, centre_threshold : float, optional
        Attention range (voxels) and centre threshold; default from the checkpoint meta,
        else the paper's 5 and 0.5.
    normalized : bool
        ``ct`` is already normalised to [0, 1].
    affine : ndarray (4, 4), optional
        Carried to the result (default: identity).
    device, amp, batch_size
        Stage-2 network inference.
    max_gap : float
        Longest gap the filler joins (voxels).
    max_components : int or None
        When the mask has more 26-connected components than this, only the largest
        ``max_components`` enter the attention map (so no centre, crop or join is made for
        the others; a ``UserWarning`` says how many were left out, as does
        ``result.ignored_components``). The left-out voxels stay in the union; the final
        largest component drops them unless they touch it. The paper's attention uses every
        component; a stage-1 mask in thousands of pieces means stage 1 failed, and this
        bound keeps the cost of such a case to seconds instead of minutes. None: no bound.
    name : str
        What to call the CT in errors.

    Returns
    -------
    SegmentationResult (``seconds["stage1"] = 0``)
    """

    t0 = time.perf_counter()
    ct = check_volume(ct, name)
    first = as_binary_mask(stage1_mask, "stage-1 mask", allow_empty=True)
    check_same_grid(ct, first, name, "stage-1 mask")
    model, meta = split_connector(stage2)
    alpha = float(alpha if alpha is not None else meta.get("alpha", 5.0))
    threshold = float(
        centre_threshold if centre_threshold is not None else meta.get("centre_threshold", 0.5)
    )
    image = np.asarray(ct, np.float32) if normalized else normalize_ct(ct)
    considered, ignored = largest_components(first, max_components)
    if ignored:
        warnings.warn(
            f"{name}: the stage-1 mask has {ignored + max_components} components; attention "
            f"and stage 2 use the largest {max_components} and leave out {ignored}",
            stacklevel=2,
        )
    t1 = time.perf_counter()
    h_bar = breakage_attention(considered, alpha)
    centres = breakage_centres(h_bar, threshold)
    t2 = time.perf_counter()
    patches: list[Stage2Patch] = []
    joins: list = []
    dev = choose_device(device)
    if model is None and stage2 is None:
        added = np.zeros(first.shape, dtype=bool)
    elif isinstance(model, str):
        filled = fill_gaps(
            first, centres, image, path=GAPFILL_CONNECTORS[model], max_distance=max_gap
        )
        added, joins = filled.added, filled.joins
    else:
        patch = stage2_patch if stage2_patch is not None else meta.get("patch_size")
        if patch is None:
            raise InputError(
                "stage 2: give stage2_patch with a bare network (or pass a LoadedModel)"
            )
        patches = predict_breakage(
            model, image, h_bar, centres, patch, device=dev, batch_size=batch_size, amp=amp
        )
        added = paste_patches(first.shape, patches)
        _sync(dev)
    t3 = time.perf_counter()
    final = merge(first, added)
    t4 = time.perf_counter()
    return SegmentationResult(
        mask=final,
        stage1_mask=first.astype(np.uint8),
        h_bar=h_bar,
        centres=centres,
        patches=patches,
        added=added,
        affine=np.eye(4) if affine is None else np.asarray(affine, dtype=float),
        seconds={
            "stage1": 0.0,
            "prepare": t1 - t0,
            "attention": t2 - t1,
            "stage2": t3 - t2,
            "merge": t4 - t3,
            "total": t4 - t0,
        },
        joins=joins,
        ignored_components=ignored,
    )


def segment(
    ct: np.ndarray,
    stage1: torch.nn.Module | LoadedModel | np.ndarray,
    stage2: Connector,
    spacing: Sequence[float] | None = None,
    *,
    affine: np.ndarray | None = None,
    stage1_patch: Sequence[int] | None = None,
    stage2_patch: Sequence[int] | None = None,
    overlap: float | None = None,
    alpha: float | None = None,
    centre_threshold: float | None = None,
    device=None,
    amp: bool = True,
    batch_size: int = 4,
    max_components: int | None = MAX_COMPONENTS,
    name: str = "CT",
) -> SegmentationResult:
    """The two-stage DeepTree segmentation of a CT (see the module docstring).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        HU. Not modified.
    stage1 : torch.nn.Module, LoadedModel or ndarray
        The stage-1 network (a bare module needs ``stage1_patch``; the
        :class:`~deeptree.checkpoints.LoadedModel` of
        :func:`~deeptree.stage1.predict.load_stage1_model` carries its patch size and
        overlap), or a precomputed stage-1 mask of the CT's shape.
    stage2
        As in :func:`repair`.
    spacing : 3 floats (mm), optional
        Used for the default affine (diagonal) when ``affine`` is None.
    affine : ndarray (4, 4), optional
        The input's affine, returned unchanged in the result.
    stage1_patch, stage2_patch : 3 ints, optional
        Patch sizes for bare networks.
    overlap : float, optional
        Stage-1 sliding-window overlap (default: the model's, else 0.5).
    alpha, centre_threshold, device, amp, batch_size, max_components
        As in :func:`repair`.

    Returns
    -------
    SegmentationResult
        ``seconds`` holds each step's wall time (``stage1``, ``attention``, ``stage2``,
        ``merge``, ``total``).

    Raises
    ------
    InputError
        Bad CT, spacing or affine; a stage-1 mask of another shape; a bare network without
        its patch size; an unknown connector.
    """

    t0 = time.perf_counter()
    ct = check_volume(ct, name)
    if affine is None:
        sp = check_spacing(spacing if spacing is not None else (1.0, 1.0, 1.0), f"{name} spacing")
        affine = np.diag([*sp, 1.0])
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{name} affine: expected a finite 4x4 matrix, got shape {affine.shape}")
    dev = choose_device(device)
    if isinstance(stage1, np.ndarray):
        stage1_mask = stage1
    else:
        model, meta = (
            (stage1.model, dict(stage1.meta)) if isinstance(stage1, LoadedModel) else (stage1, {})
        )
        patch = stage1_patch if stage1_patch is not None else meta.get("patch_size")
        if patch is None:
            raise InputError(
                "stage 1: give stage1_patch with a bare network (or pass a LoadedModel)"
            )
        ov = overlap if overlap is not None else meta.get("overlap", 0.5)
        stage1_mask = predict_stage1(
            model, ct, patch, overlap=ov, device=dev, amp=amp, name=name
        ).mask
        _sync(dev)
    t1 = time.perf_counter()
    result = repair(
        stage1_mask,
        ct,
        stage2,
        stage2_patch=stage2_patch,
        alpha=alpha,
        centre_threshold=centre_threshold,
        affine=affine,
        device=dev,
        amp=amp,
        batch_size=batch_size,
        max_components=max_components,
        name=name,
    )
    result.seconds["stage1"] = t1 - t0
    result.seconds["total"] = time.perf_counter() - t0
    return result


def model_spacing(
    stage1: torch.nn.Module | LoadedModel, stage2: Connector, name: str = "checkpoint"
) -> tuple[float, float, float] | None:
    """The spacing (mm) the two-stage pipeline runs a CT file at: the stage-1 checkpoint's.

    That is its training spacing divided by its recorded anatomical scale, if any
    (:func:`deeptree.resample.real_ct_spacing`: the shipped demo weights see real CT at
    coarser voxels than their half-size phantoms).

    Parameters
    ----------
    stage1 : torch.nn.Module or LoadedModel
        A bare network has no record (None, with the warning of
        :func:`deeptree.resample.checkpoint_spacing`).
    stage2 : Connector
        A stage-2 :class:`LoadedModel` must have been trained at the same spacing.

    Returns
    -------
    tuple of 3 float (mm) or None

    Raises
    ------
    InputError
        The two checkpoints record different spacings, or another intensity window or voxel
        orientation than this code runs (RAS).
    """
    meta1 = dict(stage1.meta) if isinstance(stage1, LoadedModel) else {}
    spacing = checkpoint_spacing(meta1, f"{name} (stage 1)")
    run_at = anatomical_spacing(spacing, meta1, f"{name} (stage 1)")
    if isinstance(stage2, LoadedModel):
        meta2 = dict(stage2.meta)
        check_intensity(meta2, f"{name} (stage 2)")
        check_orientation(meta2, f"{name} (stage 2)")
        other = meta2.get("spacing")
        if other is not None and spacing is not None and not same_spacing(spacing, other):
            raise InputError(
                f"{name}: stage 1 was trained at {list(spacing)} mm, stage 2 at {list(other)} mm; "
                "use checkpoints trained on the same cohort"
            )
    return run_at


def segment_file(
    ct_path: str | os.PathLike,
    out_path: str | os.PathLike,
    stage1: torch.nn.Module | LoadedModel,
    stage2: Connector,
    *,
    device=None,
    overlap: float | None = None,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Two-stage segmentation of one CT file, written as NIfTI on the input's grid.

    The CT is brought to RAS voxel order (``deeptree.orientation``) and resampled to the
    spacing the stage-1 checkpoint was trained at (:func:`model_spacing`), segmented there by
    :func:`segment`, and the final mask is brought back onto the CT's exact grid and voxel
    order (same shape and affine) by nearest neighbour and the exact inverse flips
    (``deeptree.resample``: only a mask exists at that point, and nearest keeps the one
    component when upsampling). A CT at the model's spacing is not resampled.

    Parameters
    ----------
    ct_path : path-like
        CT NIfTI (HU).
    out_path : path-like
        ``.nii.gz`` of the final mask (uint8), written atomically.
    stage1, stage2
        Loaded models as :func:`segment` takes them.
    spacing : 3 floats (mm), optional
        Run at this voxel size instead of :func:`model_spacing`'s.

    Returns
    -------
    Path
    """

    volume = read_nifti(ct_path)
    result, grid = segment_at_model_spacing(
        volume.array, volume.affine, stage1, stage2, spacing=spacing, device=device,
        overlap=overlap, name=str(ct_path),
    )  # fmt: skip
    return write_nifti(out_path, from_model_grid(result.mask, grid, "mask"), volume.affine)


def segment_at_model_spacing(
    ct: np.ndarray,
    affine: np.ndarray,
    stage1: torch.nn.Module | LoadedModel,
    stage2: Connector,
    *,
    spacing: Sequence[float] | None = None,
    device=None,
    overlap: float | None = None,
    name: str = "CT",
) -> tuple[SegmentationResult, ModelGrid]:
    """Bring a CT to RAS voxel order at the model's spacing and run :func:`segment` there.

    The shared first half of :func:`segment_file` and ``deeptree.real_ct.segment_volume``;
    bring any mask of the result back onto the CT's grid with
    ``deeptree.resample.from_model_grid(mask, grid, "mask")``.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        CT in HU. Not modified.
    affine : ndarray (4, 4)
        Its voxel-to-world affine (mm).
    stage1, stage2
        As :func:`segment` takes them.
    spacing : 3 floats (mm), optional
        Run at this voxel size instead of :func:`model_spacing`'s.
    device, overlap, name
        As :func:`segment`.

    Returns
    -------
    result : SegmentationResult
        On the model's grid (RAS voxel order; ``result.affine`` is ``grid.model_affine``).
    grid : deeptree.resample.ModelGrid
        The two grids (``grid.model_spacing``: where the model ran).
    """
    run_at = model_spacing(stage1, stage2) if spacing is None else spacing
    model_ct, grid = to_model_grid(ct, affine, run_at, name)
    result = segment(
        model_ct,
        stage1,
        stage2,
        affine=grid.model_affine,
        device=device,
        overlap=overlap,
        name=name,
    )
    return result, grid
