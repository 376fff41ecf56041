"""Stage-1 case cache: an ATM'22-layout dataset read into prepared training cases
(:func:`load_stage1_case`, :func:`load_cohort`), each prepared once and kept on disk.

The preparation (:func:`deeptree.stage1.data.prepare_stage1_case`: the tree parse and the
skeletons behind the anatomy classes and the GUL weight) takes seconds per case. It runs once;
its arrays are stored as ``.npy`` files in a case folder ``<cache>/<id>/``, re-read with memory
mapping, so a training run's data side only crops and augments (what keeps up with a GPU; use
DataLoader workers on a GPU machine). An entry is reused while its input files (size, mtime)
and :data:`CACHE_VERSION` are unchanged; its ``meta.json``, written last, marks it complete.
Each case folder of the cache carries :data:`CACHE_MARKER`; the cache never deletes a folder,
and refuses one of a case's name that it did not create (:func:`check_cache_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from deeptree.io import CasePaths, InputError, atomic_write, list_cases, load_case
from deeptree.orientation import CANONICAL, case_to_ras
from deeptree.phantom.cases import read_tree, tree_beside
from deeptree.stage1.data import Stage1Case, prepare_stage1_case

#: Bumped when the cached arrays change meaning (old cache entries are then rebuilt).
# 3: anatomy labels with the anatomical root (issue 18); 4: cases in RAS voxel order (issue 29:
# an entry of an LPS case cached before holds the arrays in the file's own order); 5: unbiased
# branch diameters, the phantoms' classes from their generator's radii (issue 30)
CACHE_VERSION = 5

#: The marker file of a cache entry, written first into each ``<cache>/<id>/`` it creates:
#: only a folder with it (or one holding nothing but the files below, an entry of a version
#: before the marker) is ever emptied and rewritten; a user's folder of that name is refused.
CACHE_MARKER = ".deeptree-cache"

#: The files of a cache entry (the only ones a rebuild removes).
_CACHE_FILES = frozenset(
    ["meta.json", "image.npy", "label.npy", "distance.npy"]
    + [f"locations{c}.npy" for c in range(4)]
)


def _cache_key(paths: CasePaths) -> str:
    """Changes whenever an input file changes (size, mtime) or the cache version does."""
    parts = [str(CACHE_VERSION)]
    for p in (paths.image, paths.label, tree_beside(paths.label)):
        if p is None:
            continue
        stat = Path(p).stat()
        parts += [str(Path(p).resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def load_stage1_case(paths: CasePaths, cache_dir: str | os.PathLike | None = None) -> Stage1Case:
    """Read and prepare one case of an ATM'22-layout dataset, through a disk cache.

    The case is brought to RAS voxel order first (``deeptree.orientation.case_to_ras``), the
    order every model is trained and run in: the prepared arrays, ``spacing`` and ``affine``
    are those of the reoriented case.

    In a phantom cohort (``root/treesTr/<id>.json`` beside ``root/labelsTr``,
    :func:`deeptree.phantom.cases.tree_beside`) the anatomy classes use the generator's
    lumen radii; that file is then part of the cache key.

    Parameters
    ----------
    paths : CasePaths
        From :func:`deeptree.io.list_cases`.
    cache_dir : path-like, optional
        Prepared arrays are stored in ``cache_dir/<id>/`` (``.npy``, re-read memory-mapped)
        and reused while the input files are unchanged. None: no cache.

    Raises
    ------
    InputError
        A missing CT or label file, a label of another shape or affine than the CT, a
        non-binary or empty label, unreadable files; ``cache_dir/<id>`` exists and is not a
        cache entry (:func:`check_cache_folder`).
    """
    if paths.image is None:
        raise InputError(
            f"case {paths.id}: no CT image (images*/{paths.id}_0000.nii.gz) for the label {paths.label}"
        )
    if paths.label is None:
        raise InputError(
            f"case {paths.id}: no label (labels*/{paths.id}.nii.gz) for the CT {paths.image}"
        )
    folder = Path(cache_dir) / paths.id if cache_dir is not None else None
    key = _cache_key(paths)
    if folder is not None:
        check_cache_folder(folder)
        meta = _read_meta(folder)
        if meta is not None and meta.get("key") == key:
            return _read_cached(folder, meta)
    # the models' voxel order (deeptree.orientation): an LPS case is trained on as RAS
    case = case_to_ras(load_case(paths.image, paths.label, case_id=paths.id))
    tree_json = tree_beside(paths.label)  # a phantom: its generator's radii make the classes
    spec = read_tree(tree_json) if tree_json is not None else None
    prepared = prepare_stage1_case(
        case.ct, case.label, case.spacing, case.affine, case_id=paths.id, tree_spec=spec
    )
    if folder is not None:
        _write_cached(folder, prepared, key)
        return _read_cached(folder, _read_meta(folder))
    return prepared


def check_cache_folder(folder: str | os.PathLike) -> None:
    """Refuse a case folder of the cache that the cache did not create.

    Parameters
    ----------
    folder : path-like
        ``<cache>/<case id>``; missing is fine (it will be created).

    Raises
    ------
    InputError
        ``folder`` is a file, or a folder without the :data:`CACHE_MARKER` that holds
        anything besides the files of a cache entry (hidden files aside): it is the user's,
        and is left as it is.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"{folder}: a file where the stage-1 cache keeps a case folder; give another --cache"
        )
    if not folder.is_dir() or (folder / CACHE_MARKER).is_file():
        return
    others = sorted(
        p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name not in _CACHE_FILES
    )
    if others:
        raise InputError(
            f"{folder}: not a folder of the stage-1 cache (no {CACHE_MARKER} marker; it holds "
            f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); it is left as it "
            "is: give another --cache"
        )


