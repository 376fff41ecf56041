"""Chest CT simulated around an airway tree: tissues in Hounsfield units, partial volume,
point spread and noise.

Model (values in HU, from standard CT references, e.g. Hounsfield unit tables in
Prokop and Galanski, "Spiral and Multislice Computed Tomography of the Body", 2003):

* airway lumen -1000 (air); a few short peripheral stretches carry a mucus plug (-450 to
  -150 HU) that breaks a threshold segmentation while the ground truth keeps them;
* airway wall 40 (soft tissue), thickness from :func:`~deeptree.phantom.growth.wall_thickness_mm`;
* lung parenchyma -890 at mid-depth (healthy lungs at full inspiration lie around -850 to
  -900; the real sample cip_ct64 has a median of about -920) with a gravity gradient (dependent, posterior lung
  denser by about 25 HU), spatially correlated texture (Gaussian random field), and
  pulmonary vessels at blood density (40) beside the bronchi (bronchovascular bundles)
  that continue past the last airway;
* mediastinum, heart, aorta, spine, ribs, sternum, body wall, outside air: see
  :mod:`deeptree.phantom.thorax`;
* partial volume by analytic edges (:mod:`deeptree.phantom.raster`), then a Gaussian point
  spread function of given FWHM and Gaussian noise of given standard deviation, slightly
  correlated, as filtered back-projection produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from deeptree.phantom.growth import AirwayTreeSpec
from deeptree.phantom.raster import Grid, capsule_box, centreline_voxels, coverage_u8, paint_max
from deeptree.phantom.thorax import DEFAULT_HU, TISSUES, ThoraxGeometry, hilum_vessels
from deeptree.phantom_config import CTParams

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass
class Layers:
    """Partial-volume layers drawn on a grid (uint8, 255 = voxel fully covered).

    Attributes
    ----------
    lumen, outer, vessel, plug : ndarray of uint8, shape (I, J, K)
        Airway lumen, airway lumen + wall, vessels, mucus plug strength inside the lumen.
    airway : ndarray of bool
        Ground-truth lumen: voxel centre inside the lumen, or on the centreline chain of
        a branch (so thin branches stay 6-connected).
    """

    lumen: np.ndarray
    outer: np.ndarray
    vessel: np.ndarray
    plug: np.ndarray
    airway: np.ndarray

    @classmethod
    def empty(cls, shape) -> Layers:
        z = [np.zeros(shape, dtype=np.uint8) for _ in range(4)]
        return cls(*z, airway=np.zeros(shape, dtype=bool))


# --------------------------------------------------------------------------------------------
# vessels beside the bronchi
# --------------------------------------------------------------------------------------------
def vessel_segments(
    spec: AirwayTreeSpec,
    geom: ThoraxGeometry,
    rng: np.random.Generator,
    *,
    min_radius_mm: float,
    extra_generations: int = 2,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Pulmonary arteries as capsules beside the bronchi, with peripheral continuations.

    Every bronchus from generation 2 on has an artery of about its outer diameter running
    parallel to it on the side away from its sibling (the bronchovascular bundle); arteries
    of parent and daughter are joined by a short connector; beyond each last bronchus the
    artery branches ``extra_generations`` more times (vessels are visible further out than
    airways on CT).

    Returns
    -------
    list of (start (3,), end (3,), radius float), world mm
    """
    arr = spec.arrays()
    start, end, radius, wall, parent = (
        arr["start"],
        arr["end"],
        arr["radius"],
        arr["wall"],
        arr["parent"],
    )
    gen = arr["generation"]
    n = len(start)
    children = [[] for _ in range(n)]
    for i in range(n):
        if parent[i] >= 0:
            children[parent[i]].append(i)
    segs = list(hilum_vessels(geom))
    hilum_end = {"R": segs[1][1], "L": segs[2][1]}
    a_start, a_end = {}, {}
    for i in range(n):
        if gen[i] < 2:
            continue
        u = end[i] - start[i]
        u = u / np.linalg.norm(u)
        sibling = [c for c in children[parent[i]] if c != i]
        hint = -(end[sibling[0]] - start[i]) if sibling else np.array([0.0, 0.0, 1.0])
        o = hint - (hint @ u) * u
        if np.linalg.norm(o) < 1e-6:
            o = np.cross(u, [1.0, 0.0, 0.0])
        o = o / np.linalg.norm(o)
        rv = 0.9 * (radius[i] + wall[i])
        offset = radius[i] + wall[i] + rv + 0.3 * geom.scale
        a_start[i], a_end[i] = start[i] + offset * o, end[i] + offset * o
        segs.append((a_start[i], a_end[i], rv))
        # connector from the parent artery (or the hilum) to this one
        origin = a_end.get(parent[i], hilum_end.get(spec.branches[i].side))
        if origin is not None:
            segs.append((origin, a_start[i], rv))
        if not children[i]:
            _continue_vessel(segs, a_end[i], u, rv, geom, rng, min_radius_mm, extra_generations)
    return segs


