"""Domain-randomised chest CT drawn from the chest label map (issue 33), after SynthSeg.

SynthSeg (Billot et al., Medical Image Analysis 2023) trains a brain segmenter only on images
synthesised from label maps, drawing every tissue's intensity, the blur, the noise and the
resolution at random per image, so widely that a real scan is one more draw. This module does
the same for the chest: the label map of :meth:`deeptree.phantom.thorax.ThoraxGeometry.tissue_labels`
(with :class:`~deeptree.phantom.thorax.ChestExtras`) plus the airway tree and lung vessels drawn
with partial volume (:class:`deeptree.phantom.ct.Layers`) and the tracheal cartilage
(:func:`cartilage_layer`) become one CT whose settings are drawn per image
(:func:`draw_settings`) from :class:`SynthRanges`, in five families that an ablation can switch
off one at a time (:data:`FAMILIES`):

* ``tissue_hu``: every tissue's HU and its within-tissue variation; the contrast phase (no
  contrast, arterial, venous) with vessels from 40 to 2000 HU, the great veins densest at the
  thoracic inlet (contrast injected in an arm arrives there undiluted); airway wall, calcified
  cartilage; lungs and airway lumen keep plausible air values;
* ``kernel``: the point spread (FWHM) and the edge enhancement of sharp reconstruction kernels;
* ``noise``: noise level and its correlation length;
* ``slices``: slice thickness 0.5-5 mm (slice profile along the head-foot axis, slices sampled
  at their increment, then brought back to the grid as a thick-slice CT resampled to thin
  voxels looks);
* ``body``: body size (the chest scale), fat thickness, arms down, the table, air in the
  oesophagus, and the reconstruction's field of view cutting the body.

A family switched off takes the value of the run profiles' phantoms (:func:`fixed_settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage

from deeptree.io import InputError
from deeptree.phantom.ct import FWHM_TO_SIGMA, Layers, gaussian_field, parenchyma_hu
from deeptree.phantom.growth import AirwayTreeSpec
from deeptree.phantom.raster import Grid, capsule_box, coverage_u8, paint_max
from deeptree.phantom.thorax import DEFAULT_HU, LABEL, TISSUES, ChestExtras, ThoraxGeometry
from deeptree.phantom_config import CTParams

#: The randomisation families, each switchable on its own (see the module docstring).
FAMILIES = ("tissue_hu", "kernel", "noise", "slices", "body")

#: Blood-filled tissues, whose HU the contrast phase sets.
BLOOD = ("heart", "aorta", "pulmonary_artery", "vein")

#: Labels of the drawn layers, appended to :data:`~deeptree.phantom.thorax.TISSUES` in
#: :func:`label_map` (a voxel takes a layer's label where the layer covers half of it).
LAYER_TISSUES = ("lung_vessel", "airway_wall", "cartilage", "airway_lumen")

#: Heights (mm, scale-1 thorax frame) between which the great veins' contrast rises from its
#: value in the superior vena cava to its value at the thoracic inlet.
_VEIN_Z = (118.0, 240.0)


def _default_tissue_ranges() -> dict[str, tuple[float, float]]:
    """HU ranges of the tissues that are neither air, lung nor blood (beyond realism on
    purpose: the network must not rely on any one value)."""
    return {
        "subcutaneous_fat": (-200.0, -20.0),
        "muscle": (-10.0, 120.0),
        "mediastinal_fat": (-200.0, -20.0),
        "oesophagus": (-10.0, 120.0),
        "liver": (20.0, 200.0),
        "spleen_stomach": (10.0, 200.0),
        "cortical_bone": (300.0, 1800.0),
        "trabecular_bone": (100.0, 500.0),
        "disc": (30.0, 150.0),
        "spinal_canal": (-10.0, 60.0),
        "sternum": (200.0, 1200.0),
        "rib": (200.0, 1500.0),
        "thyroid": (40.0, 250.0),
        "clavicle": (200.0, 1500.0),
        "humerus": (200.0, 1500.0),
        "table": (-700.0, 200.0),
    }


@dataclass(frozen=True)
class SynthRanges:
    """Ranges (low, high) from which :func:`draw_settings` draws uniformly, per image.

    Attributes
    ----------
    tissue_hu : dict of str -> (float, float)
        HU of each tissue that is neither air, lung nor blood (names of
        :data:`~deeptree.phantom.thorax.TISSUES`).
    tissue_sd_hu : (float, float)
        Within-tissue variation (standard deviation, HU, of a smooth field), drawn per tissue.
    outside_hu, lumen_hu, oesophagus_air_hu : (float, float)
        Air outside the body, in the airway lumen, in the oesophagus.
    parenchyma_hu, gravity_hu, texture_hu, texture_mm : (float, float)
        Lung parenchyma at mid-depth, its posterior-anterior gradient, texture SD and
        correlation (as :class:`~deeptree.phantom_config.CTParams`).
    wall_hu, cartilage_hu : (float, float)
        Airway wall; tracheal and main-bronchus cartilage (up to calcified).
    phases : tuple of (str, float)
        Contrast phases and their probabilities: ``none`` (all blood at ``blood_hu``),
        ``arterial`` (aorta, heart and pulmonary arteries at ``arterial_hu``, veins from
        ``venous_hu`` to ``inlet_hu`` at the thoracic inlet), ``venous`` (all blood at
        ``venous_hu``).
    blood_hu, arterial_hu, venous_hu, inlet_hu : (float, float)
    psf_fwhm_mm : (float, float)
        Point spread, FWHM (mm).
    sharpen : (float, float)
        Edge enhancement of sharp kernels (unsharp-mask gain, 0 = none).
    noise_hu, noise_corr_mm : (float, float)
        Noise SD (HU) and correlation (Gaussian sigma, mm).
    slice_mm : (float, float)
        Slice thickness (mm); slices thinner than the grid's voxel leave the image as is.
    scale : (float, float)
        Chest size relative to the adult thorax.
    fat_mm : (float, float)
        Subcutaneous fat thickness (mm at scale 1).
    fov_radius_mm : (float, float)
        Radius (mm at scale 1) of the reconstructed field of view around the body's axis
        (the body's half-width is 162 mm: below it the sides are cut).
    p_arms, p_table, p_oesophagus_air, p_fov_cut : float
        Probabilities of arms down, a table, air in the oesophagus, a field of view cut.
    """

    tissue_hu: dict = field(default_factory=_default_tissue_ranges)
    tissue_sd_hu: tuple[float, float] = (0.0, 25.0)
    outside_hu: tuple[float, float] = (-1024.0, -980.0)
    lumen_hu: tuple[float, float] = (-1024.0, -950.0)
    oesophagus_air_hu: tuple[float, float] = (-1024.0, -900.0)
    parenchyma_hu: tuple[float, float] = (-950.0, -760.0)
    gravity_hu: tuple[float, float] = (0.0, 60.0)
    texture_hu: tuple[float, float] = (8.0, 50.0)
    texture_mm: tuple[float, float] = (0.8, 2.5)
    wall_hu: tuple[float, float] = (-30.0, 120.0)
    cartilage_hu: tuple[float, float] = (40.0, 500.0)
    phases: tuple = (("none", 0.35), ("arterial", 0.35), ("venous", 0.30))
    blood_hu: tuple[float, float] = (25.0, 60.0)
    arterial_hu: tuple[float, float] = (150.0, 600.0)
    venous_hu: tuple[float, float] = (90.0, 250.0)
    inlet_hu: tuple[float, float] = (300.0, 2000.0)
    psf_fwhm_mm: tuple[float, float] = (0.5, 2.5)
    sharpen: tuple[float, float] = (0.0, 1.2)
    noise_hu: tuple[float, float] = (5.0, 90.0)
    noise_corr_mm: tuple[float, float] = (0.0, 1.0)
    slice_mm: tuple[float, float] = (0.5, 5.0)
    scale: tuple[float, float] = (0.85, 1.15)
    fat_mm: tuple[float, float] = (3.0, 35.0)
    fov_radius_mm: tuple[float, float] = (130.0, 200.0)
    p_arms: float = 0.3
    p_table: float = 0.7
    p_oesophagus_air: float = 0.5
    p_fov_cut: float = 0.3


#: The ranges the demo weights are trained with.
DEFAULT_RANGES = SynthRanges()


@dataclass(frozen=True)
class SynthSettings:
    """The settings of one synthesised image (JSON-able with :func:`dataclasses.asdict`).

    Attributes
    ----------
    tissue_hu : dict of str -> float
        HU of every tissue of :data:`~deeptree.phantom.thorax.TISSUES` except the lung
        (blood tissues: their value at the heart; the veins rise to ``inlet_hu``).
    tissue_sd_hu : dict of str -> float
        Within-tissue variation of each tissue (HU).
    inlet_hu : float
        The great veins at the thoracic inlet (HU).
    phase : str
    lumen_hu, wall_hu, cartilage_hu, lung_vessel_hu : float
    parenchyma_hu, gravity_hu, texture_hu, texture_mm : float
    psf_fwhm_mm, sharpen, noise_hu, noise_corr_mm : float
    slice_mm : float
        0: no thick slices.
    slice_increment_mm : float
    scale, fat_mm : float
    arms, table : bool
    oesophagus_air : (float, float, float) or None
        As :attr:`ChestExtras.oesophagus_air`.
    fov_radius_mm : float or None
        Scale-1 mm; None: no cut.
    families : tuple of str
        The randomised families (the others are fixed).
    """

    tissue_hu: dict
    tissue_sd_hu: dict
    inlet_hu: float
    phase: str
    lumen_hu: float
    wall_hu: float
    cartilage_hu: float
    lung_vessel_hu: float
    parenchyma_hu: float
    gravity_hu: float
    texture_hu: float
    texture_mm: float
    psf_fwhm_mm: float
    sharpen: float
    noise_hu: float
    noise_corr_mm: float
    slice_mm: float
    slice_increment_mm: float
    scale: float
    fat_mm: float
    arms: bool
    table: bool
    oesophagus_air: tuple[float, float, float] | None
    fov_radius_mm: float | None
    families: tuple[str, ...]

    def extras(self) -> ChestExtras:
        """The :class:`ChestExtras` of the label map these settings draw."""
        return ChestExtras(
            fat_mm=self.fat_mm, arms=self.arms, table=self.table, oesophagus_air=self.oesophagus_air
        )

    def ct_params(self) -> CTParams:
        """The parenchyma settings as :class:`~deeptree.phantom_config.CTParams`."""
        return CTParams(
            parenchyma_hu=self.parenchyma_hu,
            gravity_hu=self.gravity_hu,
            texture_hu=self.texture_hu,
            texture_mm=self.texture_mm,
        )

    def as_dict(self) -> dict:
        """JSON-able record of the settings."""
        return asdict(self)


def fixed_settings(scale: float = 1.0) -> SynthSettings:
    """The settings of the run profiles' phantoms: what a family switched off takes.

    HU of :data:`~deeptree.phantom.thorax.DEFAULT_HU` (blood without contrast), the image
    settings of :class:`~deeptree.phantom_config.CTParams`, no thick slices, the body of the
    run profiles' thorax at ``scale`` (with the table, no arms, no air in the oesophagus, no
    field-of-view cut).
    """
    p = CTParams()
    return SynthSettings(
        tissue_hu={n: DEFAULT_HU[n] for n in TISSUES if n != "lung"},
        tissue_sd_hu={n: 0.0 for n in TISSUES if n != "lung"},
        inlet_hu=DEFAULT_HU["vein"],
        phase="none",
        lumen_hu=p.lumen_hu,
        wall_hu=p.wall_hu,
        cartilage_hu=p.wall_hu,
        lung_vessel_hu=p.vessel_hu,
        parenchyma_hu=p.parenchyma_hu,
        gravity_hu=p.gravity_hu,
        texture_hu=p.texture_hu,
        texture_mm=p.texture_mm,
        psf_fwhm_mm=p.psf_fwhm_mm,
        sharpen=0.0,
        noise_hu=p.noise_hu,
        noise_corr_mm=p.noise_corr_mm,
        slice_mm=0.0,
        slice_increment_mm=0.0,
        scale=float(scale),
        fat_mm=ChestExtras().fat_mm,
        arms=False,
        table=True,
        oesophagus_air=None,
        fov_radius_mm=None,
        families=(),
    )


def draw_settings(
    rng: np.random.Generator,
    ranges: SynthRanges = SynthRanges(),
    families=FAMILIES,
    *,
    scale: float = 1.0,
) -> SynthSettings:
    """Draw one image's settings.

    Every draw is made whether or not its family is randomised (so that switching a family
    off changes nothing else of the image); the families not in ``families`` then take
    :func:`fixed_settings`.

    Parameters
    ----------
    rng : numpy.random.Generator
    ranges : SynthRanges
    families : iterable of str
        Subset of :data:`FAMILIES`.
    scale : float
        The chest scale when the ``body`` family is fixed.

    Returns
    -------
    SynthSettings

    Raises
    ------
    InputError
        An unknown family, a range whose low end is above its high end, or a tissue range
        for a tissue that is not in the label map.
    """
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise InputError(f"synthesis families: unknown {unknown}; choose from {list(FAMILIES)}")
    unknown = [n for n in ranges.tissue_hu if n not in TISSUES or n in ("lung", *BLOOD)]
    if unknown:
        raise InputError(f"SynthRanges.tissue_hu: not a drawable tissue: {unknown}")
    for name, value in asdict(ranges).items():
        pairs = value.items() if name == "tissue_hu" else [(name, value)]
        for label, pair in pairs:
            if isinstance(pair, tuple) and len(pair) == 2 and not isinstance(pair[0], tuple):
                if not pair[0] <= pair[1]:
                    raise InputError(f"SynthRanges.{label}: low {pair[0]} is above high {pair[1]}")

    def u(pair) -> float:
        return float(rng.uniform(*pair))

    fixed = fixed_settings(scale)
    # tissue_hu family
    tissue_hu = {n: DEFAULT_HU[n] for n in TISSUES if n != "lung"}
    for name, pair in ranges.tissue_hu.items():
        tissue_hu[name] = u(pair)
    tissue_hu["outside_air"] = u(ranges.outside_hu)
    tissue_hu["oesophagus_air"] = u(ranges.oesophagus_air_hu)
    sd = {n: u(ranges.tissue_sd_hu) for n in TISSUES if n != "lung"}
    sd["outside_air"] = sd["oesophagus_air"] = 0.0
    names, probs = zip(*ranges.phases, strict=True)
    phase = str(rng.choice(names, p=np.asarray(probs) / np.sum(probs)))
    blood, arterial, venous, inlet = (
        u(ranges.blood_hu),
        u(ranges.arterial_hu),
        u(ranges.venous_hu),
        u(ranges.inlet_hu),
    )
    if phase == "none":
        heart = artery = vein = inlet = blood
    elif phase == "arterial":
        heart, artery, vein = arterial, arterial, venous
    else:
        heart = artery = vein = inlet = venous
    tissue_hu.update(heart=heart, aorta=artery, pulmonary_artery=artery, vein=vein)
    hu_draws = dict(
        tissue_hu=tissue_hu,
        tissue_sd_hu=sd,
        inlet_hu=inlet,
        phase=phase,
        lumen_hu=u(ranges.lumen_hu),
        wall_hu=u(ranges.wall_hu),
        cartilage_hu=u(ranges.cartilage_hu),
        lung_vessel_hu=artery * u((0.6, 1.0)),
        parenchyma_hu=u(ranges.parenchyma_hu),
        gravity_hu=u(ranges.gravity_hu),
        texture_hu=u(ranges.texture_hu),
        texture_mm=u(ranges.texture_mm),
    )
    kernel = dict(psf_fwhm_mm=u(ranges.psf_fwhm_mm), sharpen=u(ranges.sharpen))
    noise = dict(noise_hu=u(ranges.noise_hu), noise_corr_mm=u(ranges.noise_corr_mm))
    thickness = u(ranges.slice_mm)
    slices = dict(slice_mm=thickness, slice_increment_mm=thickness * u((0.5, 1.0)))
    air = (u((20.0, 120.0)), u((140.0, 250.0)), u((1.5, 6.0)))
    fov = u(ranges.fov_radius_mm)
    body = dict(
        scale=u(ranges.scale),
        fat_mm=u(ranges.fat_mm),
        arms=bool(rng.random() < ranges.p_arms),
        table=bool(rng.random() < ranges.p_table),
        oesophagus_air=air if rng.random() < ranges.p_oesophagus_air else None,
        fov_radius_mm=fov if rng.random() < ranges.p_fov_cut else None,
    )
    drawn = {
        "tissue_hu": hu_draws,
        "kernel": kernel,
        "noise": noise,
        "slices": slices,
        "body": body,
    }
    values = {}
    for family in FAMILIES:
        if family in families:
            values.update(drawn[family])
    return replace(fixed, **values, families=families)


def cartilage_layer(
    grid: Grid,
    spec: AirwayTreeSpec,
    *,
    pitch_mm: float,
    ring_mm: float,
    max_generation: int = 1,
    posterior_deg: float = 60.0,
) -> np.ndarray:
    """The cartilage rings in the wall of the trachea and main bronchi, with partial volume.

    C-shaped rings: ``ring_mm`` of every ``pitch_mm`` along each branch of generation up to
    ``max_generation``, open at the back (the membranous wall, within ``posterior_deg`` of the
    posterior direction), as thick as the branch's wall.

    Parameters
    ----------
    grid : Grid
    spec : AirwayTreeSpec
        Branch end points (world mm, RAS: posterior is -y), lumen radius, wall thickness.
    pitch_mm, ring_mm : float
        Ring spacing and width along the branch (mm); ``0 < ring_mm <= pitch_mm``.
    max_generation : int
    posterior_deg : float
        Half-angle (degrees) of the open back of each ring.

    Returns
    -------
    ndarray of uint8, shape ``grid.shape``
        Fraction of each voxel that is cartilage (255 = all).
    """
    if not 0.0 < ring_mm <= pitch_mm:
        raise InputError(
            f"cartilage rings: need 0 < ring_mm <= pitch_mm, got {ring_mm}, {pitch_mm}"
        )
    out = np.zeros(grid.shape, dtype=np.uint8)
    h = grid.voxel_mm
    cos_open = np.float32(np.cos(np.deg2rad(posterior_deg)))
    for b in spec.branches:
        if b.generation > max_generation:
            continue
        a, e = np.asarray(b.start_mm, float), np.asarray(b.end_mm, float)
        box = capsule_box(grid, a, e, b.radius_mm + b.wall_mm + h)
        if box is None:
            continue
        sl, dist = box
        wall = coverage_u8(dist, b.radius_mm + b.wall_mm, h).astype(np.int16) - coverage_u8(
            dist, b.radius_mm, h
        )
        u = (e - a) / max(np.linalg.norm(e - a), 1e-9)
        x, y, z = (
            (
                np.asarray(grid.origin[i])
                + grid.spacing[i] * np.arange(sl[i].start, sl[i].stop)
                - a[i]
            )
            .astype(np.float32)
            .reshape([-1 if j == i else 1 for j in range(3)])
            for i in range(3)
        )
        t = x * u[0] + y * u[1] + z * u[2]
        ring = np.mod(t, pitch_mm) < ring_mm
        # radial direction against the posterior direction, perpendicular to the branch
        post = np.array([0.0, -1.0, 0.0]) - u * (-u[1])
        post = post / max(np.linalg.norm(post), 1e-9)
        rx, ry, rz = x - t * u[0], y - t * u[1], z - t * u[2]
        radial = np.sqrt(rx**2 + ry**2 + rz**2) + np.float32(1e-6)
        back = (rx * post[0] + ry * post[1] + rz * post[2]) / radial > cos_open
        values = np.where(ring & ~back, np.clip(wall, 0, 255), 0).astype(np.uint8)
        paint_max(out, sl, values)
    return out


def label_map(labels: np.ndarray, layers: Layers, cartilage: np.ndarray) -> np.ndarray:
    """One label per voxel: the chest's tissues with the drawn layers on top.

    Parameters
    ----------
    labels : ndarray of uint8, shape (I, J, K)
        From :meth:`ThoraxGeometry.tissue_labels`.
    layers : Layers
    cartilage : ndarray of uint8, shape (I, J, K)

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        Index into ``TISSUES + LAYER_TISSUES``; a layer wins where it covers half a voxel, in
        the order lung vessel, airway wall, cartilage, lumen.
    """
    out = labels.copy()
    base = len(TISSUES)
    for i, frac in enumerate((layers.vessel, layers.outer, cartilage, layers.lumen)):
        out[frac >= 128] = base + i
    return out


def _tissue_image(
    labels: np.ndarray, grid: Grid, geom: ThoraxGeometry, settings: SynthSettings, rng
) -> np.ndarray:
    """Each tissue at its HU with its smooth within-tissue variation (float32; NaN in lungs)."""
    table = np.array(
        [np.nan if n == "lung" else settings.tissue_hu[n] for n in TISSUES], dtype=np.float32
    )
    hu = table[labels]
    sd = np.array([0.0 if n == "lung" else settings.tissue_sd_hu[n] for n in TISSUES], np.float32)
    if sd.any():
        sp = np.asarray(grid.spacing)
        coarse = tuple(int(np.ceil(n / 4)) + 1 for n in grid.shape)
        field_ = gaussian_field(coarse, 8.0 / (4 * sp), rng)
        zoom = [n / c for n, c in zip(grid.shape, coarse, strict=True)]
        smooth = ndimage.zoom(field_, zoom, order=1, grid_mode=True, mode="nearest")
        smooth = smooth[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
        hu += smooth * sd[labels]
    if settings.inlet_hu != settings.tissue_hu["vein"]:
        # the veins' contrast rises towards the thoracic inlet
        _, _, z = grid.axes()
        z0, z1 = (geom.point([0.0, 0.0, v])[2] for v in _VEIN_Z)
        rise = np.clip((z - z0) / (z1 - z0), 0.0, 1.0).astype(np.float32)
        vein = labels == LABEL["vein"]
        hu[vein] += (np.broadcast_to(rise, labels.shape)[vein]) * np.float32(
            settings.inlet_hu - settings.tissue_hu["vein"]
        )
    return hu


def _resample_axis(a: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` at fractional ``positions`` (clamped)."""
    n = a.shape[axis]
    p = np.clip(positions, 0.0, n - 1.0)
    lo = np.floor(p).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (p - lo).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(p)
    w = w.reshape(shape)
    return np.take(a, lo, axis=axis) * (1 - w) + np.take(a, hi, axis=axis) * w


