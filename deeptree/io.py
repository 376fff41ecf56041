"""Reading and writing NIfTI cases, dataset layouts, and the validation of arrays.

The plausibility and header-geometry checks the readers run (HU, mask fraction, thick
slices, header size, affine, qform/sform) are in :mod:`deeptree.io_checks`.

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

# InputError is defined in deeptree.errors (shared with deeptree.io_checks) and re-exported
# here: ``deeptree.io.InputError`` is the name the README, notebooks and callers use.
from deeptree.errors import InputError as InputError
from deeptree.files import atomic_write as atomic_write
from deeptree.io_checks import (
    affines_match,
    check_affine,
    check_ct_in_hu,
    check_header_size,
    check_mask_fraction,
    warn_qform_sform,
)
from deeptree.locations import samples_dir

#: The small real files shipped with the repository (see ``data/samples/README.md``):
#: ``data/samples`` in a clone, ``deeptree/samples`` in an installed package.
SAMPLES_DIR = samples_dir()


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
# NIfTI
# --------------------------------------------------------------------------------------------
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
        :class:`~deeptree.io_checks.HeaderGeometryWarning` naming the file (:func:`~deeptree.io_checks.warn_qform_sform`).

    Raises
    ------
    InputError
        Missing file, unreadable or not NIfTI, not 3D (a 4D file with one volume is
        accepted and squeezed), NaN/inf voxels, zero or negative spacing, a non-finite or
        singular affine (:func:`~deeptree.io_checks.check_affine`), a header that
        declares more data than the file holds or than this machine's memory
        (:func:`~deeptree.io_checks.check_header_size`).
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
        (:func:`~deeptree.io_checks.check_ct_in_hu`), a label that is not binary or fills most of its volume
        (:func:`~deeptree.io_checks.check_mask_fraction`), or a label whose shape or affine differs from the CT's.
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
