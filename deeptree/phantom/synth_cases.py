"""Phantom cases and cohorts whose CT is synthesised from the chest label map (issue 33).

:func:`generate_synth_case` grows an airway tree in a thorax of the drawn body size, draws the
whole-chest label map (:meth:`~deeptree.phantom.thorax.ThoraxGeometry.tissue_labels` with
:class:`~deeptree.phantom.thorax.ChestExtras`), the airways, lung vessels and tracheal
cartilage with partial volume, and synthesises the CT with settings drawn per case
(:mod:`deeptree.phantom.synth`). :func:`generate_synth_cohort` writes such cases in the ATM'22
layout, resumably, with the settings of every case in ``synth.json``. The run profiles'
phantoms and their cohorts are untouched.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from deeptree.files import clean_orphan_temporaries
from deeptree.io import (
    InputError,
    Volume,
    check_binary_mask,
    check_spacing,
    write_nifti,
)
from deeptree.phantom.around import layers_from_mask
from deeptree.phantom.cases import (
    COHORT_FOLDERS,
    PhantomCase,
    case_is_complete,
    case_paths,
    grow_and_draw,
    phantom_grid,
    resumed_record,
    write_case,
    write_record,
)
from deeptree.phantom.ct import tissue_label_map
from deeptree.phantom.raster import Grid
from deeptree.phantom.synth import (
    DEFAULT_RANGES,
    FAMILIES,
    SynthRanges,
    SynthSettings,
    cartilage_layer,
    draw_settings,
    label_map,
    synthesize_ct,
)
from deeptree.phantom.thorax import LABEL, ThoraxGeometry
from deeptree.phantom_config import PhantomProfile, phantom_profile
from deeptree.progress import progress_bar
from deeptree.real_scale import real_tree

#: The record of a synthesised cohort (settings of every case) in its root.
SYNTH_NAME = "synth.json"

#: Tracheal cartilage at scale 1 (mm): one ring every 5.5 mm, 3.5 mm wide (about 18 rings
#: over a 10-cm trachea).
_RING_PITCH_MM, _RING_MM = 5.5, 3.5


@dataclass
class SynthCase:
    """A synthesised case: the phantom case, its settings and its label map.

    Attributes
    ----------
    case : PhantomCase
    settings : SynthSettings
    labels : ndarray of uint8, shape (I, J, K)
        :func:`deeptree.phantom.synth.label_map` (tissues, then the drawn layers).
    """

    case: PhantomCase
    settings: SynthSettings
    labels: np.ndarray


def synth_grid(profile: PhantomProfile, geom: ThoraxGeometry, spacing_mm: float, margin_mm) -> Grid:
    """The phantom grid of ``geom`` at ``spacing_mm``, widened by ``margin_mm`` (x, y) on each
    side so that arms and the table can be in view."""
    base = phantom_grid(profile, geom, (spacing_mm,) * 3)
    mx, my = (float(m) * geom.scale for m in margin_mm)
    shape = (
        base.shape[0] + 2 * int(round(mx / spacing_mm)),
        base.shape[1] + 2 * int(round(my / spacing_mm)),
        base.shape[2],
    )
    return phantom_grid(profile, geom, (spacing_mm,) * 3, shape)


def generate_synth_case(
    seed,
    *,
    base: str | PhantomProfile = "standard",
    spacing_mm: float = 1.0,
    ranges: SynthRanges = DEFAULT_RANGES,
    families=FAMILIES,
    case_id: str | None = None,
    margin_mm=(40.0, 25.0),
) -> SynthCase:
    """Grow a tree and synthesise a whole-chest CT around it with settings drawn per case.

    Parameters
    ----------
    seed : int or sequence of int
        Seeds ``numpy.random.default_rng``: the settings are drawn first, so that a family
        switched off (``families``) changes nothing else of the case but that family.
    base : str or PhantomProfile
        Fixes the tree growth (lumen limit, sampling, plugs); its scale is used when the
        ``body`` family is fixed, else the drawn one.
    spacing_mm : float
        Isotropic voxel size (mm).
    ranges : SynthRanges
    families : iterable of str
        The randomised families (:data:`deeptree.phantom.synth.FAMILIES`).
    case_id : str, optional
    margin_mm : (float, float)
        Extra field of view (mm at scale 1) on each side in x and y.

    Returns
    -------
    SynthCase
    """
    prof = phantom_profile(base)
    rng = np.random.default_rng(seed)
    settings = draw_settings(rng, ranges, families, scale=prof.scale)
    geom = ThoraxGeometry(scale=settings.scale, extras=settings.extras())
    grid = synth_grid(prof, geom, spacing_mm, margin_mm)
    if case_id is None:
        case_id = f"PHANTOM_{seed:03d}" if isinstance(seed, (int, np.integer)) else "PHANTOM"
    tree, layers = grow_and_draw(
        prof, geom, grid, rng, case_id=case_id, seed=seed, profile_name=f"{prof.name}-synth"
    )
    cartilage = cartilage_layer(
        grid, tree, pitch_mm=_RING_PITCH_MM * geom.scale, ring_mm=_RING_MM * geom.scale
    )
    tissues, sides = tissue_label_map(grid, geom)
    ct = synthesize_ct(tissues, sides, layers, cartilage, grid, geom, settings, rng)
    case = PhantomCase(
        id=case_id,
        ct=ct,
        airway=layers.airway.astype(np.uint8),
        lung=(sides != 0).astype(np.uint8),
        tree=tree,
        spacing=grid.spacing,
        affine=grid.affine,
    )
    return SynthCase(case=case, settings=settings, labels=label_map(tissues, layers, cartilage))


def synth_ct_around_mask(
    airway: Volume,
    rng: np.random.Generator,
    settings: SynthSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """A domain-randomised chest CT around a given airway mask (e.g. a real ATM'22 tree).

    As :func:`deeptree.phantom.simulate_ct`: the thorax is fitted around the tree (its carina
    on the tree's, its lungs holding it; the tree keeps its own size, so ``settings.scale`` is
    not used), the lumen and a wall that follows the local radius are drawn from the mask;
    then the label map of the fitted thorax with ``settings``' extras and
    :func:`~deeptree.phantom.synth.synthesize_ct`. No cartilage: a mask has no branch list.

    Parameters
    ----------
    airway : Volume
        Airway lumen (0/1), its affine and spacing (mm). Axes that run against RAS are
        flipped for the simulation and back.
    rng : numpy.random.Generator
    settings : SynthSettings

    Returns
    -------
    ct : ndarray of int16, shape of the mask
        HU, in the mask's voxel order.
    lung : ndarray of uint8
        The fitted lungs (0/1), same order.
    """
    mask = check_binary_mask(airway.array, "airway")
    spacing = check_spacing(airway.spacing, "airway spacing")
    affine = np.asarray(airway.affine, dtype=float)
    flips = tuple(a for a in range(3) if affine[:3, a][np.argmax(np.abs(affine[:3, a]))] < 0)
    mask = np.ascontiguousarray(np.flip(mask, flips))
    grid, geom, layers, sides = layers_from_mask(mask, spacing, rng)
    geom = replace(geom, extras=settings.extras())
    tissues, _ = tissue_label_map(grid, geom)
    # the fitted lungs (grown around every bronchus) decide; tissue left without a lung
    # becomes muscle, as thorax_background makes it soft tissue
    tissues[(sides == 0) & (tissues == LABEL["lung"])] = LABEL["muscle"]
    tissues[sides != 0] = LABEL["lung"]
    no_cartilage = np.zeros(grid.shape, dtype=np.uint8)
    ct = synthesize_ct(tissues, sides, layers, no_cartilage, grid, geom, settings, rng)
    lung = (sides != 0).astype(np.uint8)
    return np.ascontiguousarray(np.flip(ct, flips)), np.ascontiguousarray(np.flip(lung, flips))


def synth_cts_around(
    tree: Volume, seeds, ranges: SynthRanges = DEFAULT_RANGES, families=FAMILIES
) -> list[Volume]:
    """CTs synthesised around one airway tree, one per seed (e.g. checks with image settings
    beyond the training draws: pass wider ``ranges``).

    Parameters
    ----------
    tree : Volume
        Airway lumen (0/1) with its affine and spacing.
    seeds : iterable of int
        CT ``i``'s settings and noise: ``numpy.random.default_rng(seeds[i])``.
    ranges : SynthRanges
    families : iterable of str

    Returns
    -------
    list of Volume
        int16 HU on the tree's grid, with its affine.
    """
    out = []
    for seed in seeds:
        rng = np.random.default_rng(int(seed))
        settings = draw_settings(rng, ranges, families, scale=1.0)
        ct, _ = synth_ct_around_mask(tree, rng, settings)
        out.append(Volume(ct, tree.affine, tree.spacing))
    return out


def generate_synth_cohort(
    root: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    base: str | PhantomProfile = "standard",
    spacing_mm: float = 1.0,
    ranges: SynthRanges = DEFAULT_RANGES,
    families=FAMILIES,
    real_trees=(),
    real_cases: int = 0,
    progress: bool | None = None,
) -> list[str]:
    """Write ``n`` synthesised cases into ``root`` (ATM'22 layout), resumably.

    Case ``i`` is ``PHANTOM_{i:03d}``, generated with seed ``(seed, i)``. Then, for each real
    airway mask of ``real_trees``, ``real_cases`` CTs synthesised around it
    (:func:`synth_ct_around_mask`, the mask resampled to ``spacing_mm``): case ``n + j``, seed
    ``(seed, n + j)``, written without a tree file (its anatomy classes are parsed from the
    mask, as for real data). ``root/synth.json`` records the arguments and every case's
    settings; a rerun with the same arguments skips the complete cases, one with other
    arguments is refused.

    Parameters
    ----------
    root : path-like
    n : int
        Number of cases (>= 1).
    seed : int
    base, spacing_mm, ranges, families
        As :func:`generate_synth_case`.
    real_trees : sequence of path-like
        Real airway masks (NIfTI) to synthesise CTs around.
    real_cases : int
        CTs per real tree.
    progress : bool or None
        See :func:`deeptree.progress.enabled`.

    Returns
    -------
    list of str
        The ids of all the cases.

    Raises
    ------
    InputError
        ``n < 1``, ``real_cases < 0``, or ``root`` holds a cohort made with other arguments.
    """
    if int(real_cases) < 0:
        raise InputError(f"real_cases: must be at least 0, got {real_cases}")
    if int(n) < 1:
        raise InputError(f"cohort size: n must be at least 1, got {n}")
    prof = phantom_profile(base)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / SYNTH_NAME
    settings = {
        "base": asdict(prof),
        "seed": int(seed),
        "spacing_mm": float(spacing_mm),
        "ranges": asdict(ranges),
        "families": list(families),
        "real_trees": [str(p) for p in real_trees],
        "real_cases": int(real_cases),
    }
    record = resumed_record(record_path, "deeptree-synth-1", settings)
    clean_orphan_temporaries(root, COHORT_FOLDERS)
    ids = [f"PHANTOM_{i:03d}" for i in range(int(n))]
    bar = progress_bar(ids, progress=progress, desc="phantoms (synthesised)", unit="case")
    for i, case_id in enumerate(bar):
        if case_id in record["cases"] and case_is_complete(root, case_id):
            continue
        made = generate_synth_case(
            (int(seed), i),
            base=replace(prof),
            spacing_mm=spacing_mm,
            ranges=ranges,
            families=families,
            case_id=case_id,
        )
        write_case(made.case, root)
        record["cases"][case_id] = {
            "settings": json.loads(json.dumps(made.settings.as_dict())),
            "files": [str(p.relative_to(root)) for p in case_paths(root, case_id).values()],
        }
        write_record(record_path, record)
    real = [(Path(p), j) for p in real_trees for j in range(int(real_cases))]
    for offset, (tree_path, _) in enumerate(real):
        index = int(n) + offset
        case_id = f"PHANTOM_{index:03d}"
        ids.append(case_id)
        paths = case_paths(root, case_id)
        files = [paths["image"], paths["label"], paths["lung"]]
        if case_id in record["cases"] and all(f.is_file() for f in files):
            continue
        tree = real_tree(tree_path, spacing_mm)
        rng = np.random.default_rng((int(seed), index))
        case_settings = draw_settings(rng, ranges, families, scale=1.0)
        ct, lung = synth_ct_around_mask(tree, rng, case_settings)
        write_nifti(paths["image"], ct, tree.affine, dtype=np.int16)
        write_nifti(paths["label"], tree.array, tree.affine, dtype=np.uint8)
        write_nifti(paths["lung"], lung, tree.affine, dtype=np.uint8)
        record["cases"][case_id] = {
            "settings": json.loads(json.dumps(case_settings.as_dict())),
            "real_tree": str(tree_path),
            "files": [str(f.relative_to(root)) for f in files],
        }
        write_record(record_path, record)
    return ids
