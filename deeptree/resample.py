"""Voxel size: the spacing and intensity settings a model was trained at, and the resampling of
a CT to that spacing and of the result back onto the CT's own grid (MONAI transforms).

A network learns anatomy in voxels: one trained on 1.5 mm phantoms sees a 0.7 mm clinical CT's
airways twice as large. So every checkpoint records what it was trained at (:func:`training_record`,
written by the stage-1 and stage-2 training tasks):

``spacing``
    The voxel size of its training cases (mm per axis; the per-axis median when they differ).
``intensity``
    How the CT was normalised: ``{"window_hu": [low, high], "normalisation": ...}`` (clip to
    the HU window, map linearly to [0, 1]: ``deeptree.stage1.data.normalize_ct``).
``anatomical_scale`` (optional)
    The size of the training anatomy relative to an adult's, as the model sees it: real CT is
    run at ``spacing / anatomical_scale`` (:func:`real_ct_spacing`). The shipped demo weights
    record it (phantom chests at about half an adult's size; the value is chosen on
    validation CTs by :mod:`deeptree.real_scale`); a checkpoint without it is run at its
    training spacing.

``orientation``
    The voxel order it was trained in: always ``"RAS"`` (``deeptree.orientation``); a
    checkpoint without the record was trained on RAS phantoms.

``deeptree predict`` (:func:`deeptree.stage1.predict.predict_file`) and the two-stage
:func:`deeptree.pipeline.segment_file` then work on the model's grid (:class:`ModelGrid`):

0. the CT is brought to RAS voxel order (``deeptree.orientation``: flips and axis
   permutations, no interpolation), so that an LPS CT is not seen mirrored;
1. the CT (HU) is resampled to the checkpoint's spacing (divided by its anatomical scale) with ``monai.transforms.Spacing``
   (trilinear; the orientation and the corner of the field of view are kept);
2. the model runs there;
3. the result is resampled back onto the input's exact grid (same shape, same affine) with
   ``monai.transforms.ResampleToMatch``: a stage-1 airway *probability* trilinearly and then
   thresholded at 0.5 (the rule the model grid uses), which places the surface of a thin
   tube between the coarse voxels instead of in 2-voxel steps; a *mask* (the two-stage
   result, the anatomy classes) by nearest neighbour, because only a label exists there
   and nearest keeps each output voxel a voxel the model decided (upsampled, a
   26-connected mask stays one component; interpolating 0/1 and thresholding could cut
   the one-voxel bridges stage 2 just added);
4. the result goes back to the input's own voxel order by the exact inverse of step 0.

When the CT already has the checkpoint's spacing (every axis within :data:`SPACING_RTOL`)
nothing is resampled: the arrays go through unchanged, bit for bit (flipped and permuted
only, when the CT is not RAS). A checkpoint written
before the record existed falls back, with a warning, to the isotropic spacing of the
phantom profile it was trained on (``meta["profile"]``), and without a profile to the
CT's own spacing (no resampling).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deeptree.io import InputError, check_spacing, check_volume
from deeptree.orientation import Reorientation, check_orientation, orientation_record, reorientation
from deeptree.stage1.data import CT_WINDOW_HU

#: Spacings equal on every axis within this relative tolerance need no resampling (0.1 %:
#: float32 header round-off, and under half a voxel of drift across 500 voxels).
SPACING_RTOL = 1e-3

#: What ``deeptree.stage1.data.normalize_ct`` does, as recorded in a checkpoint.
NORMALISATION = "clip to window_hu, map linearly to [0, 1]"


def intensity_record(window: Sequence[float] = CT_WINDOW_HU) -> dict:
    """The intensity settings recorded in a checkpoint.

    Returns
    -------
    dict
        ``{"window_hu": [low, high], "normalisation": NORMALISATION}`` (HU, plain floats).
    """
    return {"window_hu": [float(w) for w in window], "normalisation": NORMALISATION}


def training_spacing(spacings: Sequence[Sequence[float]], name: str = "training cases") -> list:
    """The spacing a model is trained at: the per-axis median of its training cases'.

    Parameters
    ----------
    spacings : sequence of 3-float sequences (mm)
        One per training case (the cases are not resampled for training: a cohort of one
        spacing, as every phantom cohort is, gives exactly that spacing).
    name : str
        What to call the cases in errors.

    Returns
    -------
    list of 3 float (mm)

    Raises
    ------
    InputError
        No cases, or a bad spacing.
    """
    checked = [check_spacing(s, f"{name} spacing") for s in spacings]
    if not checked:
        raise InputError(f"{name}: no cases to take the training spacing from")
    return [float(v) for v in np.median(np.asarray(checked, float), axis=0)]


def training_record(spacings: Sequence[Sequence[float]], name: str = "training cases") -> dict:
    """The ``spacing``, ``intensity`` and ``orientation`` entries of a checkpoint's metadata.

    Parameters
    ----------
    spacings : sequence of 3-float sequences (mm)
        The training cases' spacings in RAS voxel order (:func:`training_spacing`).

    Returns
    -------
    dict with ``"spacing"`` (3 floats, mm), ``"intensity"`` (:func:`intensity_record`) and
    ``"orientation"`` (``"RAS"``: the training cases are read in RAS voxel order).
    """
    return {
        "spacing": training_spacing(spacings, name),
        "intensity": intensity_record(),
        **orientation_record(),
    }


#: The phantom voxel size (mm) of each profile when checkpoints did not yet record their
#: spacing (before 2026-12-02). The profiles changed since (the cpu phantoms are 1 mm now,
#: issue 18), so an old checkpoint must not be read with today's profile.
LEGACY_PROFILE_SPACING_MM: dict[str, float] = {"smoke": 2.6, "cpu": 1.5, "gpu": 0.7}


def checkpoint_spacing(meta: dict, name: str = "checkpoint") -> tuple[float, float, float] | None:
    """The spacing a checkpoint was trained at, with the fallback for old checkpoints.

    Parameters
    ----------
    meta : dict
        A checkpoint's metadata (``LoadedModel.meta``).
    name : str
        What to call the checkpoint in warnings and errors.

    Returns
    -------
    tuple of 3 float (mm), or None
        ``meta["spacing"]``; without it (a checkpoint written before the record), the
        isotropic phantom spacing ``meta["profile"]`` had then
        (:data:`LEGACY_PROFILE_SPACING_MM`) with a ``UserWarning``; without a
        known profile either, None with a ``UserWarning`` (the CT is used at its own
        spacing).

    Raises
    ------
    InputError
        A recorded spacing that is not 3 positive numbers; a recorded intensity window
        other than the one this code normalises with (``CT_WINDOW_HU``); a recorded
        orientation other than RAS (``deeptree.orientation.check_orientation``).
    """
    check_intensity(meta, name)
    check_orientation(meta, name)
    if meta.get("spacing") is not None:
        return check_spacing(meta["spacing"], f"{name}: recorded spacing")
    profile = meta.get("profile")
    if profile in LEGACY_PROFILE_SPACING_MM:
        mm = LEGACY_PROFILE_SPACING_MM[profile]
        warnings.warn(
            f"{name}: the checkpoint records no training spacing (written before it was "
            f"recorded); assuming the phantoms its profile {profile!r} had then: {mm:g} mm "
            "isotropic",
            stacklevel=2,
        )
        return (mm, mm, mm)
    warnings.warn(
        f"{name}: the checkpoint records neither a training spacing nor a profile; the CT is "
        "used at its own spacing (not resampled)",
        stacklevel=2,
    )
    return None


def real_ct_spacing(meta: dict, name: str = "checkpoint") -> tuple[float, float, float] | None:
    """The voxel size (mm) a real CT is resampled to for this checkpoint.

    ``checkpoint_spacing(meta) / meta["anatomical_scale"]``: a model trained on chests of
    half an adult's size at 0.8 mm sees a real chest as it saw its training anatomy when the
    real CT is at 1.6 mm. Without ``anatomical_scale`` (every checkpoint trained by the
    notebooks: their inputs are phantoms of the training cohort's size) the training spacing.

    Parameters
    ----------
    meta : dict
        A checkpoint's metadata (``LoadedModel.meta``).
    name : str
        What to call the checkpoint in warnings and errors.

    Returns
    -------
    tuple of 3 float (mm), or None (no recorded spacing: :func:`checkpoint_spacing`)

    Raises
    ------
    InputError
        A recorded anatomical scale that is not a positive finite number.
    """
    return anatomical_spacing(checkpoint_spacing(meta, name), meta, name)


def anatomical_spacing(
    spacing: Sequence[float] | None, meta: dict, name: str = "checkpoint"
) -> tuple[float, float, float] | None:
    """A training spacing divided by the checkpoint's ``anatomical_scale`` (if recorded).

    Parameters
    ----------
    spacing : 3 floats (mm) or None
        :func:`checkpoint_spacing`'s result (None passes through).
    meta : dict
        The checkpoint's metadata.
    name : str
        What to call the checkpoint in errors.

    Returns
    -------
    tuple of 3 float (mm), or None
    """
    scale = meta.get("anatomical_scale")
    if spacing is None or scale is None:
        return None if spacing is None else tuple(float(v) for v in spacing)
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        scale = float("nan")
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(
            f"{name}: recorded anatomical_scale {meta.get('anatomical_scale')!r} is not a "
            "positive number"
        )
    return tuple(float(v) / scale for v in spacing)


def check_intensity(meta: dict, name: str = "checkpoint") -> None:
    """Refuse a checkpoint trained with another HU window than ``CT_WINDOW_HU``.

    Parameters
    ----------
    meta : dict
        A checkpoint's metadata; one without ``"intensity"`` (older) passes.

    Raises
    ------
    InputError
        Naming the checkpoint, its window and this code's.
    """
    record = meta.get("intensity")
    if record is None:
        return
    window = [float(w) for w in record.get("window_hu", [])]
    if not np.allclose(window, CT_WINDOW_HU) or record.get("normalisation") != NORMALISATION:
        raise InputError(
            f"{name}: trained with intensity {record}; this version normalises with "
            f"{intensity_record()}"
        )


def same_spacing(a: Sequence[float], b: Sequence[float], rtol: float = SPACING_RTOL) -> bool:
    """True if two spacings (mm) agree on every axis within the relative ``rtol``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b))))


