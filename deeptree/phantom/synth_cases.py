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
from deeptree.io import InputError, atomic_write
from deeptree.phantom.cases import (
    COHORT_FOLDERS,
    PhantomCase,
    _jsonable_seed,
    case_is_complete,
    case_paths,
    phantom_grid,
    write_case,
)
from deeptree.phantom.ct import Layers, choose_plugs, draw_tree, vessel_segments
from deeptree.phantom.growth import AirwayTreeSpec, grow_airway_tree, grow_vessel_tree
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
from deeptree.phantom.thorax import ThoraxGeometry
from deeptree.phantom_config import PhantomProfile, phantom_profile
from deeptree.progress import progress_bar

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
        "profile": f"{prof.name}-synth",
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
    cartilage = cartilage_layer(
        grid, tree, pitch_mm=_RING_PITCH_MM * geom.scale, ring_mm=_RING_MM * geom.scale
    )
    tissues, sides = _tissue_labels(grid, geom)
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


def _tissue_labels(grid: Grid, geom: ThoraxGeometry) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`ThoraxGeometry.tissue_labels` on the grid, a slab of slices at a time."""
    x, y, z = grid.axes()
    labels = np.empty(grid.shape, dtype=np.uint8)
    sides = np.empty(grid.shape, dtype=np.int8)
    slab = max(1, int(4e6 // (grid.shape[0] * grid.shape[1])))  # bound the temporaries
    for k0 in range(0, grid.shape[2], slab):
        part, side = geom.tissue_labels(x, y, z[:, :, k0 : k0 + slab])
        labels[:, :, k0 : k0 + slab] = part
        sides[:, :, k0 : k0 + slab] = side
    return labels, sides


def generate_synth_cohort(
    root: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    base: str | PhantomProfile = "standard",
    spacing_mm: float = 1.0,
    ranges: SynthRanges = DEFAULT_RANGES,
    families=FAMILIES,
    progress: bool | None = None,
) -> list[str]:
    """Write ``n`` synthesised cases into ``root`` (ATM'22 layout), resumably.

    Case ``i`` is ``PHANTOM_{i:03d}``, generated with seed ``(seed, i)``. ``root/synth.json``
    records the arguments and every case's settings; a rerun with the same arguments skips the
    complete cases, one with other arguments is refused.

    Parameters
    ----------
    root : path-like
    n : int
        Number of cases (>= 1).
    seed : int
    base, spacing_mm, ranges, families
        As :func:`generate_synth_case`.
    progress : bool or None
        See :func:`deeptree.progress.enabled`.

    Returns
    -------
    list of str
        The ids of the ``n`` cases.

    Raises
    ------
    InputError
        ``n < 1``, or ``root`` holds a cohort made with other arguments.
    """
    if int(n) < 1:
        raise InputError(f"cohort size: n must be at least 1, got {n}")
    prof = phantom_profile(base)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / SYNTH_NAME
    settings = json.loads(
        json.dumps(
            {
                "base": asdict(prof),
                "seed": int(seed),
                "spacing_mm": float(spacing_mm),
                "ranges": asdict(ranges),
                "families": list(families),
            },
            default=str,
        )
    )
    record = {"format": "deeptree-synth-1", **settings, "cases": {}}
    if record_path.is_file():
        old = json.loads(record_path.read_text(encoding="utf-8"))
        for key, value in settings.items():
            if old.get(key) != value:
                raise InputError(
                    f"{record_path}: this cohort was generated with another {key}; give another "
                    "folder (or delete the cohort)"
                )
        record["cases"] = old.get("cases", {})
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
        text = json.dumps(record, indent=1)
        atomic_write(record_path, lambda tmp, text=text: Path(tmp).write_text(text))
    return ids