def _continue_vessel(segs, point, direction, radius, geom, rng, min_radius_mm, generations):
    """Two daughters per step, about 30 degrees off the parent's direction, clipped to the lung."""
    if generations <= 0:
        return
    r = radius * 0.5 ** (1.0 / 2.8)
    if r < min_radius_mm:
        return
    perp = np.cross(direction, rng.normal(size=3))
    perp /= np.linalg.norm(perp)
    for sign in (1.0, -1.0):
        angle = np.deg2rad(rng.uniform(25.0, 40.0))
        d = np.cos(angle) * direction + sign * np.sin(angle) * perp
        length = 6.0 * r * rng.uniform(0.8, 1.2)
        s = np.linspace(0.0, length, 6)[1:]
        q = point + s[:, None] * d
        inside = geom.lung_side(q[:, 0], q[:, 1], q[:, 2]) != 0
        n_ok = int(np.argmin(inside)) if not inside.all() else len(s)
        if n_ok == 0:
            continue
        tip = point + s[n_ok - 1] * d
        segs.append((point, tip, r))
        _continue_vessel(segs, tip, d, r, geom, rng, min_radius_mm, generations - 1)


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------
def draw_tree(grid: Grid, spec: AirwayTreeSpec, vessels, layers: Layers) -> None:
    """Draw the branches, plugs and vessels of a phantom into ``layers`` (in place).

    Parameters
    ----------
    grid : Grid
    spec : AirwayTreeSpec
        Branch end points (world mm), lumen radius and wall thickness.
    vessels : list of (start, end, radius)
        From :func:`vessel_segments`.
    layers : Layers
        Arrays on ``grid``, modified in place.
    """
    h = grid.voxel_mm
    for b in spec.branches:
        box = capsule_box(grid, b.start_mm, b.end_mm, b.radius_mm + b.wall_mm + h)
        if box is None:
            continue
        sl, dist = box
        paint_max(layers.lumen, sl, coverage_u8(dist, b.radius_mm, h))
        paint_max(layers.outer, sl, coverage_u8(dist, b.radius_mm + b.wall_mm, h))
        layers.airway[sl] |= dist < b.radius_mm
        idx = centreline_voxels(grid, b.start_mm, b.end_mm)
        layers.airway[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    for plug in spec.plugs:
        b = spec.branches[plug["branch"]]
        a, e = np.asarray(b.start_mm), np.asarray(b.end_mm)
        p0, p1 = a + plug["t0"] * (e - a), a + plug["t1"] * (e - a)
        box = capsule_box(grid, p0, p1, b.radius_mm + h)
        if box is not None:
            strength = (plug["hu"] + 1000.0) / 1000.0
            paint_max(layers.plug, box[0], coverage_u8(box[1], b.radius_mm, h, strength))
    for a, e, r in vessels:
        box = capsule_box(grid, a, e, r + h)
        if box is not None:
            paint_max(layers.vessel, box[0], coverage_u8(box[1], r, h))


def choose_plugs(
    spec: AirwayTreeSpec, n: int, rng: np.random.Generator, min_generation: int = 4
) -> tuple[dict, ...]:
    """Pick ``n`` peripheral branches (generation >= ``min_generation`` with daughters, so a
    break disconnects a subtree) and a short stretch of each to fill with mucus.

    Returns
    -------
    tuple of dict
        ``{"branch": id, "t0": float, "t1": float, "hu": float}``.
    """
    arr = spec.arrays()
    has_child = np.zeros(len(spec.branches), bool)
    has_child[arr["parent"][arr["parent"] >= 0]] = True
    candidates = np.flatnonzero((arr["generation"] >= min_generation) & has_child)
    if candidates.size == 0:
        candidates = np.flatnonzero(arr["generation"] >= 2)
    chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
    plugs = []
    for bid in sorted(int(c) for c in chosen):
        t0 = float(rng.uniform(0.2, 0.45))
        plugs.append(
            {
                "branch": bid,
                "t0": t0,
                "t1": t0 + float(rng.uniform(0.25, 0.4)),
                "hu": float(rng.uniform(-450.0, -150.0)),
            }
        )
    return tuple(plugs)


# --------------------------------------------------------------------------------------------
# composing the image
# --------------------------------------------------------------------------------------------
def gaussian_field(shape, sigma_vox, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field (float32) with Gaussian correlation
    of ``sigma_vox`` voxels per axis (white noise for sigma 0)."""
    field = rng.standard_normal(shape, dtype=np.float32)
    sigma = np.broadcast_to(np.asarray(sigma_vox, dtype=float), (3,))
    if np.any(sigma > 0):
        ndimage.gaussian_filter(field, sigma, mode="wrap", output=field)
        # the variance of filtered white noise is the sum of the squared kernel weights
        n = 2 * int(np.ceil(4 * sigma.max())) + 1
        delta = np.zeros((n, n, n))
        delta[n // 2, n // 2, n // 2] = 1.0
        gain = float(np.sqrt((ndimage.gaussian_filter(delta, sigma, mode="constant") ** 2).sum()))
        field *= np.float32(1.0 / gain)
    return field


def _upsample2(a: np.ndarray, shape) -> np.ndarray:
    """Linear interpolation to twice the resolution along each axis, cropped to ``shape``."""
    for axis, n in enumerate(shape):
        a = np.moveaxis(a, axis, 0)
        out = np.empty((2 * a.shape[0] - 1, *a.shape[1:]), dtype=a.dtype)
        out[0::2] = a
        np.add(a[:-1], a[1:], out=out[1::2])
        out[1::2] *= np.float32(0.5)
        a = np.moveaxis(out[:n], 0, axis)
    return np.ascontiguousarray(a)


def parenchyma_hu(
    grid: Grid, lung: np.ndarray, rng: np.random.Generator, params: CTParams
) -> np.ndarray:
    """Lung parenchyma HU on the whole grid (float32; meaningful where ``lung``).

    Base value + gravity gradient along y (posterior = dependent in a supine scan) +
    correlated texture.
    """
    sp = np.asarray(grid.spacing)
    # the texture is smooth: draw it on a grid twice as coarse and interpolate (8x fewer
    # random numbers and a cheaper filter)
    coarse_shape = tuple(int(np.ceil(n / 2)) + 1 for n in grid.shape)
    texture = gaussian_field(coarse_shape, params.texture_mm / (2 * sp), rng)
    texture = _upsample2(texture, grid.shape)
    _, y, _ = grid.axes()
    ys = np.flatnonzero(lung.any(axis=(0, 2)))
    y_lo, y_hi = (y.ravel()[ys[0]], y.ravel()[ys[-1]]) if ys.size else (-1.0, 1.0)
    depth = (2.0 * (y - y_lo) / max(y_hi - y_lo, 1e-6) - 1.0).astype(np.float32)  # -1 posterior
    texture *= params.texture_hu
    texture += params.parenchyma_hu
    texture -= params.gravity_hu * depth
    return texture


def compose_ct(
    background: np.ndarray,
    layers: Layers,
    grid: Grid,
    rng: np.random.Generator,
    params: CTParams,
) -> np.ndarray:
    """Blend the layers into the background, blur and add noise.

    Parameters
    ----------
    background : ndarray of float32, shape (I, J, K)
        Tissue HU without airways and lung vessels (consumed: modified in place).
    layers : Layers
    grid : Grid
    rng : numpy.random.Generator
    params : CTParams

    Returns
    -------
    ndarray of int16, shape (I, J, K)
        HU clipped to [-1024, 3071].
    """
    hu = background
    scale = np.float32(1.0 / 255.0)
    for frac_u8, value in ((layers.vessel, params.vessel_hu), (layers.outer, params.wall_hu)):
        frac = frac_u8.astype(np.float32) * scale
        hu += (np.float32(value) - hu) * frac
    lumen_value = np.float32(params.lumen_hu) + layers.plug.astype(np.float32) * np.float32(
        1000.0 / 255.0
    )
    frac = layers.lumen.astype(np.float32) * scale
    hu += (lumen_value - hu) * frac
    del lumen_value, frac
    sp = np.asarray(grid.spacing)
    hu = ndimage.gaussian_filter(hu, params.psf_fwhm_mm * FWHM_TO_SIGMA / sp, mode="nearest")
    noise = gaussian_field(grid.shape, params.noise_corr_mm / sp, rng)
    hu += noise * np.float32(params.noise_hu)
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    return hu.astype(np.int16)


def tissue_label_map(grid: Grid, geom: ThoraxGeometry) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`ThoraxGeometry.tissue_labels` on a whole grid, a slab of slices at a time.

    Returns
    -------
    labels : ndarray of uint8, shape (I, J, K)
    lung_side : ndarray of int8 (+1 right, -1 left, 0 none)
    """
    x, y, z = grid.axes()
    labels = np.empty(grid.shape, dtype=np.uint8)
    sides = np.empty(grid.shape, dtype=np.int8)
    slab = max(1, int(4e6 // (grid.shape[0] * grid.shape[1])))  # bound the temporaries
    for k0 in range(0, grid.shape[2], slab):
        part, side = geom.tissue_labels(x, y, z[:, :, k0 : k0 + slab])
        labels[:, :, k0 : k0 + slab] = part
        sides[:, :, k0 : k0 + slab] = side
    return labels, sides


def thorax_background(grid: Grid, geom: ThoraxGeometry, rng, params: CTParams, lung_side=None):
    """Tissue HU of the thorax on ``grid`` with parenchyma filled in.

    Returns
    -------
    hu : ndarray of float32, shape (I, J, K)
    lung_side : ndarray of int8 (+1 right, -1 left, 0 none)
    """
    labels, sides = tissue_label_map(grid, geom)
    hu = np.array([DEFAULT_HU[name] for name in TISSUES], dtype=np.float32)[labels]
    del labels
    if lung_side is not None:
        sides = lung_side
    lung = sides != 0
    paren = parenchyma_hu(grid, lung, rng, params)
    np.copyto(hu, paren, where=lung)
    # where the lung was replaced by a given mask, unknown tissue becomes soft tissue
    np.copyto(hu, np.float32(45.0), where=np.isnan(hu))
    return hu, sides
