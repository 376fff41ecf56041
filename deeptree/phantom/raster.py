"""Rasterisation of tubes (capsules) onto a voxel grid with analytic partial volume.

A branch is a capsule: the points within radius ``R`` of a segment. For a voxel whose centre
lies at signed distance ``sd = dist - R`` from the capsule surface, the covered fraction of
the voxel is approximated by the linear ramp ``clip(0.5 - sd / h, 0, 1)`` (``h`` = voxel
size): exact for a plane cutting a cube along an axis, and the usual analytic partial-volume
model. Only the bounding box of each capsule is visited, and the distance to the segment is
computed in closed form on broadcast coordinate axes, so the cost is the total volume of the
boxes, not the volume of the grid.

Fractions are stored as ``uint8`` (255 = full) and combined with ``max`` (the union of
shapes: the max of the fractions equals the fraction of the min of the distances).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A voxel grid in world millimetres (RAS, axis-aligned).

    Attributes
    ----------
    shape : tuple of 3 int
        (I, J, K).
    spacing : tuple of 3 float
        Voxel size (mm) along i, j, k.
    origin : tuple of 3 float
        World position (mm) of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-world affine: spacing on the diagonal, origin as translation."""
        a = np.diag([*self.spacing, 1.0])
        a[:3, 3] = self.origin
        return a

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates (mm) of the voxel centres along each axis, shaped to broadcast:
        (I, 1, 1), (1, J, 1), (1, 1, K)."""
        x = self.origin[0] + self.spacing[0] * np.arange(self.shape[0])
        y = self.origin[1] + self.spacing[1] * np.arange(self.shape[1])
        z = self.origin[2] + self.spacing[2] * np.arange(self.shape[2])
        return x[:, None, None], y[None, :, None], z[None, None, :]

    def to_index(self, xyz) -> np.ndarray:
        """World mm -> (fractional) voxel index, arrays of shape (..., 3)."""
        return (np.asarray(xyz, float) - np.asarray(self.origin)) / np.asarray(self.spacing)

    @property
    def voxel_mm(self) -> float:
        """Typical voxel size (geometric mean of the spacing), the width of the edge ramp."""
        return float(np.prod(self.spacing) ** (1.0 / 3.0))


def capsule_box(grid: Grid, a, b, reach: float):
    """Distances from the voxel centres of a capsule's bounding box to its segment.

    Parameters
    ----------
    grid : Grid
    a, b : array-like, shape (3,)
        Segment end points (world mm).
    reach : float
        Distance (mm) beyond the segment that must be covered (largest radius + ramp).

    Returns
    -------
    (slices, dist) or None
        ``slices`` index the box in the grid; ``dist`` (float32, box shape) is the distance
        in mm from each voxel centre to the segment. None when the box misses the grid.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo = np.floor(grid.to_index(np.minimum(a, b) - reach)).astype(int)
    hi = np.ceil(grid.to_index(np.maximum(a, b) + reach)).astype(int) + 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, grid.shape)
    if np.any(hi <= lo):
        return None
    sp, o = grid.spacing, grid.origin
    x = (o[0] + sp[0] * np.arange(lo[0], hi[0]) - a[0]).astype(np.float32)[:, None, None]
    y = (o[1] + sp[1] * np.arange(lo[1], hi[1]) - a[1]).astype(np.float32)[None, :, None]
    z = (o[2] + sp[2] * np.arange(lo[2], hi[2]) - a[2]).astype(np.float32)[None, None, :]
    d = (b - a).astype(np.float32)
    dd = float(d @ d)
    if dd > 0:
        t = np.clip((x * d[0] + y * d[1] + z * d[2]) / dd, 0.0, 1.0)
        dist2 = (x - t * d[0]) ** 2 + (y - t * d[1]) ** 2 + (z - t * d[2]) ** 2
    else:
        dist2 = x**2 + y**2 + z**2
    return tuple(slice(int(i), int(j)) for i, j in zip(lo, hi, strict=True)), np.sqrt(dist2)


def coverage_u8(
    dist: np.ndarray, radius: float, voxel_mm: float, strength: float = 1.0
) -> np.ndarray:
    """Partial-volume fraction of a capsule of ``radius`` (mm) as uint8 (255 = full).

    ``strength`` in [0, 1] scales the value (used to encode the density of a mucus plug).
    """
    frac = np.clip(0.5 - (dist - radius) / voxel_mm, 0.0, 1.0)
    return (frac * (255.0 * strength) + 0.5).astype(np.uint8)


def paint_max(field: np.ndarray, slices, values: np.ndarray) -> None:
    """``field[slices] = max(field[slices], values)`` in place (``field`` is our own array)."""
    view = field[slices]
    np.maximum(view, values, out=view)


def centreline_voxels(grid: Grid, a, b) -> np.ndarray:
    """Indices (M, 3) of a 6-connected chain of voxels along the segment ``a``-``b``.

    The segment is sampled at a quarter voxel; between two consecutive samples in
    different voxels the chain steps one axis at a time, so it is 6-connected. Indices
    outside the grid are dropped.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    step = 0.25 * min(grid.spacing)
    n = max(int(np.ceil(np.linalg.norm(b - a) / step)), 1) + 1
    pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)
    idx = np.rint(grid.to_index(pts)).astype(int)
    prev, nxt = idx[:-1], idx[1:]
    # staircase between consecutive samples: change i first, then j, then k
    s1 = np.stack([nxt[:, 0], prev[:, 1], prev[:, 2]], axis=1)
    s2 = np.stack([nxt[:, 0], nxt[:, 1], prev[:, 2]], axis=1)
    allidx = np.concatenate([idx, s1, s2])
    keep = np.all((allidx >= 0) & (allidx < np.asarray(grid.shape)), axis=1)
    return allidx[keep]
