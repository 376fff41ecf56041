"""Phantoms whose image settings and body size vary per case (opt-in, for the demo weights).

The profiles of :mod:`deeptree.config` (``smoke``, ``cpu``, ``standard``) give every case of a
cohort the same point spread, noise, HU levels and chest size. A network trained on one of
them has seen one scanner and one patient size; a real CT differs in what the phantom does not
pin down. :func:`varied_profile` draws, for one case, a copy of a base profile with these
settings randomised within :class:`Variation`'s ranges:

* reconstruction sharpness: the point spread (FWHM, mm), which also sets the partial-volume
  width at every edge;
* noise level (HU) and texture (correlation length, mm); parenchyma texture;
* HU offsets: one calibration offset added to every tissue, and the parenchyma density;
* body size: the chest scale (relative to an adult).

The existing profiles and :func:`deeptree.phantom.generate_cohort` are untouched (their bytes
and the cohort manifest's ``GENERATOR_VERSION`` stay as they are): this module is used only by
``benchmarks/demo_weights.py`` through :func:`generate_varied_cohort`, which writes its own
record of every case's settings, ``varied.json``, beside the ATM'22 folders.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from deeptree.files import clean_orphan_temporaries
from deeptree.io import InputError
from deeptree.phantom.cases import (
    COHORT_FOLDERS,
    case_is_complete,
    case_paths,
    generate_case,
    resumed_record,
    write_case,
    write_record,
)
from deeptree.phantom_config import PhantomProfile, phantom_profile
from deeptree.progress import progress_bar

#: The record of a varied cohort (settings of every case) in its root.
VARIED_NAME = "varied.json"


@dataclass(frozen=True)
class Variation:
    """Ranges (low, high) from which :func:`varied_profile` draws uniformly, per case.

    Attributes
    ----------
    scale : (float, float)
        Chest size relative to an adult (the base profile's ``scale`` is replaced).
    psf_fwhm_mm : (float, float)
        Point-spread FWHM, mm (sharp to smooth reconstruction kernels; the partial-volume
        width at every edge).
    noise_hu : (float, float)
        Image noise standard deviation, HU.
    noise_corr_mm : (float, float)
        Noise correlation (Gaussian sigma, mm; 0 = white).
    texture_hu : (float, float)
        Parenchyma texture standard deviation, HU.
    texture_mm : (float, float)
        Parenchyma texture correlation length, mm.
    parenchyma_hu : (float, float)
        Lung parenchyma at mid-depth, HU.
    hu_offset : (float, float)
        One offset added to the lumen, wall, vessel and parenchyma HU (scanner calibration).
    """

    scale: tuple[float, float] = (0.42, 0.55)
    psf_fwhm_mm: tuple[float, float] = (0.8, 2.2)
    noise_hu: tuple[float, float] = (8.0, 50.0)
    noise_corr_mm: tuple[float, float] = (0.0, 0.8)
    texture_hu: tuple[float, float] = (15.0, 45.0)
    texture_mm: tuple[float, float] = (0.8, 2.0)
    parenchyma_hu: tuple[float, float] = (-920.0, -820.0)
    hu_offset: tuple[float, float] = (-30.0, 30.0)


def varied_profile(
    base: str | PhantomProfile, rng: np.random.Generator, variation: Variation = Variation()
) -> PhantomProfile:
    """A copy of ``base`` with the settings of :class:`Variation` drawn from ``rng``.

    Parameters
    ----------
    base : str or PhantomProfile
        The profile that fixes everything else (spacing, lumen limit, plugs, ...).
    rng : numpy.random.Generator
    variation : Variation

    Returns
    -------
    PhantomProfile
        Named ``"<base>-varied"``.
    """
    prof = phantom_profile(base)
    for name, (low, high) in asdict(variation).items():
        if not low <= high:
            raise InputError(f"Variation.{name}: low {low} is above high {high}")

    def draw(name: str) -> float:
        low, high = getattr(variation, name)
        return float(rng.uniform(low, high))

    offset = draw("hu_offset")
    ct = replace(
        prof.ct,
        psf_fwhm_mm=draw("psf_fwhm_mm"),
        noise_hu=draw("noise_hu"),
        noise_corr_mm=draw("noise_corr_mm"),
        texture_hu=draw("texture_hu"),
        texture_mm=draw("texture_mm"),
        parenchyma_hu=draw("parenchyma_hu") + offset,
        lumen_hu=prof.ct.lumen_hu + offset,
        wall_hu=prof.ct.wall_hu + offset,
        vessel_hu=prof.ct.vessel_hu + offset,
    )
    return replace(prof, name=f"{prof.name}-varied", scale=draw("scale"), ct=ct)


def generate_varied_cohort(
    root: str | os.PathLike,
    base: str | PhantomProfile = "cpu",
    n: int = 12,
    seed: int = 0,
    *,
    spacing_mm: float | None = None,
    variation: Variation | None = Variation(),
    progress: bool | None = None,
) -> list[str]:
    """Generate ``n`` phantom cases with per-case varied settings into ``root``, resumably.

    Case ``i`` is ``PHANTOM_{i:03d}``: its settings are drawn with seed ``(seed, i, 1)``
    (:func:`varied_profile`) and the case itself generated with seed ``(seed, i)``, so each
    case is the same whatever run produced it. ``root/varied.json`` records the base profile,
    the seed, the variation and every case's settings; a rerun with the same arguments skips
    the complete cases; one with other arguments is refused.

    Parameters
    ----------
    root : path-like
    base : str or PhantomProfile
    n : int
        Number of cases (>= 1).
    seed : int
    spacing_mm : float, optional
        Isotropic voxel size (mm) instead of the base profile's.
    variation : Variation or None
        None: every case has the base profile's settings (at ``spacing_mm``): the control
        cohort without randomisation.
    progress : bool or None
        See :func:`deeptree.progress.enabled`.

    Returns
    -------
    list of str
        The ids of the ``n`` cases.
    """
    prof = phantom_profile(base)
    if spacing_mm is not None:
        prof = replace(prof, spacing_mm=float(spacing_mm))
    if int(n) < 1:
        raise InputError(f"cohort size: n must be at least 1, got {n}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / VARIED_NAME
    settings = {
        "base": asdict(prof),
        "seed": int(seed),
        "variation": None if variation is None else asdict(variation),
    }
    record = resumed_record(record_path, "deeptree-varied-1", settings)
    clean_orphan_temporaries(root, COHORT_FOLDERS)
    ids = [f"PHANTOM_{i:03d}" for i in range(int(n))]
    bar = progress_bar(ids, progress=progress, desc="phantoms (varied)", unit="case")
    for i, case_id in enumerate(bar):
        if case_id in record["cases"] and case_is_complete(root, case_id):
            continue
        case_prof = (
            prof
            if variation is None
            else varied_profile(prof, np.random.default_rng((int(seed), i, 1)), variation)
        )
        write_case(generate_case(case_prof, (int(seed), i), case_id=case_id), root)
        record["cases"][case_id] = {
            "scale": case_prof.scale,
            "ct": asdict(case_prof.ct),
            "files": [str(p.relative_to(root)) for p in case_paths(root, case_id).values()],
        }
        write_record(record_path, record)
    return ids
