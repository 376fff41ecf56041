"""Everything that exists for one case, found on disk and read for viewing.

This module fixes the *case-folder convention* that ``deeptree view``, the napari reader
(File > Open) and the notebooks share. Two layouts are accepted.

1. A **case folder** holding any of these files (the first name found is used)::

       ct.nii.gz          CT in HU                        (also: image.nii.gz)
       gt.nii.gz          ground-truth airway mask 0/1    (also: airway.nii.gz, label.nii.gz)
       lung.nii.gz        lung mask 0/1
       anatomy.nii.gz     anatomy classes uint8 {0, 1, 2, 3}
       broken.nii.gz      ground truth with simulated breakages 0/1 (deeptree simulate)
       breakage.nii.gz    the simulated breakages Y^B 0/1
       stage1.nii.gz      stage-1 prediction 0/1
       final.nii.gz       two-stage (final) prediction 0/1
       attention.nii.gz   breakage attention map H_bar, float in [0, 1]
       centres.json       breakage centres, voxel (i, j, k)  (also: centres.csv)

   (``.nii`` works wherever ``.nii.gz`` is named.) ``data/samples/cip_ct64`` and
   ``data/samples/atm_001`` are case folders.

   A **run folder** holding one such case folder per case is accepted too
   (``deeptree view RUN --case ID`` picks the sub-folder ``ID``; default the first).

2. A **dataset** in the ATM'22 layout plus a case id (``deeptree view DATASET --case ID``)::

       DATASET/imagesTr/ID_0000.nii.gz    CT
       DATASET/labelsTr/ID.nii.gz         ground truth
       DATASET/<kind>Tr/ID.nii.gz, DATASET/<kind>/ID.nii.gz,
       DATASET/predictions/<kind>/ID.nii.gz or DATASET/ID_<kind>.nii.gz
                                          for the other kinds (lung also lungsTr/);
                                          centres as ID.json / ID.csv

   (the phantom cohort's ``lungsTr``, and the outputs of ``deeptree attention`` and
   ``deeptree simulate`` written into the dataset, fit the pattern).

Files elsewhere are added by kind (``deeptree view DATASET --case ID --add
stage1=runs/s1/pred --add final=runs/s2/pred``): a file, or a folder holding
``<kind>Tr/ID``, ``<kind>/ID``, ``ID_<kind>`` or ``ID`` (the ``--out`` of ``deeptree
predict`` writes ``ID.nii.gz``).

``centres.json`` is either a list of ``[i, j, k]``, or ``{"centres": [[i, j, k], ...],
"sizes": [n, ...]}``, or a list of ``{"centre": [i, j, k], "size": n}``; ``centres.csv`` has
columns ``i, j, k`` and optionally ``size`` (a header line is optional). Sizes are gap sizes
in voxels. Without a centres file, centres are computed from the attention map
(:func:`deeptree.attention.breakage_centres`), and gap sizes from the attention map as the
voxel count of each centre's region of ``H_bar > 0.5`` (:func:`gap_sizes`).

Missing or unreadable files, and files whose grid does not match the others, are skipped
with a message in :attr:`ViewCase.messages`; only a folder with nothing to show is an error.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from deeptree.attention import breakage_centres
from deeptree.io import InputError, case_id_from_path, read_nifti
from deeptree.io_checks import affines_match

#: Kinds of file in a case, with the accepted file names in a case folder (first found wins).
CASE_FILES: dict[str, tuple[str, ...]] = {
    "ct": ("ct", "image"),
    "gt": ("gt", "airway", "label"),
    "lung": ("lung",),
    "anatomy": ("anatomy",),
    "broken": ("broken",),
    "breakage": ("breakage",),
    "stage1": ("stage1",),
    "final": ("final",),
    "attention": ("attention",),
    "centres": ("centres.json", "centres.csv"),
}

#: Masks compared with the ground truth, in pipeline order ("broken" is a simulated broken
#: ground truth, ``deeptree simulate``: its comparison shows the gaps as false negatives).
PREDICTION_KINDS: tuple[str, ...] = ("broken", "stage1", "final")

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class ViewCase:
    """The volumes of one case that exist on disk, on one grid.

    Attributes
    ----------
    id : str
    spacing : tuple of 3 float
        mm (from the first volume read: CT, else ground truth, else any other); default 1.
    affine : ndarray, shape (4, 4), or None
        Of the files read (None for a case built from arrays).
    ct : ndarray, shape (I, J, K) or None
        HU.
    gt, lung : ndarray of uint8 {0, 1}, shape (I, J, K), or None
    anatomy : ndarray of uint8 {0, 1, 2, 3}, shape (I, J, K), or None
    predictions : dict str -> ndarray of uint8 {0, 1}
        ``"broken"``, ``"stage1"`` and/or ``"final"`` (:data:`PREDICTION_KINDS`).
    breakage : ndarray of uint8 {0, 1}, shape (I, J, K), or None
        Simulated breakages Y^B.
    attention : ndarray of float32 in [0, 1], shape (I, J, K), or None
    centres : ndarray of int64, shape (n, 3), or None
        Breakage centres in voxels (i, j, k).
    gap_sizes : ndarray of int64, shape (n,), or None
        Gap size (voxels) of each centre.
    paths : dict str -> Path
        The files read, by kind.
    messages : list of str
        What was skipped and why, and what was derived.
    """

    id: str = "case"
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    ct: np.ndarray | None = None
    gt: np.ndarray | None = None
    lung: np.ndarray | None = None
    anatomy: np.ndarray | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    breakage: np.ndarray | None = None
    attention: np.ndarray | None = None
    centres: np.ndarray | None = None
    gap_sizes: np.ndarray | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# finding files
# --------------------------------------------------------------------------------------------
def _first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _nifti_candidates(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}{suffix}" for suffix in _NIFTI_SUFFIXES]


def is_dataset(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder in the ATM'22 layout (has ``imagesTr/`` or ``labelsTr/``)."""
    path = Path(path)
    return (path / "imagesTr").is_dir() or (path / "labelsTr").is_dir()


