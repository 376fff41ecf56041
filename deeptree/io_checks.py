"""Plausibility and header-geometry checks of inputs, beyond shape and dtype.

What :func:`deeptree.io.read_nifti` and :func:`deeptree.io.load_case` check besides a finite
3D volume (docs/troubleshooting.md: "When something goes wrong"):

* values: a CT in Hounsfield units (:func:`check_ct_in_hu`), an airway mask that does not
  fill most of its volume (:func:`check_mask_fraction`), voxels thin enough for the 2 mm
  anatomy rule (:func:`warn_thick_slices`, :class:`ThickSliceWarning`);
* the header: data that the file and this machine's memory can hold, before any voxel is
  read (:func:`check_header_size`), a finite, invertible affine (:func:`check_affine`),
  qform and sform that agree (:func:`warn_qform_sform`, :class:`HeaderGeometryWarning`),
  and the comparison of two affines (:func:`affines_match`).

Every refusal raises :class:`~deeptree.errors.InputError` (also ``deeptree.io.InputError``),
whose message names the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from deeptree.errors import InputError

# --------------------------------------------------------------------------------------------
# plausibility of inputs (docs/troubleshooting.md: "When something goes wrong")
# --------------------------------------------------------------------------------------------
#: A chest CT in Hounsfield units has air and lung below this (HU); one without is not in HU.
HU_AIR_BELOW = -500.0

#: A mask of more than this fraction of its volume is no airway mask (an airway fills ~1-3%).
MAX_MASK_FRACTION = 0.5

#: Voxels larger than this along any axis (mm) are too coarse for the 2 mm anatomy rule.
THICK_SLICE_MM = 2.5


class ThickSliceWarning(UserWarning):
    """An input's voxels are larger than :data:`THICK_SLICE_MM` along some axis."""


class HeaderGeometryWarning(UserWarning):
    """A NIfTI header whose qform and sform are both set and disagree."""


def check_ct_in_hu(ct: np.ndarray, name: str = "CT") -> np.ndarray:
    """Check that a chest CT is in Hounsfield units and return it unchanged.

    A chest CT holds air and lung, about -1000 and -850 HU. With no voxel below
    :data:`HU_AIR_BELOW` the values are not HU: typically raw detector values stored as
    0..4095 without the rescale slope/intercept, or an image normalised to 0..1. The networks
    would then see every voxel as soft tissue (or every voxel as airway).

    Parameters
    ----------
    ct : ndarray, shape (I, J, K), numeric
    name : str
        The file, for the message.

    Raises
    ------
    InputError
        No voxel below -500 HU, naming the range found and what to do.
    """
    low, high = float(np.min(ct)), float(np.max(ct))
    if low >= HU_AIR_BELOW:
        if high <= 1.0:
            hint = "it looks normalised to 0..1"
        elif low >= 0:
            hint = "it looks like raw scanner values (often 0..4095: subtract 1024, or apply the rescale slope and intercept)"
        else:
            hint = "a chest CT has air and lung near -1000 HU"
        raise InputError(
            f"{name}: not a CT in Hounsfield units: values {low:g}..{high:g}, no voxel below "
            f"{HU_AIR_BELOW:g} HU ({hint}); convert it to HU first"
        )
    return ct


def check_mask_fraction(mask: np.ndarray, name: str = "mask") -> float:
    """Refuse an airway mask that fills most of its volume.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1
    name : str
        The file, for the message.

    Returns
    -------
    float
        The fraction of foreground voxels, in [0, :data:`MAX_MASK_FRACTION`].

    Raises
    ------
    InputError
        More than :data:`MAX_MASK_FRACTION` of the voxels are foreground: an inverted mask,
        a lung or body mask, or a mask of all ones (an airway fills a few percent of a chest
        CT at most).
    """
    fraction = float(np.count_nonzero(mask)) / max(int(np.size(mask)), 1)
    if fraction > MAX_MASK_FRACTION:
        raise InputError(
            f"{name}: the mask fills {100 * fraction:.0f}% of its volume; an airway mask fills a "
            "few percent at most (is it inverted, a lung or body mask, or all ones?)"
        )
    return fraction


def warn_thick_slices(spacing, name: str = "volume") -> bool:
    """Warn (:class:`ThickSliceWarning`) when a voxel is larger than :data:`THICK_SLICE_MM`.

    Parameters
    ----------
    spacing : sequence of 3 float
        Voxel size (mm).
    name : str
        The file, for the message.

    Returns
    -------
    bool
        True if it warned.
    """
    if max(float(v) for v in spacing) <= THICK_SLICE_MM:
        return False
    import warnings

    warnings.warn(thick_slice_message(spacing, name), ThickSliceWarning, stacklevel=2)
    return True


def thick_slice_message(spacing, name: str) -> str:
    """The text of the thick-slice warning: the voxel size and what it changes."""
    shown = " x ".join(f"{float(v):g}" for v in spacing)
    return (
        f"{name}: voxels of {shown} mm, thicker than {THICK_SLICE_MM:g} mm: bronchi of 2 mm and "
        "less are under one voxel there, so lumen diameters, the anatomy classes (class 3 = "
        "<= 2 mm) and the small-airway metrics are unreliable; use thin-slice CT (<= 1.25 mm) "
        "where you can"
    )