def synthesize_ct(
    labels: np.ndarray,
    lung_side: np.ndarray,
    layers: Layers,
    cartilage: np.ndarray,
    grid: Grid,
    geom: ThoraxGeometry,
    settings: SynthSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """The CT of a label map with one image's settings.

    Parameters
    ----------
    labels : ndarray of uint8, shape (I, J, K)
        :meth:`ThoraxGeometry.tissue_labels` on ``grid``.
    lung_side : ndarray of int8, shape (I, J, K)
        +1 / -1 in the right / left lung.
    layers : Layers
        Airway lumen, wall, plugs and lung vessels with partial volume.
    cartilage : ndarray of uint8, shape (I, J, K)
        :func:`cartilage_layer`.
    grid : Grid
    geom : ThoraxGeometry
        The thorax the label map was drawn from (for the heights of the thoracic inlet and the
        body's axis).
    settings : SynthSettings
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int16, shape (I, J, K)
        HU clipped to [-1024, 3071]. Inputs are not modified.
    """
    hu = _tissue_image(labels, grid, geom, settings, rng)
    lung = lung_side != 0
    paren = parenchyma_hu(grid, lung, rng, settings.ct_params())
    np.copyto(hu, paren, where=lung)
    del paren
    np.copyto(hu, np.float32(DEFAULT_HU["muscle"]), where=np.isnan(hu))
    scale = np.float32(1.0 / 255.0)
    for frac_u8, value in (
        (layers.vessel, settings.lung_vessel_hu),
        (layers.outer, settings.wall_hu),
        (cartilage, settings.cartilage_hu),
    ):
        frac = frac_u8.astype(np.float32) * scale
        hu += (np.float32(value) - hu) * frac
    lumen_value = np.float32(settings.lumen_hu) + layers.plug.astype(np.float32) * np.float32(
        1000.0 / 255.0
    )
    frac = layers.lumen.astype(np.float32) * scale
    hu += (lumen_value - hu) * frac
    del lumen_value, frac
    sp = np.asarray(grid.spacing, dtype=float)
    # point spread in every axis; a thick slice's profile adds along the head-foot axis
    sigma_mm = np.full(3, settings.psf_fwhm_mm * FWHM_TO_SIGMA)
    thick = settings.slice_mm > sp[2]
    if thick:
        sigma_mm[2] = np.hypot(sigma_mm[2], settings.slice_mm * FWHM_TO_SIGMA)
    hu = ndimage.gaussian_filter(hu, sigma_mm / sp, mode="nearest")
    if settings.sharpen > 0:
        # edge enhancement of sharp kernels acts in the axial plane
        s = max(settings.psf_fwhm_mm, 1.0) * FWHM_TO_SIGMA / sp
        detail = hu - ndimage.gaussian_filter(hu, (s[0], s[1], 0.0), mode="nearest")
        hu += np.float32(settings.sharpen) * detail
        del detail
    noise_sigma = settings.noise_corr_mm / sp
    if thick:
        # the scanner's slices: sampled at their increment, noisy there, then brought back
        step = max(settings.slice_increment_mm, sp[2]) / sp[2]
        positions = np.arange(0.0, grid.shape[2] - 1 + 1e-6, step)
        slices = _resample_axis(hu, positions, axis=2)
        noise = gaussian_field(slices.shape, (noise_sigma[0], noise_sigma[1], 0.0), rng)
        slices += noise * np.float32(settings.noise_hu)
        hu = _resample_axis(slices, np.arange(grid.shape[2]) / step, axis=2)
    else:
        hu += gaussian_field(grid.shape, noise_sigma, rng) * np.float32(settings.noise_hu)
    if settings.fov_radius_mm is not None:
        x, y, _ = grid.axes()
        centre = geom.point([0.0, -15.0, 0.0])  # the body's axis (thorax._BODY)
        r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
        outside = np.broadcast_to(r2 > (settings.fov_radius_mm * geom.scale) ** 2, hu.shape)
        hu[outside] = -1024.0
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    return hu.astype(np.int16)
