"""Phantom profiles, one phantom case, and a resumable cohort on disk (ATM'22 layout)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeptree.files import clean_orphan_temporaries
from deeptree.io import InputError, atomic_write, case_file_names, check_spacing, write_nifti
from deeptree.phantom.ct import (
    Layers,
    choose_plugs,
    compose_ct,
    draw_tree,
    thorax_background,
    vessel_segments,
)
from deeptree.phantom.growth import AirwayTreeSpec, grow_airway_tree, grow_vessel_tree
from deeptree.phantom.manifest import CohortManifest
from deeptree.phantom.raster import Grid
from deeptree.phantom.thorax import ThoraxGeometry
from deeptree.phantom_config import PhantomProfile, phantom_profile
from deeptree.progress import progress_bar

#: Folders of a cohort beside the ATM'22 ``imagesTr`` / ``labelsTr``.
LUNGS_DIR, TREES_DIR = "lungsTr", "treesTr"

#: The folders a cohort's case files are written into (below its root).
COHORT_FOLDERS = ("imagesTr", "labelsTr", LUNGS_DIR, TREES_DIR)

#: The names of a phantom case's files in each of :data:`COHORT_FOLDERS`.
_CASE_FILE = {
    "imagesTr": re.compile(r"^PHANTOM_\d{3,}_0000\.nii\.gz$"),
    "labelsTr": re.compile(r"^PHANTOM_\d{3,}\.nii\.gz$"),
    LUNGS_DIR: re.compile(r"^PHANTOM_\d{3,}\.nii\.gz$"),
    TREES_DIR: re.compile(r"^PHANTOM_\d{3,}\.json$"),
}


@dataclass
class PhantomCase:
    """One synthetic chest CT with its exact airway ground truth.

    Attributes
    ----------
    id : str
        e.g. ``"PHANTOM_000"``.
    ct : ndarray of int16, shape (I, J, K)
        HU.
    airway : ndarray of uint8, shape (I, J, K)
        Ground-truth lumen (0/1).
    lung : ndarray of uint8, shape (I, J, K)
        Lung mask (0/1).
    tree : AirwayTreeSpec
        The branches (world RAS mm) and mucus plugs.
    spacing : tuple of 3 float
        mm.
    affine : ndarray, shape (4, 4)
        RAS: spacing on the diagonal, so i runs towards the patient's right, j anterior and
        k towards the head (the trachea is at high k, the diaphragm at low k).
    """

    id: str
    ct: np.ndarray
    airway: np.ndarray
    lung: np.ndarray
    tree: AirwayTreeSpec
    spacing: tuple[float, float, float]
    affine: np.ndarray


def phantom_grid(profile: PhantomProfile, geom: ThoraxGeometry, spacing=None, shape=None) -> Grid:
    """The voxel grid of a phantom: the thorax field of view at the profile's spacing.

    Raises
    ------
    InputError
        Spacing <= 0, a spacing too coarse to show the trachea, or a ``shape`` too small
        to hold the lungs and the carina.
    """
    sp = check_spacing(
        spacing if spacing is not None else (profile.spacing_mm,) * 3, "phantom spacing"
    )
    trachea_mm = 15.5 * geom.scale
    if trachea_mm / max(sp) < 2.0:
        raise InputError(
            f"phantom spacing: {max(sp):g} mm is too coarse for a trachea of {trachea_mm:.1f} mm "
            f"(needs at least 2 voxels across; use a spacing <= {trachea_mm / 2:.2f} mm)"
        )
    fov = geom.fov_mm()
    centre = fov.mean(axis=1)
    custom_shape = shape is not None
    if shape is None:
        shape = tuple(int(np.ceil((fov[a, 1] - fov[a, 0]) / sp[a])) for a in range(3))
    shape = tuple(int(s) for s in shape)
    extent = np.asarray(shape) * np.asarray(sp)
    lung_box = geom.lung_box_mm()
    need = np.array([lung_box[1, 0] - lung_box[0, 0], lung_box[1, 1] - lung_box[0, 1], 0.0])
    need[2] = (
        geom.carina_mm[2] + 20.0 * geom.scale - lung_box[0, 2]
    )  # lung base to above the carina
    if np.any(extent < need):
        raise InputError(
            f"phantom shape {shape}: the volume ({extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} mm "
            f"at {sp} mm) is too small for the lungs and the trachea, which need at least "
            f"{need[0]:.0f} x {need[1]:.0f} x {need[2]:.0f} mm"
        )
    origin = centre - (np.asarray(shape) - 1) * np.asarray(sp) / 2.0
    if custom_shape and extent[2] < fov[2, 1] - fov[2, 0]:
        # a shorter volume keeps the lungs and the carina: align its bottom with the lungs
        origin[2] = lung_box[0, 2] - 5.0 * geom.scale
    return Grid(shape=shape, spacing=sp, origin=tuple(float(v) for v in origin))


def generate_case(
    profile: str | PhantomProfile = "cpu",
    seed=0,
    *,
    case_id: str | None = None,
    spacing=None,
    shape=None,
) -> PhantomCase:
    """Grow an airway tree and simulate the chest CT around it.

    Parameters
    ----------
    profile : str or PhantomProfile
        "smoke", "cpu", "gpu"/"standard".
    seed : int or sequence of int
        Seeds ``numpy.random.default_rng``; the same seed gives the same bytes.
    case_id : str, optional
        Default ``PHANTOM_<seed>``.
    spacing : sequence of 3 float, optional
        Override the profile's voxel size (mm).
    shape : sequence of 3 int, optional
        Override the grid size (voxels); must hold the lungs and the carina.

    Returns
    -------
    PhantomCase

    Raises
    ------
    InputError
        Bad spacing or a volume too small (see :func:`phantom_grid`).
    deeptree.config.UnknownProfileError
        Unknown profile name.
    """
    prof = phantom_profile(profile)
    geom = ThoraxGeometry(scale=prof.scale)
    grid = phantom_grid(prof, geom, spacing, shape)
    rng = np.random.default_rng(seed)
    if case_id is None:
        case_id = f"PHANTOM_{seed:03d}" if isinstance(seed, (int, np.integer)) else "PHANTOM"
    tree, layers = grow_and_draw(prof, geom, grid, rng, case_id=case_id, seed=seed)
    background, sides = thorax_background(grid, geom, rng, prof.ct)
    ct = compose_ct(background, layers, grid, rng, prof.ct)
    return PhantomCase(
        id=case_id,
        ct=ct,
        airway=layers.airway.astype(np.uint8),
        lung=(sides != 0).astype(np.uint8),
        tree=tree,
        spacing=grid.spacing,
        affine=grid.affine,
    )


def grow_and_draw(
    prof: PhantomProfile,
    geom: ThoraxGeometry,
    grid: Grid,
    rng: np.random.Generator,
    *,
    case_id: str,
    seed,
    profile_name: str | None = None,
) -> tuple[AirwayTreeSpec, Layers]:
    """Grow a phantom's airway tree (with its plugs) and draw it with its vessels on ``grid``.

    The random draws are made in a fixed order (tree, plugs, bronchial arteries, vessel tree),
    so the same ``rng`` state gives the same tree and layers.

    Parameters
    ----------
    prof : PhantomProfile
        Lumen limit, lung sampling and plugs.
    geom : ThoraxGeometry
    grid : Grid
    rng : numpy.random.Generator
    case_id : str
    seed : int or sequence of int
        Recorded in the tree's metadata.
    profile_name : str, optional
        Recorded as the tree's profile (default ``prof.name``).

    Returns
    -------
    tree : AirwayTreeSpec
        Branches, plugs and metadata (profile, case id, seed, spacing, shape).
    layers : Layers
        Lumen, wall, plug and vessel coverage on ``grid``.
    """
    tree = grow_airway_tree(
        geom,
        rng,
        min_lumen_mm=prof.min_lumen_mm,
        n_points=prof.n_points,
        min_points=prof.min_points,
    )
    plugs = choose_plugs(tree, prof.n_plugs, rng, prof.plug_min_generation)
    meta = {
        **tree.meta,
        "profile": profile_name or prof.name,
        "case_id": case_id,
        "seed": _jsonable_seed(seed),
        "spacing_mm": list(grid.spacing),
        "shape": list(grid.shape),
    }
    tree = AirwayTreeSpec(tree.branches, plugs, meta)
    vessels = vessel_segments(tree, geom, rng, min_radius_mm=0.4 * prof.min_lumen_mm)
    vessels += grow_vessel_tree(
        geom,
        rng,
        min_diameter_mm=max(0.6 * prof.min_lumen_mm, 1.0),
        n_points=prof.n_points,
        min_points=prof.min_points,
    )
    layers = Layers.empty(grid.shape)
    draw_tree(grid, tree, vessels, layers)
    return tree, layers


def _jsonable_seed(seed):
    return int(seed) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]


def case_paths(root: str | os.PathLike, case_id: str) -> dict[str, Path]:
    """Paths of the four files of a case: ``image``, ``label``, ``lung``, ``tree``."""
    root = Path(root)
    image_name, label_name = case_file_names(case_id)
    return {
        "image": root / "imagesTr" / image_name,
        "label": root / "labelsTr" / label_name,
        "lung": root / LUNGS_DIR / label_name,
        "tree": root / TREES_DIR / f"{case_id}.json",
    }


def write_case(case: PhantomCase, root: str | os.PathLike) -> dict[str, Path]:
    """Write a case in the ATM'22 layout (each file atomically: temporary name + rename).

    ``root/imagesTr/ID_0000.nii.gz`` (CT, int16 HU), ``root/labelsTr/ID.nii.gz`` (airway,
    uint8), ``root/lungsTr/ID.nii.gz`` (lung, uint8), ``root/treesTr/ID.json`` (the tree).
    The tree is written last.

    Returns
    -------
    dict of Path
        As :func:`case_paths`.
    """
    paths = case_paths(root, case.id)
    write_nifti(paths["image"], case.ct, case.affine, dtype=np.int16)
    write_nifti(paths["label"], case.airway, case.affine, dtype=np.uint8)
    write_nifti(paths["lung"], case.lung, case.affine, dtype=np.uint8)
    text = json.dumps(case.tree.to_dict(), indent=1)
    atomic_write(paths["tree"], lambda tmp: Path(tmp).write_text(text))
    return paths


def read_tree(path: str | os.PathLike) -> AirwayTreeSpec:
    """Read a tree JSON written by :func:`write_case`."""
    path = Path(path)
    try:
        return AirwayTreeSpec.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a phantom tree JSON ({type(err).__name__}: {err})") from err


def refuse_foreign_cases(root: str | os.PathLike) -> None:
    """Refuse a cohort folder whose case folders hold files that are not phantom cases.

    A phantom cohort is only ever written into a new folder or one holding a cohort (this
    one, partial, or one written before manifests existed): generating it into a real
    dataset would mix PHANTOM cases into its ``imagesTr``/``labelsTr``.

    Parameters
    ----------
    root : path-like
        The cohort folder (missing is fine).

    Raises
    ------
    InputError
        A visible file in one of :data:`COHORT_FOLDERS` does not have the name of a phantom
        case file (``PHANTOM_<i>_0000.nii.gz``, ``PHANTOM_<i>.nii.gz``, ``PHANTOM_<i>.json``);
        the message names the first such file and how many there are.
    """
    root = Path(root)
    foreign = [
        path
        for folder in COHORT_FOLDERS
        if (root / folder).is_dir()
        for path in sorted((root / folder).iterdir())
        if not path.name.startswith(".") and not _CASE_FILE[folder].match(path.name)
    ]
    if foreign:
        more = f" (and {len(foreign) - 1} more file(s))" if len(foreign) > 1 else ""
        raise InputError(
            f"{foreign[0]}: not a phantom case{more}; {root} holds another dataset, and phantom "
            "cases are never mixed into it: give a new folder as --out"
        )


def tree_beside(label: str | os.PathLike) -> Path | None:
    """The generator's tree of a phantom label, when the cohort has one.

    Parameters
    ----------
    label : path-like
        An airway mask ``root/labels*/ID.nii.gz`` (or ``.nii``).

    Returns
    -------
    Path or None
        ``root/treesTr/ID.json`` if that file exists (a phantom cohort written by
        :func:`write_case`), else None (a real dataset).
    """
    label = Path(label)
    case_id = label.name.removesuffix(".gz").removesuffix(".nii")
    path = label.parent.parent / TREES_DIR / f"{case_id}.json"
    return path if path.is_file() else None


def resumed_record(path: Path, fmt: str, settings: dict) -> dict:
    """The record of a generated cohort (``varied.json``, ``synth.json``) as a run starts:
    ``{"format": fmt, **settings, "cases": {...}}``, with the cases an earlier, interrupted
    run of the same settings recorded (none when ``path`` does not exist).

    Parameters
    ----------
    path : Path
        The record file in the cohort folder.
    fmt : str
        Its format name (``"deeptree-varied-1"``).
    settings : dict
        What makes the cohort, JSON-serialisable (compared after a JSON round trip).

    Raises
    ------
    InputError
        ``path`` records other settings (a cohort of other phantoms is in the folder).
    """
    settings = json.loads(json.dumps(settings, default=str))
    record = {"format": fmt, **settings, "cases": {}}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        for key, value in settings.items():
            if old.get(key) != value:
                raise InputError(
                    f"{path}: this cohort was generated with another {key}; give another "
                    "folder (or delete the cohort)"
                )
        record["cases"] = old.get("cases", {})
    return record


def write_record(path: Path, record: dict) -> None:
    """Write a cohort record (:func:`resumed_record`) atomically, after each case."""
    text = json.dumps(record, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def case_is_complete(root: str | os.PathLike, case_id: str) -> bool:
    """True when all four files of the case exist (they are only ever written whole)."""
    return all(p.is_file() and p.stat().st_size > 0 for p in case_paths(root, case_id).values())


def generate_cohort(
    root: str | os.PathLike,
    profile: str | PhantomProfile = "cpu",
    n: int = 12,
    seed: int = 0,
    progress: bool | None = None,
) -> list[str]:
    """Generate ``n`` phantom cases into ``root`` (ATM'22 layout), resumably.

    Case ``i`` is ``PHANTOM_{i:03d}`` with seed ``(seed, i)``, so each case is the same
    whatever order or run produced it. Every file is written under a temporary name and
    renamed, so an interrupted run leaves only whole files; ``root/cohort.json`` (see
    :mod:`deeptree.phantom.manifest`) lists the profile, seed, generator version and the
    checksums of the cases done, so the next run skips the complete cases, generates the rest,
    and removes the temporary files a killed run left behind.

    Parameters
    ----------
    root : path-like
    profile : str or PhantomProfile
    n : int
        Number of cases (>= 1).
    seed : int
        Cohort seed.
    progress : bool or None
        Show a tqdm progress bar; None: shown unless under the notebook runner
        (:func:`deeptree.progress.enabled`).

    Returns
    -------
    list of str
        The ids of all ``n`` cases.

    Raises
    ------
    InputError
        ``root`` holds a cohort of another profile, seed or generator version, a file
        changed since it was generated (see :class:`~deeptree.phantom.manifest.CohortManifest`),
        or files that are not phantom cases (:func:`refuse_foreign_cases`).
    """
    prof = phantom_profile(profile)
    if int(n) < 1:
        raise InputError(f"cohort size: n must be at least 1, got {n}")
    root = Path(root)
    refuse_foreign_cases(root)
    manifest = CohortManifest(root, prof, int(seed))
    clean_orphan_temporaries(root, COHORT_FOLDERS)
    ids = [f"PHANTOM_{i:03d}" for i in range(int(n))]
    bar = progress_bar(ids, progress=progress, desc=f"phantoms ({prof.name})", unit="case")
    for i, case_id in enumerate(bar):
        paths = case_paths(root, case_id)
        if manifest.is_complete(case_id, paths) or (
            case_id not in manifest.cases
            and case_is_complete(root, case_id)
            and manifest.adopt_legacy(case_id, paths)
        ):
            bar.set_postfix_str(f"{case_id} done already")
            continue
        write_case(generate_case(prof, (int(seed), i), case_id=case_id), root)
        manifest.add(case_id, paths)
    return ids
