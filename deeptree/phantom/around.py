"""The phantom's CT simulation around a given airway mask (e.g. a real ATM'22 ground truth).

Real trees have a topology no grower reproduces exactly; simulating the CT around them lets
training and testing also use real anatomy. From the mask alone:

* the lumen edge comes from the signed distance to the mask (smoothed by a fraction of a
  voxel, so the staircase of the binary mask becomes a partial-volume edge);
* the wall thickness follows the local lumen radius: radius on the skeleton (3D thinning,
  scikit-image) from the distance transform, carried to every voxel near the airway by its
  nearest skeleton voxel (the same construction as the tree parsing of the project);
* the procedural thorax is scaled and moved so that its carina sits on the mask's carina and
  its lungs span the tree; every airway below the carina is put inside a lung;
* vessels: two vascular trees grown by volume filling in the fitted lungs (Murray's
  exponent), from the hilar arteries and the veins.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from deeptree.io import InputError, check_binary_mask, check_spacing
from deeptree.phantom.ct import Layers, compose_ct, thorax_background
from deeptree.phantom.growth import grow_vessel_tree, wall_thickness_mm
from deeptree.phantom.raster import Grid, capsule_box, coverage_u8, paint_max
from deeptree.phantom.thorax import ThoraxGeometry
from deeptree.phantom_config import CTParams


def find_carina(mask: np.ndarray, spacing) -> tuple[np.ndarray, float]:
    """Trachea centre and carina height of an airway mask.

    Scans axial slices from the top (highest k) down; the carina is the first slice where
    the airway splits into two 2D components of at least a tenth of the tracheal area.

    Parameters
    ----------
    mask : ndarray of bool, shape (I, J, K)
    spacing : 3 floats, mm

    Returns
    -------
    centre_mm : ndarray (2,)
        (x, y) of the trachea in the top airway slices (mm from voxel 0).
    carina_z_mm : float
    """
    sp = np.asarray(spacing, float)
    ks = np.flatnonzero(mask.any(axis=(0, 1)))
    top = ks[-1]
    top_slices = mask[:, :, max(ks[0], top - 4) : top + 1]
    ii, jj, _ = np.nonzero(top_slices)
    centre = np.array([ii.mean() * sp[0], jj.mean() * sp[1]])
    trachea_area = top_slices.sum() / top_slices.shape[2]
    carina_k = ks[0]
    for k in range(top, ks[0] - 1, -1):
        labels, n = ndimage.label(mask[:, :, k])
        if n >= 2:
            sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
            if sizes[1] >= 0.1 * trachea_area:
                carina_k = k
                break
    return centre, float(carina_k * sp[2])


def fit_thorax(mask: np.ndarray, spacing) -> ThoraxGeometry:
    """A :class:`ThoraxGeometry` whose carina and lungs match an airway mask.

    The scale makes the lungs 1.3 times as wide as the tree (left-right extent of the mask
    below the carina) and deep enough for its lowest branch; the offset puts the phantom's
    carina on the mask's carina.
    """
    sp = np.asarray(spacing, float)
    centre, carina_z = find_carina(mask, sp)
    below = mask[:, :, : max(1, int(carina_z / sp[2]))]
    ii = np.flatnonzero(below.any(axis=(1, 2)))
    width = (ii[-1] - ii[0] + 1) * sp[0] if ii.size else 200.0
    lung_width = 272.0  # both lungs, at scale 1 (thorax._LUNGS)
    ks = np.flatnonzero(mask.any(axis=(0, 1)))
    depth = carina_z - ks[0] * sp[2]  # how far the tree reaches below the carina
    # wide enough for the tree, and deep enough: the carina lies 165 mm above the lowest
    # lung point at scale 1; keep the lowest bronchi 30 mm above it
    scale = float(np.clip(max(1.3 * width / lung_width, depth / (165.0 - 30.0)), 0.4, 1.4))
    target = np.array([centre[0], centre[1], carina_z])
    offset = target - ThoraxGeometry(scale=scale).carina_mm
    return ThoraxGeometry(scale=scale, offset_mm=tuple(float(v) for v in offset))


def local_radius(mask: np.ndarray, spacing, reach_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Lumen radius (mm) carried from the skeleton to every voxel within ``reach_mm``.

    Returns
    -------
    radius : ndarray of float32, shape of ``mask``
        Radius of the nearest skeleton voxel (0 far from the airway).
    d_in : ndarray of float32
        Distance (mm) from each lumen voxel to the nearest background voxel.
    """
    from skimage.morphology import skeletonize

    sp = np.asarray(spacing, float)
    d_in = ndimage.distance_transform_edt(mask, sampling=sp).astype(np.float32)
    radius = np.zeros(mask.shape, dtype=np.float32)
    pad = np.ceil(reach_mm / sp).astype(int) + 1
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(0) - pad, 0)
    hi = np.minimum(nz.max(0) + pad + 1, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    skel = skeletonize(mask[box]).astype(bool)
    if not skel.any():
        skel = mask[box]
    _, idx = ndimage.distance_transform_edt(~skel, sampling=sp, return_indices=True)
    radius[box] = d_in[box][tuple(idx)]
    return radius, d_in


def layers_from_mask(
    mask: np.ndarray, spacing, rng: np.random.Generator, lung_mask=None, *, vessels=True
):
    """Partial-volume layers, fitted thorax and lung sides around an airway mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (I, J, K)
    spacing : 3 floats, mm
    rng : numpy.random.Generator
    lung_mask : ndarray of bool, optional
    vessels : bool

    Returns
    -------
    grid : Grid
        Origin 0: world mm = voxel index * spacing.
    geom : ThoraxGeometry
    layers : deeptree.phantom.ct.Layers
    sides : ndarray of int8 (+1 right, -1 left, 0 none)
    """

    sp = tuple(float(s) for s in spacing)
    grid = Grid(shape=mask.shape, spacing=sp, origin=(0.0, 0.0, 0.0))
    h = grid.voxel_mm
    geom = fit_thorax(mask, sp)
    radius, d_in = local_radius(mask, sp, reach_mm=4.0)
    d_out = ndimage.distance_transform_edt(~mask, sampling=sp).astype(np.float32)
    sd = np.where(mask, np.float32(h / 2) - d_in, d_out - np.float32(h / 2))
    del d_out, d_in
    ndimage.gaussian_filter(sd, 0.6, output=sd)  # soften the staircase into a partial-volume edge
    layers = Layers.empty(mask.shape)
    layers.airway[...] = mask
    layers.lumen[...] = coverage_u8(sd, 0.0, h)
    wall = wall_thickness_mm(2.0 * radius).astype(np.float32)
    wall[radius == 0] = 0.0
    layers.outer[...] = coverage_u8(sd - wall, 0.0, h)
    del sd, wall, radius

    # lungs: the fitted procedural lungs (or the given mask), holding every airway below the carina
    x, y, z = grid.axes()
    if lung_mask is None:
        sides = np.empty(mask.shape, dtype=np.int8)
        slab = max(1, int(4e6 // (mask.shape[0] * mask.shape[1])))
        for k0 in range(0, mask.shape[2], slab):
            sides[:, :, k0 : k0 + slab] = geom.lung_side(x, y, z[:, :, k0 : k0 + slab])
    else:
        sides = np.where(lung_mask, np.where(x > geom.carina_mm[0], 1, -1), 0).astype(np.int8)
    carina_k = int(geom.carina_mm[2] / sp[2])
    low = np.zeros(mask.shape, dtype=bool)
    low[:, :, : max(0, carina_k - int(10.0 / sp[2]))] = mask[
        :, :, : max(0, carina_k - int(10.0 / sp[2]))
    ]
    around = ndimage.binary_dilation(low, iterations=max(1, int(round(4.0 / h)))) & (sides == 0)
    side_of_x = np.where(np.broadcast_to(x, mask.shape) > geom.carina_mm[0], 1, -1).astype(np.int8)
    sides[around] = side_of_x[around]

    if vessels:
        min_d = max(1.5 * h, 1.0)
        segs = []
        for _ in range(2):  # arteries and veins, as two independent trees
            segs += grow_vessel_tree(geom, rng, min_diameter_mm=min_d, n_points=20000)
        for a, e, r in segs:
            box = capsule_box(grid, a, e, r + h)
            if box is not None:
                paint_max(layers.vessel, box[0], coverage_u8(box[1], r, h))
        layers.vessel[sides == 0] = 0  # vessels only inside the lungs
    return grid, geom, layers, sides


def simulate_ct(
    airway_mask: np.ndarray,
    spacing,
    rng: np.random.Generator,
    lung: np.ndarray | None = None,
    *,
    params: CTParams | None = None,
    vessels: bool = True,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Simulate a chest CT around any airway mask (e.g. a real ATM'22 ground truth).

    The lumen and a wall whose thickness follows the local lumen radius (from the
    skeleton and distance transform of the mask) are drawn with partial volume; the thorax
    of :mod:`deeptree.phantom.thorax` is scaled and placed so that its lungs hold the tree
    (unless ``lung`` is given); vessels run beside the bronchi; then point spread and
    noise are applied as for the phantoms.

    Parameters
    ----------
    airway_mask : ndarray, shape (I, J, K), bool or 0/1 integers
        Airway lumen. Axes (i, j, k) with k increasing towards the head (RAS-like).
    spacing : sequence of 3 float
        Voxel size (mm).
    rng : numpy.random.Generator
    lung : ndarray, shape (I, J, K), bool or 0/1, optional
        Lung mask; default: the procedural lungs fitted around the tree.
    params : CTParams, optional
    vessels : bool
        Draw vessels in the lungs.
    affine : ndarray (4, 4), optional
        The mask's voxel-to-world affine. Axes whose direction is negative in RAS (e.g.
        i running to the patient's left in most DICOM-derived files, such as ATM'22) are
        flipped for the simulation and flipped back, so that the heart, liver and lungs
        land on the correct side. Without it the axes are taken as RAS (i right, j anterior,
        k cranial).

    Returns
    -------
    ndarray of int16, shape (I, J, K)
        HU. Inputs are not modified.

    Raises
    ------
    InputError
        Non-binary or empty mask, bad spacing, lung mask of another shape.
    """

    mask = check_binary_mask(airway_mask, "airway_mask")
    spacing = check_spacing(spacing, "spacing")
    params = params or CTParams()
    lung_mask = None
    if lung is not None:
        lung_mask = check_binary_mask(lung, "lung")
        if lung_mask.shape != mask.shape:
            raise InputError(
                f"lung: shape {lung_mask.shape} does not match airway_mask shape {mask.shape}"
            )
    flips = ()
    if affine is not None:
        affine = np.asarray(affine, dtype=float)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise InputError(f"affine: expected a finite 4x4 matrix, got shape {affine.shape}")
        # world direction of each voxel axis: flip the axes that run against RAS
        flips = tuple(a for a in range(3) if affine[:3, a][np.argmax(np.abs(affine[:3, a]))] < 0)
        mask = np.flip(mask, flips)
        lung_mask = np.flip(lung_mask, flips) if lung_mask is not None else None
    grid, geom, layers, sides = layers_from_mask(
        np.ascontiguousarray(mask), spacing, rng, lung_mask, vessels=vessels
    )
    background, _ = thorax_background(grid, geom, rng, params, lung_side=sides)
    ct = compose_ct(background, layers, grid, rng, params)
    return np.ascontiguousarray(np.flip(ct, flips)) if flips else ct
