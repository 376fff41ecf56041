"""The lumen diameter of a parsed branch, without the half-voxel bias of a grid.

``deeptree.tree.parse_tree`` gives every branch the mean equivalent diameter 2 sqrt(A / pi)
of its lumen cross-sections A, measured in the plane perpendicular to its centreline
(:func:`lumen_diameters`). Why an area and not a distance, and the figures on digitised
tubes: ``docs/design.md``, "Diameter".
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def lumen_diameters(branch_labels_c, paths: dict, wall: np.ndarray, spacing) -> np.ndarray:
    """Mean lumen diameter (mm) of each branch from its cross-sections (index 0 unused).

    At every labelled skeleton voxel of a branch, the lumen area A (mm^2) of the plane
    perpendicular to the local centreline direction is counted from the branch's own
    region (its voxels of ``branch_labels_c``); the branch's diameter is the mean of the
    equivalent diameters 2 sqrt(A / pi) over its skeleton voxels at least one lumen
    radius plus the kernel's half-width from either end of its path (junction bulges,
    blind tips and cut ends read wrong there); the median over all its voxels when none
    is that far in.

    Why an area and not a distance: a voxel is lumen when its centre is inside, so the
    number of lumen voxels in a slice equals the lumen's area on average over sub-voxel
    positions at any radius, whereas the distance to the nearest background voxel centre
    is at least one voxel and piles thin branches onto 2 voxels (docs/design.md,
    "Diameter"). The slice is a tent-weighted slab (half-width ``a`` about twice the
    coarsest voxel, a whole number of voxels along the axis closest to the direction, so
    an axis-aligned tube's slices weigh exactly 1), kept within the nearest-background
    distance plus two voxels of the centreline (a guard against a region that bends back).

    Parameters
    ----------
    branch_labels_c : ndarray of int, shape (I, J, K)
        Branch id of every mask voxel (0 outside), in the parse's crop.
    paths : dict of int -> ndarray of int, shape (n, 3)
        Ordered crop coordinates of each branch's skeleton, proximal end first.
    wall : ndarray of float, shape (I, J, K)
        Distance (mm) to the nearest background voxel centre, read on the labelled skeleton.
    spacing : 3 floats
        Voxel size (mm).

    Returns
    -------
    ndarray of float, shape (max id + 1,)
        Diameter in mm of branch ``b`` at index ``b``; index 0 unused.
    """
    scale = np.asarray(spacing, dtype=float)
    voxels = np.argwhere(branch_labels_c > 0)
    owner = branch_labels_c[tuple(voxels.T)]
    order = np.argsort(owner, kind="stable")  # one contiguous block per branch
    voxels, owner = voxels[order], owner[order]
    starts = np.searchsorted(owner, np.arange(len(paths) + 2))
    out = np.zeros(len(paths) + 1)
    for b, path in paths.items():
        region = voxels[starts[b] : starts[b + 1]] * scale
        out[b] = branch_diameter(region, path * scale, wall[tuple(path.T)], scale)
    return out


def branch_diameter(region, points, radius, scale) -> float:
    """:func:`lumen_diameters` of one branch (mm): ``region`` (m, 3) and ``points`` (n, 3) in mm,
    ``points`` ordered along the centreline with their wall distance ``radius`` (n,) mm."""
    n = len(points)
    if n < 2:  # no direction to cut across
        return float(2.0 * radius.mean()) if n else 0.0
    coarse, fine = float(scale.max()), float(scale.min())
    # local direction: chord over about one lumen radius (at least 3 voxels) each way
    reach = np.maximum(3, np.rint(radius / fine)).astype(int)
    index = np.arange(n)
    chord = points[np.minimum(index + reach, n - 1)] - points[np.maximum(index - reach, 0)]
    direction = chord / np.linalg.norm(chord, axis=1, keepdims=True)
    step = scale[np.argmax(np.abs(direction), axis=1)]
    half = step * np.ceil(2.0 * coarse / step)
    cap = radius + 2.0 * coarse
    near = cKDTree(region).query_ball_point(points, np.sqrt(half**2 + cap**2))
    voxel_volume = float(np.prod(scale))
    area = np.empty(n)
    for i, rows in enumerate(near):
        offset = region[rows] - points[i]
        along = offset @ direction[i]
        across = np.einsum("ij,ij->i", offset, offset) - along**2
        weight = np.clip(1.0 - np.abs(along) / half[i], 0.0, None) / half[i]
        area[i] = voxel_volume * weight[across <= cap[i] ** 2].sum()
    diameter = 2.0 * np.sqrt(area / np.pi)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    margin = radius + half
    inner = (arc >= margin) & (arc <= arc[-1] - margin)
    return float(diameter[inner].mean() if inner.any() else np.median(diameter))