def affine_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (mm) of an affine: the norms of its first three columns (as MONAI reads it)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))


#: Bytes per output voxel that resampling holds at once: the float32 result, MONAI's sampling
#: grid (3 float32 coordinates per voxel) and the numpy copy returned.
RESAMPLE_BYTES_PER_VOXEL = 4 * (1 + 3 + 1)


def available_memory() -> int | None:
    """Bytes this process can still allocate: the system's ``MemAvailable`` and, under
    ``ulimit -v``, what is left of the address-space limit; None when neither is known."""
    import resource

    limits = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                used = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize:"))
            limits.append(max(0, soft - used))
        except (OSError, ValueError, StopIteration):
            pass
    return min(limits) if limits else None


def check_resample_memory(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float],
    name: str = "the volume",
) -> tuple[int, int, int]:  # fmt: skip
    """Refuse a resampling whose result does not fit in memory, before allocating it.

    Parameters
    ----------
    shape : 3 ints
        The input's shape.
    spacing, target : 3 floats (mm)
        Its voxel size and the one asked for.
    name : str
        The input, for the message.

    Returns
    -------
    tuple of 3 ints
        The output shape (about: MONAI's extent rule may add a voxel).

    Raises
    ------
    InputError
        The output needs more than :func:`available_memory` (``RESAMPLE_BYTES_PER_VOXEL``
        bytes per voxel): one line with the sizes and what to do.
    """
    out = tuple(int(np.ceil(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))
    need = int(np.prod(out, dtype=np.float64) * RESAMPLE_BYTES_PER_VOXEL)
    free = available_memory()
    if free is not None and need > free:
        raise InputError(
            f"resampling {name} ({'x'.join(map(str, shape))} voxels of "
            f"{'x'.join(f'{v:g}' for v in spacing)} mm) to {'x'.join(f'{v:g}' for v in target)} mm "
            f"gives {'x'.join(map(str, out))} voxels and needs about {need / 1e9:.1f} GB of memory, "
            f"{free / 1e9:.1f} GB are available; use a coarser --model-spacing (the checkpoint's "
            "by default), or crop the CT"
        )
    return out


def _meta_tensor(array: np.ndarray, affine: np.ndarray):
    from monai.data import MetaTensor

    data = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return MetaTensor(data, affine=torch.as_tensor(np.asarray(affine, float)))


def resample_to_spacing(
    array: np.ndarray, affine: np.ndarray, spacing: Sequence[float], mode: str = "bilinear",
    name: str = "the volume",
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Resample a volume to another voxel size with ``monai.transforms.Spacing``.

    Parameters
    ----------
    array : ndarray, shape (I, J, K), numeric
        E.g. a CT in HU. Not modified.
    affine : ndarray (4, 4)
        Its voxel-to-world affine (mm).
    spacing : 3 floats (mm)
        Target voxel size.
    mode : {"bilinear", "nearest"}
        Interpolation (``bilinear`` is trilinear in 3D). Outside the input: the border value.
    name : str
        The volume, for the message of :func:`check_resample_memory`.

    Returns
    -------
    array : ndarray of float32, shape (I', J', K')
        Covering the input's field of view (MONAI's extent rule).
    affine : ndarray of float64 (4, 4)
        Same orientation and first-voxel corner, columns scaled to ``spacing``.
    """
    from monai.transforms import Spacing

    spacing = check_spacing(spacing, "target spacing")
    check_resample_memory(np.shape(array), affine_spacing(affine), spacing, name)  # before allocating
    out = Spacing(pixdim=spacing, mode=mode, padding_mode="border", dtype=np.float32)(
        _meta_tensor(array, affine)
    )
    return out[0].numpy().astype(np.float32, copy=False), np.asarray(out.affine, float)


def resample_to_grid(
    array: np.ndarray,
    affine: np.ndarray,
    shape: Sequence[int],
    target_affine: np.ndarray,
    mode: str = "nearest",
) -> np.ndarray:
    """Resample a volume onto a given grid with ``monai.transforms.ResampleToMatch``.

    Parameters
    ----------
    array : ndarray, shape (I', J', K'), numeric
        Not modified.
    affine : ndarray (4, 4)
        Its affine.
    shape : 3 ints
        The target grid's shape.
    target_affine : ndarray (4, 4)
        The target grid's affine.
    mode : {"nearest", "bilinear"}
        Interpolation. Outside the input: 0.

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    destination = MetaTensor(
        torch.zeros((1, *(int(n) for n in shape)), dtype=torch.uint8),
        affine=torch.as_tensor(np.asarray(target_affine, float)),
    )
    out = ResampleToMatch(mode=mode, padding_mode="zeros", dtype=np.float32)(
        _meta_tensor(array, affine), destination
    )
    return out[0].numpy().astype(np.float32, copy=False)


@dataclass(frozen=True)
class ModelGrid:
    """A CT's own grid and the model's grid it is predicted on.

    Attributes
    ----------
    shape : 3 ints
        The input's shape.
    affine : ndarray (4, 4)
        The input's affine.
    model_affine : ndarray (4, 4)
        The model grid's affine (RAS voxel order; ``affine`` itself when the input is RAS
        and nothing is resampled).
    model_spacing : 3 floats (mm) or None
        The checkpoint's spacing (None: no record, no resampling).
    resampled : bool
        False when the voxel size is kept (spacings already match, or no record); the
        voxel order may still have been changed (``orientation``).
    orientation : deeptree.orientation.Reorientation or None
        The input's voxel order to RAS and back (None: the input is RAS).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    model_affine: np.ndarray
    model_spacing: tuple[float, float, float] | None
    resampled: bool
    orientation: Reorientation | None = None

    @property
    def reoriented(self) -> bool:
        """True when the input's voxel order is not RAS (flipped or permuted for the model)."""
        return self.orientation is not None and not self.orientation.identity

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The input's voxel size (mm)."""
        return affine_spacing(self.affine)


def to_model_grid(
    ct: np.ndarray,
    affine: np.ndarray,
    model_spacing: Sequence[float] | None,
    name: str = "CT",
) -> tuple[np.ndarray, ModelGrid]:
    """The CT on the model's grid: in RAS voxel order (``deeptree.orientation``), then at the
    model's spacing (trilinear ``Spacing``); unchanged if it is already there.

    Parameters
    ----------
    ct : ndarray, shape (I, J, K)
        HU. Not modified.
    affine : ndarray (4, 4)
        Its affine (mm).
    model_spacing : 3 floats (mm) or None
        :func:`checkpoint_spacing`; None: no resampling.
    name : str
        What to call the CT in errors.

    Returns
    -------
    ct : ndarray
        ``ct`` itself (identity path: RAS at the model's spacing), the same values flipped
        and permuted to RAS (same spacing), or float32 HU of shape (I', J', K').
    grid : ModelGrid
        What :func:`from_model_grid` needs to come back.

    Raises
    ------
    InputError
        A bad CT, a non-finite or singular affine (``deeptree.io_checks.check_affine``), a bad
        model spacing.
    """
    ct = check_volume(ct, name)
    shape = tuple(int(n) for n in ct.shape)
    orientation = reorientation(affine, shape, f"{name} affine")
    affine = orientation.affine
    ct, ras_affine = orientation.to_ras(ct), orientation.ras_affine
    if model_spacing is None or same_spacing(affine_spacing(ras_affine), model_spacing):
        target = None if model_spacing is None else tuple(float(v) for v in model_spacing)
        return ct, ModelGrid(shape, affine, ras_affine, target, False, orientation)
    target = check_spacing(model_spacing, f"{name}: model spacing")
    resampled, model_affine = resample_to_spacing(ct, ras_affine, target, "bilinear")
    return resampled, ModelGrid(shape, affine, model_affine, target, True, orientation)


def from_model_grid(array: np.ndarray, grid: ModelGrid, kind: str) -> np.ndarray:
    """Bring a result on the model's grid back onto the input's exact grid.

    Parameters
    ----------
    array : ndarray, shape (I', J', K')
        On ``grid.model_affine``.
    grid : ModelGrid
        From :func:`to_model_grid`.
    kind : {"mask", "labels", "probability"}
        ``mask``: binary, nearest neighbour, uint8 out. ``labels``: integer classes,
        nearest, uint8 out. ``probability``: trilinear, thresholded ``> 0.5``, uint8 out
        (the module docstring says why).

    Returns
    -------
    ndarray of uint8, shape ``grid.shape``
        ``array`` as uint8 unchanged on the identity path (for ``probability``: ``> 0.5``),
        flipped and permuted back to the input's voxel order when it was not RAS.
    """
    if kind not in ("mask", "labels", "probability"):
        raise ValueError(f"kind must be 'mask', 'labels' or 'probability', got {kind!r}")
    orientation = grid.orientation
    if not grid.resampled:
        array = np.asarray(array)
        out = (array > 0.5).astype(np.uint8) if kind == "probability" else array.astype(np.uint8)
        return orientation.from_ras(out) if orientation is not None else out
    mode = "bilinear" if kind == "probability" else "nearest"
    # back onto the input's grid in RAS voxel order, then (exactly) to its own voxel order
    shape, affine = (
        (orientation.ras_shape, orientation.ras_affine)
        if orientation is not None
        else (grid.shape, grid.affine)
    )
    back = resample_to_grid(array, grid.model_affine, shape, affine, mode)
    out = (back > 0.5) if kind == "probability" else np.rint(back)
    out = out.astype(np.uint8)
    return orientation.from_ras(out) if orientation is not None else out


def describe(grid: ModelGrid) -> str:
    """One line on what was resampled, e.g. ``0.70x0.70x1.00 mm -> 1.50x1.50x1.50 mm and back``."""

    def fmt(s):
        return "x".join(f"{v:.2f}" for v in s) + " mm"

    if grid.model_spacing is None:
        text = f"at its own spacing {fmt(grid.spacing)} (no model spacing)"
    elif not grid.resampled:
        text = f"at the model's spacing {fmt(grid.spacing)} (not resampled)"
    else:
        text = f"resampled {fmt(grid.spacing)} -> {fmt(grid.model_spacing)} and back"
    if grid.reoriented:
        text += f", voxel order {grid.orientation.codes} -> RAS and back"
    return text