def dataset_case_ids(root: str | os.PathLike) -> list[str]:
    """Sorted case ids of an ATM'22-layout dataset (from ``imagesTr`` and ``labelsTr``)."""
    root = Path(root)
    ids = set()
    for sub in ("imagesTr", "labelsTr"):
        folder = root / sub
        if folder.is_dir():
            ids |= {
                case_id_from_path(p)
                for p in folder.iterdir()
                if p.name.endswith(_NIFTI_SUFFIXES) and not p.name.startswith(".")
            }
    return sorted(ids)


def find_case_files(
    path: str | os.PathLike,
    case_id: str | None = None,
    extra: Mapping[str, str | os.PathLike] | None = None,
) -> tuple[str, dict[str, Path], list[str]]:
    """Locate the files of one case (see the module docstring for the convention).

    Parameters
    ----------
    path : path-like
        A case folder, a run folder of case folders, a dataset folder in the ATM'22
        layout, or one NIfTI file.
    case_id : str, optional
        The case of a dataset or run folder (default: its first case, with a message
        saying so). Ignored for a case folder or a file.
    extra : mapping kind -> path, optional
        More places for given kinds (``deeptree view --add KIND=PATH``): a file, or a folder
        searched for ``<kind>Tr/ID``, ``<kind>/ID``, ``ID_<kind>`` and ``ID`` (``.nii.gz``,
        ``.nii``; ``.json``, ``.csv`` for centres), e.g. the ``--out`` folder of
        ``deeptree predict`` as ``stage1``. They take precedence over ``path``.

    Returns
    -------
    case_id : str
    files : dict kind -> Path
        Only the kinds found (kinds of :data:`CASE_FILES`).
    messages : list of str
        One line listing the kinds not found (skipped), and the case chosen in a dataset.

    Raises
    ------
    InputError
        ``path`` (or an ``extra`` path) does not exist, an unknown kind in ``extra``, an
        unknown ``case_id``, or a dataset without cases.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    extra = {k: Path(v) for k, v in (extra or {}).items()}
    for kind, place in extra.items():
        if kind not in CASE_FILES:
            raise InputError(f"--add {kind}={place}: unknown kind (kinds: {', '.join(CASE_FILES)})")
        if not place.exists():
            raise InputError(f"--add {kind}={place}: no such file or folder")
    messages: list[str] = []
    files: dict[str, Path] = {}
    if path.is_file():
        kind = guess_kind_from_name(path)
        case_id = case_id_from_path(path)
        files[kind or "unknown"] = path
    elif is_dataset(path):
        ids = dataset_case_ids(path)
        if not ids:
            raise InputError(f"{path}: dataset in the ATM'22 layout holds no case")
        if case_id is None:
            case_id = ids[0]
            if len(ids) > 1:
                messages.append(
                    f"{path}: {len(ids)} cases, showing {case_id} (choose with --case ID)"
                )
        elif case_id not in ids:
            shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
            raise InputError(f"{path}: no case {case_id!r} (cases: {shown})")
        for kind in CASE_FILES:
            found = _first_existing(_dataset_candidates(path, case_id, kind))
            if found is not None:
                files[kind] = found
    else:
        cases = _case_subfolders(path)
        if cases and not _has_case_files(path):
            # a run folder holding one case folder per case: --case picks one
            if case_id is None:
                case_id = cases[0]
                if len(cases) > 1:
                    messages.append(
                        f"{path}: {len(cases)} case folders, showing {case_id} (choose with --case ID)"
                    )
            elif case_id not in cases:
                shown = ", ".join(cases[:8]) + (" ..." if len(cases) > 8 else "")
                raise InputError(f"{path}: no case folder {case_id!r} (cases: {shown})")
            path = path / case_id
        case_id = path.name
        for kind in CASE_FILES:
            found = _first_existing(_folder_candidates(path, kind))
            if found is not None:
                files[kind] = found
    for kind, place in extra.items():
        found = (
            place if place.is_file() else _first_existing(_extra_candidates(place, case_id, kind))
        )
        if found is None:
            messages.append(f"--add {kind}={place}: no file for case {case_id}: skipped")
        else:
            files[kind] = found
    if path.is_dir():
        missing = [k for k in CASE_FILES if k not in files]
        if missing:
            messages.append(f"{path}: not found, skipped: {', '.join(missing)}")
    return case_id, files, messages


def _has_case_files(folder: Path) -> bool:
    return any(_first_existing(_folder_candidates(folder, kind)) for kind in CASE_FILES)


def _case_subfolders(folder: Path) -> list[str]:
    """Names of the sub-folders that are case folders, sorted."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and _has_case_files(p)
    )