def check_header_size(path: str | os.PathLike, image=None) -> None:
    """Check, before any voxel is read, that a NIfTI file can hold the data its header claims,
    and that this machine could hold them in memory.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    image : nibabel image, optional
        Already loaded (header only) from ``path``.

    Raises
    ------
    InputError
        An uncompressed file shorter than its header's data (truncated, or a wrong header),
        a compressed file too small to hold them at gzip's best ratio, or data larger than
        this machine's memory, naming the shape, dtype and sizes.
    """
    path = Path(path)
    if image is None:
        image = nib.load(str(path))
    header = image.header
    shape = tuple(int(v) for v in image.shape)
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    needed = int(np.prod(shape, dtype=np.float64)) * itemsize
    offset = int(getattr(image.dataobj, "offset", None) or header.get_data_offset())
    on_disk = path.stat().st_size
    shown = " x ".join(str(v) for v in shape)
    what = f"its header declares {shown} voxels of {header.get_data_dtype()} ({_bytes(needed)})"
    if path.name.endswith(".gz"):
        if needed > on_disk * 1100:  # gzip never compresses more than about 1032:1
            raise InputError(
                f"{path}: {what}, more than a compressed file of {_bytes(on_disk)} can hold; "
                "the header does not match the data (a damaged or wrongly written file)"
            )
    elif on_disk < offset + needed:
        raise InputError(
            f"{path}: {what}, but the file holds only {_bytes(max(on_disk - offset, 0))} of "
            "data; it is truncated or its header does not match the data"
        )
    memory = _physical_memory()
    if memory is not None and needed > memory:
        raise InputError(
            f"{path}: {what}, more than this machine's memory ({_bytes(memory)}); crop or "
            "downsample it first, or use a machine with more memory"
        )


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


# --------------------------------------------------------------------------------------------
# header geometry
# --------------------------------------------------------------------------------------------
#: Tolerance (mm) when comparing the affines of a CT and its label.
AFFINE_TOLERANCE_MM = 1e-3


def affines_match(a: np.ndarray, b: np.ndarray, tol: float = AFFINE_TOLERANCE_MM) -> bool:
    """True if two 4x4 affines agree to ``tol`` (mm) in every entry."""
    return bool(np.allclose(a, b, atol=tol, rtol=0))


#: A 3x3 affine whose determinant is below this fraction of the product of its column norms
#: is singular (its voxel axes do not span 3D space; 1e-6 is far beyond any real scanner skew).
SINGULAR_AFFINE_RTOL = 1e-6


def check_affine(affine, name: str = "affine") -> np.ndarray:
    """Return ``affine`` as a float64 4x4 matrix if it is finite and invertible, else raise.

    Parameters
    ----------
    affine : array-like, shape (4, 4)
        Voxel-to-world transform (mm).
    name : str
        What to call it in the error (usually the file name).

    Returns
    -------
    ndarray of float64, shape (4, 4)

    Raises
    ------
    InputError
        Not 4x4, NaN or infinite entries, or a singular (non-invertible) 3x3 part, whose
        voxels have no position or size in the world.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{name}: the affine must be 4x4, got shape {affine.shape}")
    if not np.isfinite(affine).all():
        raise InputError(f"{name}: the affine holds NaN or infinite values")
    linear = affine[:3, :3]
    scale = float(np.prod(np.linalg.norm(linear, axis=0)))
    if scale == 0 or abs(float(np.linalg.det(linear))) <= SINGULAR_AFFINE_RTOL * scale:
        shown = np.array2string(linear, precision=4, separator=", ").replace("\n", "")
        raise InputError(
            f"{name}: the affine is not invertible (singular voxel axes {shown}); the header's "
            "sform/qform is damaged"
        )
    return affine


#: Files already warned about by :func:`warn_qform_sform` (one warning per file and process).
_WARNED_QFORM_SFORM: set[str] = set()


def warn_qform_sform(image, path) -> bool:
    """Warn (:class:`HeaderGeometryWarning`, once per file) when a NIfTI header's qform and
    sform are both set and disagree.

    nibabel's ``img.affine``, which every reader here uses, is the sform when set; another
    program may read the qform (or the pixdim voxel sizes) and place or size the voxels
    otherwise.

    Parameters
    ----------
    image : nibabel Nifti1Image or Nifti2Image
    path : path-like
        The file, for the message and the once-per-file rule.

    Returns
    -------
    bool
        True if the two disagree (whether or not this call printed the warning).
    """
    header = image.header
    (qform, qform_code), (sform, sform_code) = header.get_qform(True), header.get_sform(True)
    if not qform_code or not sform_code or affines_match(qform, sform):
        return False
    key = str(Path(path).resolve())
    if key not in _WARNED_QFORM_SFORM:
        _WARNED_QFORM_SFORM.add(key)
        import warnings

        def sizes(a):
            return " x ".join(f"{v:g}" for v in np.linalg.norm(np.asarray(a)[:3, :3], axis=0))

        warnings.warn(
            f"{path}: the header's qform and sform disagree (largest difference "
            f"{np.abs(qform - sform).max():.4g} mm; voxels of {sizes(sform)} mm by the sform, "
            f"{sizes(qform)} mm by the qform); using the sform, as nibabel does",
            HeaderGeometryWarning,
            stacklevel=3,
        )
    return True
