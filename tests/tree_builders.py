"""Hand-built airway trees for the tree and anatomy tests: unions of capsules.

A capsule (a segment swept by a ball) has the segment itself as its medial axis, so the
skeleton of a capsule tree runs along the drawn centrelines and every branch's length,
radius, parent and generation are known by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TrueBranch:
    """One drawn branch: centreline from ``start`` to ``end`` (mm), radius (mm)."""

    index: int
    parent: int  # index of the parent, -1 for the trachea
    generation: int
    start: np.ndarray
    end: np.ndarray
    radius: float

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    def point(self, t: float) -> np.ndarray:
        """Point at fraction ``t`` of the centreline, in mm."""
        return self.start + t * (self.end - self.start)


def draw_capsule(mask: np.ndarray, spacing, p0, p1, radius: float) -> None:
    """Set to True (in place) every voxel whose centre lies within ``radius`` mm of the
    segment p0-p1 (mm). Only the segment's bounding box is visited."""
    spacing = np.asarray(spacing, dtype=float)
    p0, p1 = np.asarray(p0, dtype=float), np.asarray(p1, dtype=float)
    lo = np.maximum(np.floor((np.minimum(p0, p1) - radius) / spacing).astype(int) - 1, 0)
    hi = np.minimum(np.ceil((np.maximum(p0, p1) + radius) / spacing).astype(int) + 2, mask.shape)
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
    )
    pts = grid * spacing
    d = p1 - p0
    t = np.clip(((pts - p0) @ d) / (d @ d), 0.0, 1.0)
    dist = np.linalg.norm(pts - (p0 + t[..., None] * d), axis=-1)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= dist <= radius


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``v`` about unit ``axis``."""
    axis = axis / np.linalg.norm(axis)
    return (
        v * np.cos(angle)
        + np.cross(axis, v) * np.sin(angle)
        + axis * (axis @ v) * (1 - np.cos(angle))
    )


def binary_tree(
    depth: int = 3,
    trachea_length: float = 40.0,
    trachea_radius: float = 6.0,
    length_ratio: float = 0.75,
    radius_ratio: float = 0.72,
    angle_deg: float = 38.0,
) -> list[TrueBranch]:
    """A symmetric binary tree pointing towards -k, with generations 0..depth.

    Each generation is ``length_ratio`` as long and ``radius_ratio`` as thick as its
    parent; the two children of a branch leave at +-``angle_deg`` in a plane turned by
    90 degrees from the parent's plane. Coordinates in mm, trachea top at the origin
    (shifted later by :func:`rasterize`).
    """
    down = np.array([0.0, 0.0, -1.0])
    branches = [TrueBranch(0, -1, 0, np.zeros(3), down * trachea_length, trachea_radius)]
    planes = {0: np.array([1.0, 0.0, 0.0])}
    frontier = [0]
    for gen in range(1, depth + 1):
        nxt = []
        for p in frontier:
            parent = branches[p]
            direction = (parent.end - parent.start) / parent.length
            normal = planes[p]
            for sign in (1, -1):
                child_dir = _rotate(direction, normal, sign * np.deg2rad(angle_deg))
                length = trachea_length * length_ratio**gen
                child = TrueBranch(
                    len(branches),
                    p,
                    gen,
                    parent.end.copy(),
                    parent.end + child_dir * length,
                    trachea_radius * radius_ratio**gen,
                )
                branches.append(child)
                # the grandchildren split in the plane at 90 degrees
                planes[child.index] = np.cross(child_dir, normal)
                nxt.append(child.index)
        frontier = nxt
    return branches


def y_tree() -> list[TrueBranch]:
    """A trachea (r 5 mm, 30 mm) and two main bronchi (r 3.5 mm, about 29 mm)."""
    return [
        TrueBranch(0, -1, 0, np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, -30.0]), 5.0),
        TrueBranch(1, 0, 1, np.array([0.0, 0.0, -30.0]), np.array([-15.0, 0.0, -55.0]), 3.5),
        TrueBranch(2, 0, 1, np.array([0.0, 0.0, -30.0]), np.array([15.0, 0.0, -55.0]), 3.5),
    ]


def rasterize(branches: list[TrueBranch], spacing=(1.0, 1.0, 1.0), margin: float = 4.0):
    """Draw the capsules into a fresh bool volume that holds them with ``margin`` mm around.

    Returns the mask (I, J, K) and the branches shifted into the volume's mm frame
    (voxel (i, j, k) has its centre at (i, j, k) * spacing).
    """
    spacing = np.asarray(spacing, dtype=float)
    ends = np.array([p for b in branches for p in (b.start, b.end)])
    rmax = max(b.radius for b in branches)
    lo = ends.min(axis=0) - rmax - margin
    hi = ends.max(axis=0) + rmax + margin
    shape = tuple(int(np.ceil(x)) + 1 for x in (hi - lo) / spacing)
    shifted = [
        TrueBranch(b.index, b.parent, b.generation, b.start - lo, b.end - lo, b.radius)
        for b in branches
    ]
    mask = np.zeros(shape, dtype=bool)
    for b in shifted:
        draw_capsule(mask, spacing, b.start, b.end, b.radius)
    return mask, shifted


def voxel_at(point_mm: np.ndarray, spacing) -> tuple[int, int, int]:
    """Index of the voxel whose centre is nearest to a point in mm."""
    return tuple(int(v) for v in np.rint(np.asarray(point_mm) / np.asarray(spacing, dtype=float)))