def _folder_candidates(folder: Path, kind: str) -> list[Path]:
    candidates = []
    for name in CASE_FILES[kind]:
        if name.endswith((".json", ".csv")):
            candidates.append(folder / name)
        else:
            candidates += _nifti_candidates(folder, name)
    return candidates


def _file_candidates(folder: Path, stem: str, kind: str) -> list[Path]:
    if kind == "centres":
        return [folder / f"{stem}.json", folder / f"{stem}.csv"]
    return _nifti_candidates(folder, stem)


def _dataset_candidates(root: Path, case_id: str, kind: str) -> list[Path]:
    if kind == "ct":
        return _nifti_candidates(root / "imagesTr", f"{case_id}_0000")
    if kind == "gt":
        return _nifti_candidates(root / "labelsTr", case_id)
    folders = [f"{kind}Tr", kind, f"predictions/{kind}"]
    if kind == "lung":
        folders = ["lungsTr", "lungs", *folders]
    candidates = []
    for folder in folders:
        candidates += _file_candidates(root / folder, case_id, kind)
    # the flat names of deeptree attention / simulate without --dataset-layout
    return candidates + _file_candidates(root, f"{case_id}_{kind}", kind)


def _extra_candidates(folder: Path, case_id: str, kind: str) -> list[Path]:
    candidates = _folder_candidates(folder, kind)
    for sub in (f"{kind}Tr", kind):
        candidates += _file_candidates(folder / sub, case_id, kind)
    candidates += _file_candidates(folder, f"{case_id}_{kind}", kind)
    if kind == "anatomy":  # deeptree predict --classes
        candidates += _file_candidates(folder, f"{case_id}_classes", kind)
    return candidates + _file_candidates(folder, case_id, kind)


