"""Phantom profiles as data: image quality and size of the synthetic CT per run profile
(notebook 01, ``deeptree.phantom``). Split from ``deeptree.config``, which holds the other
per-profile tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deeptree.config import check_profile


@dataclass(frozen=True)
class CTParams:
    """Hounsfield units and image-quality settings of the simulated CT.

    Attributes
    ----------
    lumen_hu, wall_hu, vessel_hu : float
        Air in the airway lumen, airway wall (soft tissue), blood in vessels.
    parenchyma_hu : float
        Lung parenchyma at mid-depth.
    gravity_hu : float
        Posterior (dependent) lung is denser by up to this much, anterior lighter.
    texture_hu, texture_mm : float
        Standard deviation (HU) and correlation length (mm, Gaussian sigma) of the
        parenchyma texture.
    psf_fwhm_mm : float
        Full width at half maximum (mm) of the Gaussian point spread function.
    noise_hu : float
        Standard deviation of the image noise (HU).
    noise_corr_mm : float
        Gaussian sigma (mm) that correlates the noise (0 = white).
    """

    lumen_hu: float = -1000.0
    wall_hu: float = 40.0
    vessel_hu: float = 40.0
    parenchyma_hu: float = -890.0
    gravity_hu: float = 25.0
    texture_hu: float = 30.0
    texture_mm: float = 1.2
    psf_fwhm_mm: float = 1.0
    noise_hu: float = 25.0
    noise_corr_mm: float = 0.4


@dataclass(frozen=True)
class PhantomProfile:
    """Size and image quality of the phantoms of one run profile.

    Attributes
    ----------
    name : str
        "smoke", "cpu" or "standard" (the ``gpu`` run profile).
    spacing_mm : float
        Isotropic voxel size (mm).
    scale : float
        Size of the chest relative to an adult (the small profiles use a small chest so
        that it fits a small grid; anatomy tests use ``scale = 1``).
    min_lumen_mm : float
        Growth stops before lumen diameters below this (about what the spacing resolves).
    n_points, min_points : int
        Lung volume sampling of the tree growth (see :func:`grow_airway_tree`).
    n_plugs : int
        Mucus plugs per case.
    plug_min_generation : int
        Plugs go in branches of at least this generation.
    ct : CTParams
        HU and image-quality settings (PSF, noise).
    """

    name: str
    spacing_mm: float
    scale: float
    min_lumen_mm: float
    n_points: int
    min_points: int
    n_plugs: int
    plug_min_generation: int
    ct: CTParams = field(default_factory=CTParams)


_PROFILES = {
    # CI: ~60 x 45 x 55 voxels, trachea, main bronchi and a few generations
    "smoke": PhantomProfile(
        name="smoke",
        spacing_mm=2.6,
        scale=0.55,
        min_lumen_mm=3.0,
        n_points=3000,
        min_points=5,
        n_plugs=1,
        plug_min_generation=3,
        ct=CTParams(psf_fwhm_mm=2.6, noise_hu=12.0, noise_corr_mm=0.0, texture_mm=2.0,
                    texture_hu=20.0),
    ),  # fmt: skip
    # a laptop: 152 x 111 x 125 voxels at 1 mm (fewer than the 157 x 115 x 130 at 1.5 mm it
    # replaces), lumen down to 1.2 mm, a small chest (scale 0.45): the paper's class 3 (lumen
    # <= 2 mm) is real, ~45% of the branches (atm_001: 34 of 182, unbiased measure); none at 1.5 mm
    "cpu": PhantomProfile(
        name="cpu",
        spacing_mm=1.0,
        scale=0.45,
        min_lumen_mm=1.2,
        n_points=15000,
        min_points=5,
        n_plugs=3,
        plug_min_generation=4,
        ct=CTParams(psf_fwhm_mm=1.1, noise_hu=18.0, noise_corr_mm=0.0, texture_mm=1.5),
    ),
    # realistic resolution: 0.7 mm, lumen down to 1 mm
    "standard": PhantomProfile(
        name="standard",
        spacing_mm=0.7,
        scale=1.0,
        min_lumen_mm=1.0,
        n_points=40000,
        min_points=5,
        n_plugs=6,
        plug_min_generation=4,
        ct=CTParams(psf_fwhm_mm=1.0, noise_hu=28.0, noise_corr_mm=0.4, texture_mm=1.2),
    ),
}


def phantom_profile(name: str | PhantomProfile) -> PhantomProfile:
    """The :class:`PhantomProfile` of a run profile.

    Parameters
    ----------
    name : str or PhantomProfile
        "smoke", "cpu", "gpu" (same as "standard"), or a profile (returned unchanged).

    Raises
    ------
    deeptree.config.UnknownProfileError
        For any other name (a ValueError listing the valid names).
    """
    if isinstance(name, PhantomProfile):
        return name
    if name == "standard":
        return _PROFILES["standard"]
    check_profile(name)
    return _PROFILES["standard" if name == "gpu" else name]