def _read_meta(folder: Path) -> dict | None:
    """The ``meta.json`` of a cache entry; None when missing or unreadable (rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_cached(folder: Path, case: Stage1Case, key: str) -> None:
    # only an entry of the cache's own is rewritten, and only its own files are removed
    # (never the folder: whatever else is in it stays)
    check_cache_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # first: incomplete until written again
    marker = folder / CACHE_MARKER
    if not marker.is_file():
        marker.write_text("a case of the deeptree stage-1 cache: the folder can be deleted\n")
    for name in sorted(_CACHE_FILES):
        (folder / name).unlink(missing_ok=True)
    arrays = {"image": case.image, "label": case.label, "distance": case.distance}
    arrays.update({f"locations{c}": case.locations[c] for c in range(4)})
    for name, array in arrays.items():
        atomic_write(folder / f"{name}.npy", lambda tmp, a=array: np.save(tmp, np.asarray(a)))
    meta = {
        "key": key,
        "id": case.id,
        "spacing": list(case.spacing),
        "affine": np.asarray(case.affine).tolist(),
        "orientation": CANONICAL,
    }
    # meta.json last: its presence marks a complete entry
    atomic_write(folder / "meta.json", lambda tmp: Path(tmp).write_text(json.dumps(meta)))


def _read_cached(folder: Path, meta: dict) -> Stage1Case:
    def load(name, mmap=True):
        return np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None)

    return Stage1Case(
        id=meta["id"],
        image=load("image"),
        label=load("label"),
        distance=load("distance"),
        locations=[load(f"locations{c}", mmap=False) for c in range(4)],
        spacing=tuple(meta["spacing"]),
        affine=np.asarray(meta["affine"]),
    )


def load_cohort(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    split: str = "Tr",
    progress: bool = False,
) -> list[Stage1Case]:
    """Prepare every case of an ATM'22-layout dataset (sorted by id), through the cache.

    Raises
    ------
    InputError
        An empty dataset, or any problem of :func:`load_stage1_case` (e.g. a CT without
        its label), naming the case.
    """
    from tqdm.auto import tqdm

    cases = list_cases(root, split)
    if not cases:
        raise InputError(f"{root}: no cases in images{split}/labels{split}")
    if cache_dir is not None:  # every case folder, before the long preparation
        for case in cases:
            check_cache_folder(Path(cache_dir) / case.id)
    return [
        load_stage1_case(c, cache_dir) for c in tqdm(cases, desc="prepare", disable=not progress)
    ]