def guess_kind_from_name(path: str | os.PathLike) -> str | None:
    """The kind of a file from its name alone: a case-folder name (``gt.nii.gz`` -> "gt"),
    the ATM'22 layout (``imagesTr/*_0000.nii.gz`` -> "ct", ``labelsTr/*`` -> "gt") or a
    ``<kind>Tr`` folder; None when the name says nothing."""
    path = Path(path)
    name = path.name
    for kind, names in CASE_FILES.items():
        for stem in names:
            if name == stem or any(name == f"{stem}{s}" for s in _NIFTI_SUFFIXES):
                return kind
    if name.endswith(_NIFTI_SUFFIXES):
        folder = path.parent.name
        if folder.startswith("images") or name.split(".nii")[0].endswith("_0000"):
            return "ct"  # imagesTr/ or an ID_0000 file name
        if folder.startswith("labels"):
            return "gt"
        for kind in CASE_FILES:
            if folder in (kind, f"{kind}Tr", f"{kind}s", f"{kind}sTr"):
                return kind
    return None


def guess_kind_from_array(array: np.ndarray) -> str:
    """The kind of an unnamed volume from its values: 0/1 integers -> "gt" (a mask),
    integers in {0..3} -> "anatomy", floats in [0, 1] -> "attention", else "ct"."""
    array = np.asarray(array)
    if array.dtype == bool:
        return "gt"
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind in "iu" and low >= 0 and high <= 1:
        return "gt"
    if array.dtype.kind in "iu" and low >= 0 and high <= 3:
        return "anatomy"
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        if np.isin(np.unique(array[:: max(1, array.shape[0] // 8)]), (0.0, 1.0)).all():
            return "gt"
        return "attention"
    return "ct"


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def read_centres(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read breakage centres (voxels) and optional gap sizes from JSON or CSV.

    Parameters
    ----------
    path : path-like
        ``.json`` or ``.csv`` in one of the formats of the module docstring.

    Returns
    -------
    centres : ndarray of int64, shape (n, 3)
        Voxel (i, j, k).
    sizes : ndarray of int64, shape (n,), or None
        Gap sizes in voxels, when the file gives them.

    Raises
    ------
    InputError
        Unreadable file or a format other than those documented.
    """
    path = Path(path)
    try:
        if path.suffix == ".json":
            centres, sizes = _centres_from_json(json.loads(path.read_text()))
        else:
            centres, sizes = _centres_from_csv(path.read_text().splitlines())
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        if not np.isfinite(centres).all():
            raise ValueError("non-finite coordinates")
        sizes = None if sizes is None else np.asarray(sizes, dtype=np.int64).reshape(-1)
        if sizes is not None and sizes.shape[0] != centres.shape[0]:
            raise ValueError(f"{sizes.shape[0]} sizes for {centres.shape[0]} centres")
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise InputError(
            f"{path}: not a breakage-centres file (expected voxel [i, j, k] rows; "
            f"{type(err).__name__}: {err})"
        ) from err
    return np.rint(centres).astype(np.int64), sizes


def _centres_from_json(data):
    if isinstance(data, dict):
        centres = data.get("centres", data.get("centers"))
        if centres is None:
            raise KeyError("no 'centres' key")
        sizes = data.get("sizes", data.get("gap_sizes"))
        return centres, sizes
    if data and isinstance(data[0], dict):
        centres = [d.get("centre", d.get("center")) for d in data]
        sizes = [d["size"] for d in data] if all("size" in d for d in data) else None
        return centres, sizes
    return data, None


def _centres_from_csv(lines: list[str]):
    rows = [r for r in csv.reader(lines) if r]
    if rows and not _is_number(rows[0][0]):
        header = [h.strip().lower() for h in rows[0]]
        rows = rows[1:]
        cols = [header.index(c) for c in ("i", "j", "k")]
        size_col = header.index("size") if "size" in header else None
    else:
        cols, size_col = [0, 1, 2], 3 if rows and len(rows[0]) > 3 else None
    centres = [[float(r[c]) for c in cols] for r in rows]
    sizes = [int(float(r[size_col])) for r in rows] if size_col is not None else None
    return centres, sizes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def gap_sizes(attention: np.ndarray, centres: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Size of each breakage gap: the number of voxels of its region of ``H_bar > threshold``.

    Each centre is matched to the 26-connected region of ``attention > threshold`` that holds
    it, or else to the nearest region (a rounded centre of mass can fall just outside a
    curved region).

    Parameters
    ----------
    attention : ndarray of float, shape (I, J, K)
        The breakage attention map H_bar in [0, 1].
    centres : ndarray of int, shape (n, 3)
        Voxel (i, j, k).
    threshold : float
        0.5 with alpha = 5 means H < 5 voxels (paper Eq. 2; see :mod:`deeptree.attention`).

    Returns
    -------
    ndarray of int64, shape (n,)
        Voxel counts; 0 for a centre when no voxel exceeds the threshold.
    """
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    above = np.asarray(attention) > threshold
    regions, n = ndi.label(above, structure=np.ones((3, 3, 3), bool))
    if n == 0 or len(centres) == 0:
        return np.zeros(len(centres), dtype=np.int64)
    counts = np.bincount(regions.ravel(), minlength=n + 1)
    clipped = np.clip(centres, 0, np.asarray(above.shape) - 1)
    ids = regions[tuple(clipped.T)]
    if (ids == 0).any():
        # nearest labelled voxel of centres outside every region
        _, nearest = ndi.distance_transform_edt(regions == 0, return_indices=True)
        outside = ids == 0
        pts = tuple(clipped[outside].T)
        ids[outside] = regions[tuple(nearest[a][pts] for a in range(3))]
    return counts[ids].astype(np.int64)


def _values_within(array: np.ndarray, high: int) -> bool:
    """True if every voxel is an integer in [0, high] (O(n) passes; np.unique sorts and takes
    seconds on a 512 x 512 x 679 volume)."""
    if array.dtype == bool:
        return True
    if array.dtype.kind in "iu":
        return bool(array.min() >= 0 and array.max() <= high)
    return bool(array.min() >= 0 and array.max() <= high and (array == np.round(array)).all())


def _as_mask(array: np.ndarray, path: Path) -> np.ndarray:
    if not _values_within(array, 1):
        values = np.unique(array)
        raise InputError(f"{path}: expected a binary mask (0/1), found values {values[:6]}")
    return array.astype(np.uint8, copy=False)


def _as_anatomy(array: np.ndarray, path: Path) -> np.ndarray:
    if not _values_within(array, 3):
        values = np.unique(array)
        raise InputError(f"{path}: expected anatomy classes in {{0, 1, 2, 3}}, found {values[:6]}")
    return array.astype(np.uint8, copy=False)


def _as_attention(array: np.ndarray, path: Path) -> np.ndarray:
    array = array.astype(np.float32)
    if array.min() < 0 or array.max() > 1:
        raise InputError(f"{path}: attention map values must lie in [0, 1]")
    return array


_CONVERT = {
    "gt": _as_mask,
    "lung": _as_mask,
    "stage1": _as_mask,
    "final": _as_mask,
    "broken": _as_mask,
    "breakage": _as_mask,
    "anatomy": _as_anatomy,
    "attention": _as_attention,
}


def load_view_case(
    path: str | os.PathLike,
    case_id: str | None = None,
    extra: Mapping[str, str | os.PathLike] | None = None,
) -> ViewCase:
    """Read every file that exists for one case, skipping missing or bad ones with a message.

    Parameters
    ----------
    path : path-like
        A case folder, an ATM'22-layout dataset (with ``case_id``), or one NIfTI file
        (its kind from its name, else from its values: :func:`guess_kind_from_array`).
    case_id : str, optional
        Case of a dataset; default its first case.
    extra : mapping kind -> path, optional
        More files or folders by kind, as :func:`find_case_files`.

    Returns
    -------
    ViewCase
        Arrays on one grid (the first volume read sets it); inputs on disk are only read.

    Raises
    ------
    InputError
        Nothing readable to show, a missing path, or an unknown case id.
    """
    case_id, files, messages = find_case_files(path, case_id, extra)
    case: ViewCase | None = None
    volumes: dict[str, np.ndarray] = {}
    ref_affine = None
    for kind, file in files.items():
        if kind == "centres":
            continue
        try:
            volume = read_nifti(file)
            if kind == "unknown":
                kind = guess_kind_from_array(volume.array)
            array = _CONVERT.get(kind, lambda a, p: a)(volume.array, file)
            if ref_affine is None:
                ref_affine = volume.affine
                case = ViewCase(id=case_id, spacing=volume.spacing, affine=volume.affine)
                ref_shape = array.shape
            elif array.shape != ref_shape:
                raise InputError(f"{file}: shape {array.shape} does not match {ref_shape}")
            elif not affines_match(volume.affine, ref_affine):
                messages.append(
                    f"{file}: affine differs from the other volumes; shown on their grid"
                )
        except InputError as err:
            messages.append(f"{err}: skipped")
            continue
        volumes[kind] = array
        case.paths[kind] = file
    if case is None:
        raise InputError(f"{path}: no readable volume to show ({'; '.join(messages)})")
    case.ct, case.gt, case.lung = volumes.get("ct"), volumes.get("gt"), volumes.get("lung")
    case.anatomy, case.attention = volumes.get("anatomy"), volumes.get("attention")
    case.breakage = volumes.get("breakage")
    case.predictions = {k: volumes[k] for k in PREDICTION_KINDS if k in volumes}
    _load_centres(case, files.get("centres"), messages)
    case.messages = messages
    return case


def _load_centres(case: ViewCase, file: Path | None, messages: list[str]) -> None:
    shape = next(
        v.shape
        for v in (
            case.ct,
            case.gt,
            case.attention,
            case.lung,
            case.anatomy,
            case.breakage,
            *case.predictions.values(),
        )
        if v is not None
    )
    if file is not None:
        try:
            centres, sizes = read_centres(file)
            if len(centres) and ((centres < 0).any() or (centres >= np.asarray(shape)).any()):
                raise InputError(f"{file}: centres lie outside the volume of shape {shape}")
            case.centres, case.gap_sizes = centres, sizes
            case.paths["centres"] = file
        except InputError as err:
            messages.append(f"{err}: skipped")
    if case.centres is None and case.attention is not None:
        case.centres = breakage_centres(case.attention)
        messages.append(f"{len(case.centres)} breakage centres computed from the attention map")
    if case.centres is not None and case.gap_sizes is None and case.attention is not None:
        case.gap_sizes = gap_sizes(case.attention, case.centres)
