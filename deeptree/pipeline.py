"""The two-stage DeepTree pipeline: stage 1, breakage attention, stage 2 at every centre,
union, largest component (the design's ``inference`` part for stage 2).

:func:`segment` runs the whole method on a CT (paper Sec. 2.3, "When performing the
inference"):

1. stage 1 (``deeptree.inference.predict_stage1``, sliding window) -> initial mask;
2. breakage attention :math:`\\bar H` of that mask and its centres
   (``deeptree.attention``);
3. stage 2 at every centre: the (normalised CT, :math:`\\bar H`) box of the stage-2 patch
   size centred on it -> breakage probability (:func:`predict_breakage`); where boxes
   overlap, their probabilities are averaged and the predicted breakage is the mean
   ``> 0.5`` (:func:`paste_patches`);
4. union of the stage-1 mask and the predicted breakage, then the largest 26-connected
   component (:func:`merge`).

Step 3's averaging is this implementation's choice (the paper only says that the outputs at
all breaking locations "are combined with the initial segmentation"): centres lie a few
voxels apart, so most voxels near a gap are seen by several boxes, and OR-ing the boxes'
masks let every box add its own false positives. Averaging is how nnU-Net combines
overlapping sliding-window predictions (there with Gaussian weights, which kept more of the
false positives here: ``benchmarks/RESULTS.md``, stage 2).

Step 4 keeps the component of the union that holds the stage-1 main tree (its largest
component). That is the union's largest component in practice; the rule guarantees that
stage 2 never drops a voxel of the stage-1 main tree, even if it joined some fragments into
a bigger piece elsewhere.

:func:`repair` runs steps 2-4 on a given mask (e.g. a stage-1 output read from disk), with
the stage-2 network or the non-learned gap filler of ``deeptree.gapfill`` in step 3, and
:func:`evaluate_gap_repair` / :func:`compare_on_stage1` measure what a connector adds.

Placement: the issue names ``deeptree/inference.py``; this module holds the stage-2 part so
that the stage-1 inference code stays untouched (the lead may re-export it).
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

from deeptree.io import InputError, check_same_grid, check_volume

#: Non-learned connectors accepted as ``stage2`` (``deeptree.gapfill`` path kinds).
#: Most stage-1 components that attention and stage 2 consider (the largest ones; see
#: :func:`repair`). A trained stage 1 leaves tens (cpu models: ~25; a 512x512x320 stand-in
#: with simulated breakages: 235); an untrained one leaves tens of thousands of specks, whose
#: attention and stage-2 crops then cost minutes per CT (measured on the H200 run of
#: 2026-11-26, benchmarks/RESULTS.md).
MAX_COMPONENTS = 1000

GAPFILL_CONNECTORS = {
    "gapfill": "straight",
    "gapfill-straight": "straight",
    "gapfill-intensity": "intensity",
}


@dataclass
class Stage2Patch:
    """Stage-2 prediction at one breakage centre.

    Attributes
    ----------
    centre : ndarray of int64, shape (3,)
        The breakage centre (voxels).
    start : ndarray of int64, shape (3,)
        First voxel of the box (may lie outside the volume; the box was padded).
    mask : ndarray of bool, shape (X, Y, Z)
        Predicted breakage in the box on its own (``probability > 0.5``).
    probability : ndarray of float32, shape (X, Y, Z), or None
        Breakage probability in the box; None for a hand-made mask (then the mask counts
        as probability 0 or 1 in :func:`paste_patches`).
    """

    centre: np.ndarray
    start: np.ndarray
    mask: np.ndarray
    probability: np.ndarray | None = None


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
        ``deeptree.gapfill.Join`` records (gap filler only).
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
# models
# --------------------------------------------------------------------------------------------
def load_stage2_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the stage-2 network from a training checkpoint.

    Returns
    -------
    model : AirwayUNet in eval mode on ``device``
    meta : dict
        ``filters``, ``patch_size``, ``alpha``, ``centre_threshold``, ...

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, or one of another stage.
    """
    from deeptree.networks import stage2_network
    from deeptree.train import load_model

    return load_model(checkpoint, 2, lambda net, meta: stage2_network(net), device)


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------
def predict_breakage(
    model: torch.nn.Module,
    image: np.ndarray,
    h_bar: np.ndarray,
    centres: np.ndarray,
    patch_size: Sequence[int],
    *,
    device=None,
    batch_size: int = 4,
    amp: bool = True,
) -> list[Stage2Patch]:
    """Stage 2 at every breakage centre.

    Parameters
    ----------
    model : torch.nn.Module
        Stage-2 network (2 input channels, 2 output channels); put in eval mode here.
    image : ndarray of float32, shape (I, J, K)
        Normalised CT (:func:`deeptree.data.normalize_ct`).
    h_bar : ndarray of float32, shape (I, J, K)
        Breakage attention.
    centres : ndarray of int, shape (n, 3)
        Voxels; each box of ``patch_size`` is centred on one (padded past the border).
    patch_size : 3 ints
        Each a multiple of 8.
    device : optional
        Default: CUDA if available.
    batch_size : int
        Boxes per forward pass.
    amp : bool
        bf16 autocast on CUDA.

    Returns
    -------
    list of Stage2Patch, one per centre, with the box's breakage probability and its own
    mask ``probability > 0.5``.
    """
    from deeptree.stage2 import crop_stage2, crop_start

    device = _device(device)
    size = tuple(int(p) for p in patch_size)
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    model = model.to(device).eval()
    use_amp = bool(amp and device.type == "cuda")
    patches: list[Stage2Patch] = []
    for first in range(0, len(centres), max(1, int(batch_size))):
        chunk = centres[first : first + batch_size]
        starts = [crop_start(c, size) for c in chunk]
        x = torch.stack([crop_stage2(image, h_bar, None, s, size)["image"] for s in starts])
        with (
            torch.no_grad(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
        ):
            logits = model(x.to(device))
            if isinstance(logits, (list, tuple)):
                logits = logits[0]
            probability = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
        patches += [
            Stage2Patch(c, s, p > 0.5, p.astype(np.float32))
            for c, s, p in zip(chunk, starts, probability, strict=True)
        ]
    return patches


def paste_patches(shape: Sequence[int], patches: Sequence[Stage2Patch]) -> np.ndarray:
    """Combine the patches into one breakage mask of ``shape``: a voxel is breakage when the
    mean breakage probability of the boxes that contain it exceeds 0.5 (parts of a box
    outside the volume are dropped).

    Parameters
    ----------
    shape : 3 ints
    patches : list of Stage2Patch
        A patch without ``probability`` counts with its mask as probability 0 or 1, so a
        voxel that only such patches cover is breakage when more than half of them say so.

    Returns
    -------
    ndarray of bool, shape ``shape``

    Notes
    -----
    Holds two float32 volumes of ``shape`` while it runs (about 670 MB for 512 x 512 x 320).
    """
    shape = tuple(int(n) for n in shape)
    total = np.zeros(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.float32)
    for p in patches:
        overlap = box_overlap(p.start, p.mask.shape, shape)
        if overlap is None:
            continue
        dst, src = overlap
        value = p.probability if p.probability is not None else p.mask
        total[dst] += np.asarray(value, dtype=np.float32)[src]
        count[dst] += 1.0
    return total > 0.5 * count


def box_overlap(
    start: Sequence[int], size: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Where the box ``[start, start + size)`` meets a volume of ``shape``.

    Returns
    -------
    (in_volume, in_box) : two tuples of 3 slices, or None when the box lies outside
    """
    in_volume, in_box = [], []
    for s, n, dim in zip(start, size, shape, strict=True):
        lo, hi = max(int(s), 0), min(int(s) + int(n), int(dim))
        if hi <= lo:
            return None
        in_volume.append(slice(lo, hi))
        in_box.append(slice(lo - int(s), hi - int(s)))
    return tuple(in_volume), tuple(in_box)


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
    from deeptree.attention import as_binary_mask, label_components

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
    stage2,
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
    stage2 : torch.nn.Module, (model, meta), str or None
        The stage-2 network (a module needs ``stage2_patch``; ``(model, meta)`` from
        :func:`load_stage2_model` carries its patch size, alpha and threshold), one of
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
    from deeptree.attention import as_binary_mask, breakage_attention, breakage_centres
    from deeptree.data import normalize_ct

    t0 = time.perf_counter()
    ct = check_volume(ct, name)
    first = as_binary_mask(stage1_mask, "stage-1 mask", allow_empty=True)
    check_same_grid(ct, first, name, "stage-1 mask")
    model, meta = _split_stage2(stage2)
    alpha = float(alpha if alpha is not None else meta.get("alpha", 5.0))
    threshold = float(
        centre_threshold if centre_threshold is not None else meta.get("centre_threshold", 0.5)
    )
    image = np.asarray(ct, np.float32) if normalized else normalize_ct(ct)
    considered, ignored = _largest_components(first, max_components)
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
    dev = _device(device)
    if model is None and stage2 is None:
        added = np.zeros(first.shape, dtype=bool)
    elif isinstance(model, str):
        from deeptree.gapfill import fill_gaps

        filled = fill_gaps(
            first, centres, image, path=GAPFILL_CONNECTORS[model], max_distance=max_gap
        )
        added, joins = filled.added, filled.joins
    else:
        patch = stage2_patch if stage2_patch is not None else meta.get("patch_size")
        if patch is None:
            raise InputError(
                "stage 2: give stage2_patch with a bare network (or pass (model, meta))"
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


def _largest_components(mask: np.ndarray, limit: int | None) -> tuple[np.ndarray, int]:
    """``mask`` restricted to its ``limit`` largest 26-connected components (ties: scan
    order), and how many components were left out. Returns ``mask`` itself when nothing is
    left out."""
    if limit is None:
        return mask, 0
    if limit < 1:
        raise InputError(f"max_components must be at least 1 or None, got {limit}")
    from deeptree.attention import label_components

    labels, n = label_components(mask)
    if n <= limit:
        return mask, 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.zeros(n + 1, dtype=bool)
    keep[1 + np.argsort(-sizes, kind="stable")[:limit]] = True
    return keep[labels], n - limit


def _split_stage2(stage2):
    """(model or connector name or None, meta) of the ``stage2`` argument."""
    if stage2 is None:
        return None, {}
    if isinstance(stage2, str):
        if stage2 not in GAPFILL_CONNECTORS:
            raise InputError(
                f"stage 2: unknown connector {stage2!r} (a network, or one of {', '.join(GAPFILL_CONNECTORS)})"
            )
        return stage2, {}
    if isinstance(stage2, tuple) and len(stage2) == 2:
        return stage2[0], dict(stage2[1])
    if isinstance(stage2, torch.nn.Module):
        return stage2, {}
    raise InputError(
        f"stage 2: expected a network, (model, meta), a connector name or None, got {type(stage2).__name__}"
    )


def segment(
    ct: np.ndarray,
    stage1,
    stage2,
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
    stage1 : torch.nn.Module, (model, meta) or ndarray
        The stage-1 network (a module needs ``stage1_patch``; ``(model, meta)`` as
        ``deeptree.inference.load_stage1_model`` returns carries its patch size and
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
    from deeptree.inference import predict_stage1
    from deeptree.io import check_spacing

    t0 = time.perf_counter()
    ct = check_volume(ct, name)
    if affine is None:
        sp = check_spacing(spacing if spacing is not None else (1.0, 1.0, 1.0), f"{name} spacing")
        affine = np.diag([*sp, 1.0])
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"{name} affine: expected a finite 4x4 matrix, got shape {affine.shape}")
    dev = _device(device)
    if isinstance(stage1, np.ndarray):
        stage1_mask = stage1
    else:
        model, meta = (stage1[0], dict(stage1[1])) if isinstance(stage1, tuple) else (stage1, {})
        patch = stage1_patch if stage1_patch is not None else meta.get("patch_size")
        if patch is None:
            raise InputError(
                "stage 1: give stage1_patch with a bare network (or pass (model, meta))"
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


def segment_file(
    ct_path: str | os.PathLike,
    out_path: str | os.PathLike,
    stage1,
    stage2,
    *,
    device=None,
    overlap: float | None = None,
) -> Path:
    """Two-stage segmentation of one CT file, written as NIfTI with the input's affine.

    Parameters
    ----------
    ct_path : path-like
        CT NIfTI (HU).
    out_path : path-like
        ``.nii.gz`` of the final mask (uint8), written atomically.
    stage1, stage2
        Loaded models as :func:`segment` takes them.

    Returns
    -------
    Path
    """
    from deeptree.io import read_nifti, write_nifti

    volume = read_nifti(ct_path)
    result = segment(
        volume.array,
        stage1,
        stage2,
        volume.spacing,
        affine=volume.affine,
        device=device,
        overlap=overlap,
        name=str(ct_path),
    )
    return write_nifti(out_path, result.mask, volume.affine)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def evaluate_gap_repair(
    samples: Sequence,
    stage2,
    patch_size: Sequence[int] | None = None,
    *,
    device=None,
    max_gap: float = 15.0,
) -> dict:
    """Share of simulated gaps a connector reconnects.

    For each ``deeptree.stage2.Stage2Sample`` (broken GT + fragments, its attention), the
    connector runs at every attention centre and its voxels are added to the sample's mask;
    a gap is *repaired* when its proximal and distal skeleton voxels lie in one
    26-connected component of the result.

    Parameters
    ----------
    samples : list of Stage2Sample
    stage2 : network, (model, meta), or a gap-filler name (see :func:`repair`)
    patch_size : 3 ints, optional
        For a bare network.
    device : optional
    max_gap : float
        Gap filler's longest join (voxels).

    Returns
    -------
    dict
        ``repair_rate`` (repaired / gaps), ``gaps``, ``repaired``, ``gap_dice`` (Dice of the
        added voxels against ``Y^B``, all samples pooled), ``fragments``,
        ``fragments_joined`` (fragments attached to a gap's proximal tree, the false
        connections), ``added_voxels``.
    """
    from deeptree.attention import breakage_centres, label_components
    from deeptree.gapfill import fill_gaps

    model, meta = _split_stage2(stage2)
    patch = patch_size if patch_size is not None else meta.get("patch_size")
    gaps = repaired = fragments = joined = 0
    tp = added_total = label_total = 0
    for sample in samples:
        centres = breakage_centres(sample.h_bar, meta.get("centre_threshold", 0.5))
        if isinstance(model, str):
            added = fill_gaps(
                sample.mask,
                centres,
                sample.source.image,
                path=GAPFILL_CONNECTORS[model],
                max_distance=max_gap,
            ).added
        else:
            patches = predict_breakage(
                model, sample.source.image, sample.h_bar, centres, patch, device=device
            )
            added = paste_patches(sample.mask.shape, patches) & ~sample.mask
        labels, _ = label_components(sample.mask | added)
        trees = set()
        for gap in sample.gaps:
            gaps += 1
            same = labels[gap.proximal_voxel] == labels[gap.distal_voxel]
            repaired += int(same)
            trees.add(int(labels[gap.proximal_voxel]))
        fragment_labels, n_frag = label_components(sample.fragments)
        fragments += n_frag
        for k in range(1, n_frag + 1):
            voxel = tuple(np.argwhere(fragment_labels == k)[0])
            joined += int(labels[voxel] in trees)
        tp += int((added & sample.label).sum())
        added_total += int(added.sum())
        label_total += int(sample.label.sum())
    return {
        "repair_rate": repaired / gaps if gaps else float("nan"),
        "gaps": gaps,
        "repaired": repaired,
        "gap_dice": 2 * tp / (added_total + label_total)
        if added_total + label_total
        else float("nan"),
        "fragments": fragments,
        "fragments_joined": joined,
        "added_voxels": added_total,
    }


def compare_on_stage1(
    cases: Sequence[dict],
    connectors: dict,
    *,
    device=None,
    protocol: str = "paper",
) -> list[dict]:
    """Components, TLD, BD, precision and DSC of stage-1 masks before and after each connector.

    Parameters
    ----------
    cases : list of dict
        Each with ``"id"``, ``"ct"`` (HU), ``"stage1"`` (binary mask), ``"gt"`` (binary GT)
        and ``"spacing"`` (mm).
    connectors : dict
        Name -> ``stage2`` argument of :func:`repair` (network, ``(model, meta)``, or a
        gap-filler name); ``"stage 1"`` (no connector) is always included first.
    device : optional
    protocol : {"paper", "atm22"}
        ``deeptree.metrics.airway_metrics`` protocol.

    Returns
    -------
    list of dict, one per case and method: ``case``, ``method``, ``n_components`` (of the
    mask the connector starts from, for ``"stage 1"``; of the final mask otherwise: 1),
    ``BD``, ``TLD``, ``precision``, ``DSC``, ``added_voxels``, ``centres``.
    """
    from deeptree.attention import label_components
    from deeptree.metrics import airway_metrics, prepare_ground_truth

    rows = []
    for case in cases:
        reference = prepare_ground_truth(
            np.asarray(case["gt"]) > 0, case["spacing"], name=f"{case['id']} GT"
        )
        methods = {"stage 1": None, **connectors}
        for method, connector in methods.items():
            result = repair(case["stage1"], case["ct"], connector, device=device)
            scored = result.stage1_mask if connector is None else result.mask
            m = airway_metrics(scored, reference, case["spacing"], protocol)
            rows.append(
                {
                    "case": case["id"],
                    "method": method,
                    "n_components": int(label_components(scored)[1]),
                    "BD": m["BD"],
                    "TLD": m["TLD"],
                    "precision": m["precision"],
                    "DSC": m["DSC"],
                    "added_voxels": int(result.added.sum()),
                    "centres": len(result.centres),
                }
            )
    return rows


def summarize_rows(rows: Sequence[dict]) -> dict:
    """Mean of the numeric columns of :func:`compare_on_stage1` rows per method.

    Returns
    -------
    dict method -> dict column -> float
    """
    out: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        out[method] = {
            k: float(np.mean([r[k] for r in mine]))
            for k in mine[0]
            if isinstance(mine[0][k], (int, float)) and not isinstance(mine[0][k], bool)
        }
    return out


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def predict_cli(args) -> int:
    """``deeptree predict --two-stage``: the final DeepTree mask of a CT file or a folder.

    Uses ``args.checkpoint`` (stage 1), ``args.stage2_checkpoint`` (stage 2) or
    ``args.gapfill`` (the non-learned filler instead), ``args.input`` (a ``.nii(.gz)`` or a
    folder of them), ``args.out`` (a folder, or a ``.nii.gz`` for one input), ``args.device``
    and ``args.overlap``. Each ``<id>_0000.nii.gz`` gives ``<out>/<id>.nii.gz`` (uint8, the
    CT's affine), written atomically.

    Returns
    -------
    int
        0 on success.
    """
    from deeptree.inference import load_stage1_model
    from deeptree.io import case_id_from_path, nifti_inputs

    if getattr(args, "classes", False):
        raise InputError("--classes is a stage-1 output; it is not available with --two-stage")
    inputs = nifti_inputs(args.input)
    device = _device(args.device)
    stage1 = load_stage1_model(args.checkpoint, device)
    if args.gapfill:
        stage2 = f"gapfill-{args.gapfill}"
    elif args.stage2_checkpoint:
        stage2 = load_stage2_model(args.stage2_checkpoint, device)
    else:
        raise InputError("--two-stage needs --stage2-checkpoint (or --gapfill straight|intensity)")
    out = Path(args.out)
    single_file = len(inputs) == 1 and out.name.endswith((".nii.gz", ".nii"))
    for path in inputs:
        target = out if single_file else out / f"{case_id_from_path(path)}.nii.gz"
        segment_file(path, target, stage1, stage2, device=device, overlap=args.overlap)
        print(f"{path.name} -> {target}")
    return 0


# --------------------------------------------------------------------------------------------
# figures and notebook support
# --------------------------------------------------------------------------------------------
#: Colours of :func:`repair_labels`: kept stage-1 voxels, voxels added by the connector
#: (the repaired gaps; pink as the paper's Fig. 3 arrows), stage-1 pieces left out.
REPAIR_COLORS: dict[int, str] = {1: "#e8c39e", 2: "#ff2fd0", 3: "#7f7f7f"}
REPAIR_NAMES: dict[int, str] = {1: "stage 1 (kept)", 2: "added by stage 2", 3: "stage 1, discarded"}


def repair_labels(result: SegmentationResult) -> tuple[np.ndarray, np.ndarray]:
    """Label volumes of a result before and after the connection, for 3D figures.

    Returns
    -------
    before : ndarray of uint8, shape (I, J, K)
        The stage-1 mask: 1 = its main tree (largest component), 3 = the other pieces.
    after : ndarray of uint8, shape (I, J, K)
        The final mask: 1 = stage-1 voxels, 2 = voxels the connector added; 3 = stage-1
        voxels left out of the final component. Colours: :data:`REPAIR_COLORS`.
    """
    first = result.stage1_mask.astype(bool)
    main = merge(first, np.zeros_like(first)).astype(bool)
    before = np.where(main, 1, np.where(first, 3, 0)).astype(np.uint8)
    final = result.mask.astype(bool)
    after = np.where(final & first, 1, np.where(final, 2, np.where(first, 3, 0))).astype(np.uint8)
    return before, after


SOURCE_NAMES: dict[int, str] = {
    1: "stage-1 false positive, touching the GT",
    2: "stage-1 false positive, elsewhere",
    3: "joined stage-1 piece, in the GT",
    4: "joined stage-1 piece, outside the GT",
    5: "drawn by the connector, in the GT",
    6: "drawn by the connector, outside the GT",
}
SOURCE_COLORS: dict[int, str] = {
    1: "#ffbf00", 2: "#2ca02c", 3: "#9ecae1", 4: "#d62728", 5: "#6baed6", 6: "#ff2fd0",
}  # fmt: skip


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
        mask; 1-6 as in :data:`SOURCE_NAMES` (colours :data:`SOURCE_COLORS`). The groups
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


def stage1_checkpoint_of_notebook05(run_dir) -> Path:
    """Where notebook 05 writes its stage-1 model: ``<run_dir>/05_stage1/run/last.pt``
    (``run_dir`` as resolved by ``deeptree.report.results_dir``)."""
    from deeptree.report import results_dir

    return results_dir(run_dir) / "05_stage1" / "run" / "last.pt"


def ensure_stage1_model(
    run_dir,
    profile: str,
    out_dir,
    *,
    checkpoint=None,
    variant: str = "amc+gul",
    seed: int = 0,
    device="cpu",
):
    """The stage-1 model for notebook 06: ``checkpoint`` if given, else notebook 05's if it
    ran in the same ``run_dir`` with the same profile, else one trained here on 05's cohort
    (same phantoms, same seeds).

    Parameters
    ----------
    run_dir : path-like or None
    profile : str
    out_dir : path-like
        Where an inline run goes (``out_dir/stage1_cohort``, ``out_dir/stage1``); resumed if
        it exists.
    checkpoint : path-like, optional
        A stage-1 ``last.pt`` to use as is.
    variant, seed
        As notebook 05's parameters.

    Returns
    -------
    model, meta, origin : AirwayUNet (eval mode), dict, str
        ``origin`` says which checkpoint was used.
    """
    from deeptree.config import get_config
    from deeptree.data import NOTEBOOK_COHORT, load_cohort, split_cases
    from deeptree.inference import load_stage1_model
    from deeptree.phantom import generate_cohort
    from deeptree.train import stage1_task, train

    if checkpoint is not None:
        model, meta = load_stage1_model(checkpoint, device)
        return model, meta, f"given: {checkpoint}"
    path = stage1_checkpoint_of_notebook05(run_dir)
    if path.is_file():
        model, meta = load_stage1_model(path, device)
        if meta.get("profile") == profile:
            return model, meta, f"notebook 05: {path}"
    out_dir = Path(out_dir)
    config = get_config(profile)
    n_train, _ = NOTEBOOK_COHORT[profile]
    generate_cohort(
        out_dir / "stage1_cohort",
        "gpu" if profile == "gpu" else profile,
        n_train,
        seed=seed,
        progress=False,
    )
    cases = load_cohort(out_dir / "stage1_cohort", out_dir / "stage1_cache")
    train_cases, val_cases = split_cases(cases, config.stage1_train.val_cases)
    task = stage1_task(
        train_cases, [], variant, config.stage1_net, config.stage1_train, profile=profile
    )
    result = train(
        task, config.stage1_train, out_dir / "stage1", resume=True, progress=False, device=device
    )
    model, meta = load_stage1_model(result.checkpoint, device)
    return model, meta, f"trained here: {result.checkpoint}"
