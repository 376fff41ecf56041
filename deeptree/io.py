"""Reading and writing NIfTI cases, dataset layouts, and input validation.

Conventions (see the README's "Conventions"):

* arrays are numpy in nibabel's (i, j, k) order, never transposed or resampled here;
* ``spacing`` is a 3-tuple of floats in mm, taken from the affine (nibabel's ``img.affine``:
  the sform when set, else the qform; the norms of its columns), the one voxel-size rule of
  every reader;
* the affine travels with a case and is written back unchanged;
* masks are ``bool`` or ``uint8``; anatomy labels ``uint8`` in {0, 1, 2, 3};
* outputs are written to a temporary name in the target folder and renamed, so an
  interrupted write never leaves a partial file (:func:`atomic_write`, from
  :mod:`deeptree.files`); inputs are never modified.

Every problem with an input raises :class:`InputError`, whose message names the file
and the problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from deeptree.files import atomic_write as atomic_write
from deeptree.locations import samples_dir

#: The small real files shipped with the repository (see ``data/samples/README.md``):
#: ``data/samples`` in a clone, ``deeptree/samples`` in an installed package.
SAMPLES_DIR = samples_dir()

#: Tolerance (mm) when comparing the affines of a CT and its label.
AFFINE_TOLERANCE_MM = 1e-3


class InputError(ValueError):
    """A bad input file or array. The message names the file (or array) and the problem."""


# --------------------------------------------------------------------------------------------
# validation of arrays
# --------------------------------------------------------------------------------------------
def check_volume(array: np.ndarray, name: str = "array") -> np.ndarray:
    """Check that ``array`` is a finite 3D volume and return it unchanged.

    Parameters
    ----------
    array : ndarray, shape (I, J, K), any numeric dtype
    name : str
        What to call the array in the error (usually its file name).

    Raises
    ------
    InputError
        If the array is not 3D, is empty, or (for float dtypes) holds NaN or inf.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(f"{name}: expected a 3D volume, got {array.ndim}D with shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name}: the volume is empty (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name}: expected a numeric volume, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        n_bad = int((~np.isfinite(array)).sum())
        raise InputError(f"{name}: {n_bad} voxels are NaN or infinite")
    return array


def check_spacing(spacing, name: str = "spacing") -> tuple[float, float, float]:
    """Return ``spacing`` as a tuple of three positive floats (mm), else raise.

    Parameters
    ----------
    spacing : sequence of 3 numbers
        Voxel size along (i, j, k) in mm.
    name : str
        What to call it in the error (usually the file name).
    """
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: spacing must be three numbers in mm, got {spacing!r}") from err
    if len(values) != 3:
        raise InputError(f"{name}: spacing must have 3 values (mm), got {len(values)}: {values}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name}: spacing must be positive and finite (mm), got {values}")
    return values  # type: ignore[return-value]


def check_binary_mask(mask: np.ndarray, name: str = "mask", allow_empty: bool = False) -> np.ndarray:
    """Check that ``mask`` is a binary 3D volume and return it as ``bool``.

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or integer or float holding only 0 and 1
    name : str
        What to call it in the error.
    allow_empty : bool
        If False (default) an all-zero mask is an error.

    Returns
    -------
    ndarray of bool, shape (I, J, K)
        A new array when a conversion was needed; the input is never modified.
    """
    mask = check_volume(mask, name)
    if mask.dtype != bool:
        # Elementwise tests instead of np.unique: unique sorts the whole volume (seconds on a
        # 512x512x679 mask); only the offending values are sorted for the message.
        offending = (mask != 0) & (mask != 1)
        if offending.any():
            values = np.unique(mask[offending])
            shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
            raise InputError(f"{name}: expected a binary mask (0/1), found values {shown}")
        mask = mask != 0
    if not allow_empty and not mask.any():
        raise InputError(f"{name}: the mask is empty (no foreground voxel)")
    return mask


def check_same_grid(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise InputError(f"{name_b}: shape {b.shape} does not match {name_a} shape {a.shape}")


# --------------------------------------------------------------------------------------------
# plausibility of inputs (README: "When something goes wrong")
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
# NIfTI
# --------------------------------------------------------------------------------------------
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


@dataclass
class Volume:
    """One NIfTI volume.

    Attributes
    ----------
    array : ndarray, shape (I, J, K)
        The voxel data in nibabel's (i, j, k) order, with the dtype on disk.
    affine : ndarray, shape (4, 4), float64
        Voxel to world (RAS, mm) transform from the header.
    spacing : tuple of 3 float
        Voxel size in mm: the norms of the affine's columns.
    path : Path or None
        Where it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    path: Path | None = None


def read_nifti(path: str | os.PathLike, *, dtype=None) -> Volume:
    """Read a 3D NIfTI file and validate it.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    dtype : numpy dtype, optional
        Cast the data to this dtype (default: the on-disk dtype; scaled data come back
        as float64, as nibabel returns them).

    Returns
    -------
    Volume
        ``spacing`` and ``affine`` from nibabel's ``img.affine`` (the sform when set, else the
        qform); a header whose qform and sform are both set and disagree gets a
        :class:`HeaderGeometryWarning` naming the file (:func:`warn_qform_sform`).

    Raises
    ------
    InputError
        Missing file, unreadable or not NIfTI, not 3D (a 4D file with one volume is
        accepted and squeezed), NaN/inf voxels, zero or negative spacing, a non-finite or
        singular affine (:func:`check_affine`), a header that
        declares more data than the file holds or than this machine's memory
        (:func:`check_header_size`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises several exception types for a bad file
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI file (nibabel read it as {type(image).__name__})")
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D volume, got {len(image.shape)}D with shape {image.shape}")
    # nibabel silently replaces zero voxel sizes by 1 when it loads a header: check the
    # sizes as stored on disk and the affine's column norms as well.
    check_spacing(_stored_zooms(path, type(image.header)), str(path))
    # one voxel-size rule: the affine (sform when set, else qform), never pixdim on its own
    affine = check_affine(image.affine, str(path))
    spacing = check_spacing(np.linalg.norm(affine[:3, :3], axis=0), str(path))
    warn_qform_sform(image, path)
    check_header_size(path, image)
    try:
        if image.dataobj.slope not in (None, 1.0) or image.dataobj.inter not in (None, 0.0):
            array = np.asarray(image.get_fdata(dtype=np.float32))
        else:
            array = np.asarray(image.dataobj)
    except Exception as err:
        raise InputError(f"{path}: could not read the voxel data ({type(err).__name__}: {err})") from err
    array = array.reshape(shape)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    check_volume(array, str(path))
    return Volume(array=array, affine=affine, spacing=spacing, path=path)


def _stored_zooms(path: Path, header_class) -> tuple[float, float, float]:
    """Voxel sizes as written in the file's header, before nibabel's automatic fixes."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fileobj:
        header = header_class.from_fileobj(fileobj, check=False)
    return tuple(float(z) for z in header["pixdim"][1:4])



def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    dtype=None,
) -> Path:
    """Write a 3D array as NIfTI, atomically (temporary name, then rename).

    Parameters
    ----------
    path : path-like
        ``.nii`` or ``.nii.gz`` file name.
    array : ndarray, shape (I, J, K)
        ``bool`` arrays are written as ``uint8``.
    affine : ndarray, shape (4, 4)
        Written unchanged; the header zooms follow from it.
    dtype : numpy dtype, optional
        On-disk dtype (default: the array's, ``uint8`` for bool).

    Returns
    -------
    Path
    """
    path = Path(path)
    if not (path.name.endswith(".nii.gz") or path.name.endswith(".nii")):
        raise InputError(f"{path}: output name must end with .nii or .nii.gz")
    array = check_volume(np.asarray(array), str(path))
    if dtype is None:
        dtype = np.uint8 if array.dtype == bool else array.dtype
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"{path}: affine must be 4x4, got shape {affine.shape}")
    image = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    image.set_data_dtype(dtype)
    image.header.set_xyzt_units("mm", "sec")
    return atomic_write(path, lambda tmp: nib.save(image, str(tmp)))


# --------------------------------------------------------------------------------------------
# cases and layouts
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """A CT with its (optional) airway label, on one grid.

    Attributes
    ----------
    id : str
        Case identifier, e.g. ``"ATM_001"``.
    ct : ndarray, shape (I, J, K), int16 or float32
        Hounsfield units.
    label : ndarray of uint8, shape (I, J, K), or None
        Binary airway mask (1 = lumen).
    spacing : tuple of 3 float
        mm.
    affine : ndarray, shape (4, 4)
    """

    id: str
    ct: np.ndarray | None
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray


def affines_match(a: np.ndarray, b: np.ndarray, tol: float = AFFINE_TOLERANCE_MM) -> bool:
    """True if two 4x4 affines agree to ``tol`` (mm) in every entry."""
    return bool(np.allclose(a, b, atol=tol, rtol=0))


def load_case(
    ct_path: str | os.PathLike | None,
    label_path: str | os.PathLike | None = None,
    case_id: str | None = None,
) -> Case:
    """Read a CT and/or its airway label and check that they share a grid.

    The arrays are in the files' own voxel order; whatever feeds a model brings the case to
    RAS first (``deeptree.orientation.case_to_ras``, as the training data do).

    Parameters
    ----------
    ct_path : path-like or None
        CT in HU. None for a label-only case (e.g. ``data/samples/atm_001``).
    label_path : path-like or None
        Binary airway mask.
    case_id : str, optional
        Defaults to the file name without ``_0000`` and ``.nii(.gz)``.

    Raises
    ------
    InputError
        Any problem of :func:`read_nifti`, a CT not in Hounsfield units
        (:func:`check_ct_in_hu`), a label that is not binary or fills most of its volume
        (:func:`check_mask_fraction`), or a label whose shape or affine differs from the CT's.
    """
    if ct_path is None and label_path is None:
        raise InputError("load_case: give a CT path, a label path, or both")
    ct = read_nifti(ct_path) if ct_path is not None else None
    label = read_nifti(label_path) if label_path is not None else None
    label_array = None
    if label is not None:
        label_array = check_binary_mask(label.array, str(label.path), allow_empty=True).astype(np.uint8)
        check_mask_fraction(label_array, str(label.path))
    if ct is not None and label is not None:
        check_same_grid(ct.array, label.array, str(ct.path), str(label.path))
        if not affines_match(ct.affine, label.affine):
            raise InputError(
                f"{label.path}: affine does not match the CT {ct.path} "
                f"(largest difference {np.abs(ct.affine - label.affine).max():.4g} mm)"
            )
    if ct is not None:
        check_ct_in_hu(ct.array, str(ct.path))
    ref = ct if ct is not None else label
    if case_id is None:
        case_id = case_id_from_path(ref.path)
    return Case(
        id=case_id,
        ct=ct.array if ct is not None else None,
        label=label_array,
        spacing=ref.spacing,
        affine=ref.affine,
    )


def case_id_from_path(path: str | os.PathLike) -> str:
    """``imagesTr/ATM_001_0000.nii.gz`` -> ``"ATM_001"``; ``labelsTr/ATM_001.nii.gz`` -> ``"ATM_001"``."""
    name = Path(path).name
    name = re.sub(r"\.nii(\.gz)?$", "", name)
    return re.sub(r"_0000$", "", name)


@dataclass(frozen=True)
class CasePaths:
    """Where one case of a dataset lies. ``image`` or ``label`` is None when absent."""

    id: str
    image: Path | None
    label: Path | None


def list_cases(root: str | os.PathLike, split: str = "Tr") -> list[CasePaths]:
    """List the cases of a dataset in the ATM'22 layout.

    The layout (also used by the synthetic cohort)::

        root/imagesTr/ATM_001_0000.nii.gz   CT, HU
        root/labelsTr/ATM_001.nii.gz        airway mask

    Parameters
    ----------
    root : path-like
        Dataset folder.
    split : str
        ``"Tr"`` or ``"Ts"`` (``imagesTs``/``labelsTs``).

    Returns
    -------
    list of CasePaths
        Sorted by id; one entry per case found in either folder, with ``None`` where
        the other side is missing (callers report these instead of skipping them).

    Raises
    ------
    InputError
        If ``root`` has neither ``images{split}`` nor ``labels{split}``.
    """
    root = Path(root)
    images_dir, labels_dir = root / f"images{split}", root / f"labels{split}"
    if not images_dir.is_dir() and not labels_dir.is_dir():
        raise InputError(
            f"{root}: not a dataset in the ATM'22 layout (no images{split}/ or labels{split}/ folder)"
        )
    images = _nifti_by_id(images_dir)
    labels = _nifti_by_id(labels_dir)
    return [CasePaths(i, images.get(i), labels.get(i)) for i in sorted(set(images) | set(labels))]


def _nifti_by_id(folder: Path) -> dict[str, Path]:
    """The NIfTI files of ``folder`` by case id; two files with one id are an error."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.name.endswith((".nii.gz", ".nii")) or p.name.startswith("."):
            continue
        check_case_id_unique(found, case_id_from_path(p), p)
        found[case_id_from_path(p)] = p
    return found


def check_case_id_unique(found: dict, case_id: str, path: Path) -> None:
    """Raise :class:`InputError` if ``case_id`` (of ``path``) is already in ``found``, or
    differs from a key of ``found`` only in letter case (one file on a case-insensitive
    file system), naming both files.

    Parameters
    ----------
    found : dict case id -> Path
    case_id : str
    path : Path
    """
    for other_id, other in found.items():
        if other_id.lower() == case_id.lower():
            raise InputError(
                f"{path.parent}: {other.name} and {path.name} both give case id {case_id!r}; "
                "rename one of them (their outputs would overwrite each other)"
            )


def nifti_inputs(path: str | os.PathLike) -> list[Path]:
    """The NIfTI files a command should process: ``path`` itself, or every ``.nii``/``.nii.gz``
    in the folder ``path`` (sorted by name). Hidden and temporary files (names starting with
    ``.``, such as the temporary files of an interrupted write) are ignored.

    Raises
    ------
    InputError
        If ``path`` does not exist or is a folder without NIfTI files.
    """
    source = Path(path)
    if source.is_dir():
        inputs = sorted(
            p
            for p in source.iterdir()
            if p.name.endswith((".nii.gz", ".nii")) and not p.name.startswith(".")
        )
        if not inputs:
            raise InputError(f"{source}: no .nii or .nii.gz files")
        return inputs
    if source.is_file():
        return [source]
    raise InputError(f"{source}: no such file or folder")


def case_file_names(case_id: str) -> tuple[str, str]:
    """File names of a case in the ATM'22 layout: (``ID_0000.nii.gz``, ``ID.nii.gz``)."""
    return f"{case_id}_0000.nii.gz", f"{case_id}.nii.gz"


def iter_cases(root: str | os.PathLike, split: str = "Tr", require_label: bool = True) -> Iterator[Case]:
    """Load the cases of an ATM'22-layout dataset one at a time.

    Raises
    ------
    InputError
        If a case lacks its image, or its label when ``require_label``.
    """
    for paths in list_cases(root, split):
        if paths.image is None:
            raise InputError(f"{root}: case {paths.id} has a label but no image in images{split}/")
        if require_label and paths.label is None:
            raise InputError(f"{root}: case {paths.id} has no label in labels{split}/")
        yield load_case(paths.image, paths.label, paths.id)
