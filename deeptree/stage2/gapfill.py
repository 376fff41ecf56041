"""A non-learned gap filler: the baseline that shows what the stage-2 network adds.

At each breakage centre (:func:`deeptree.attention.breakage_centres`) the filler takes the
two 26-connected components of the mask nearest to the centre, finds their closest pair of
voxels ``a``, ``b`` and joins them with a tube along

* ``"straight"``: the straight segment from ``a`` to ``b``, or
* ``"intensity"``: the minimal-intensity path from ``a`` to ``b`` through the CT (airway
  lumen is dark, so the cheapest path follows the lumen where there is one; Dijkstra on the
  26-neighbour grid with cost = normalised CT + 0.05 per unit length,
  :func:`skimage.graph.route_through_array`),

of radius equal to the mean lumen radius near ``a`` and ``b`` (largest Euclidean distance to the
background within 3 voxels, minus half a voxel). Among several closest pairs (the flat end faces
of a cut tube) the one nearest to the centre is taken. Gaps longer than ``max_distance`` voxels are left open, and two
components already joined by an earlier centre are not joined twice (union-find), so the
filler adds at most one tube per centre and never loops.

All distances are in voxels, like the attention map (alpha = 5 voxels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from deeptree.io import InputError, check_same_grid, check_volume
from deeptree.masks import as_binary_mask, label_components

#: Path kinds of :func:`fill_gaps`.
PATHS = ("straight", "intensity")

#: Voxels around a join's end point searched for the lumen radius.
LUMEN_REACH = 3

#: Cost of a path step on top of the normalised CT (keeps paths short through dark regions).
STEP_COST = 0.05


@dataclass(frozen=True)
class Join:
    """One tube added by :func:`fill_gaps`.

    Attributes
    ----------
    centre : tuple of 3 int
        The breakage centre that asked for it.
    start, end : tuple of 3 int
        The closest voxels ``a``, ``b`` of the two components.
    components : tuple of 2 int
        Their labels in ``label_components(mask)``.
    length : float
        ``|a - b|``, voxels.
    radius : float
        Tube radius, voxels.
    n_voxels : int
        Voxels added (outside the mask).
    """

    centre: tuple[int, int, int]
    start: tuple[int, int, int]
    end: tuple[int, int, int]
    components: tuple[int, int]
    length: float
    radius: float
    n_voxels: int


@dataclass
class GapFill:
    """Result of :func:`fill_gaps`.

    Attributes
    ----------
    added : ndarray of bool, shape (I, J, K)
        Voxels to add to the mask (none of them in it).
    joins : list of Join
    skipped : int
        Centres left alone (fewer than two components nearby, gap too long, or components
        already joined).
    """

    added: np.ndarray
    joins: list[Join]
    skipped: int


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n + 1))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def fill_gaps(
    mask: np.ndarray,
    centres: np.ndarray,
    image: np.ndarray | None = None,
    *,
    path: str = "straight",
    max_distance: float = 15.0,
    search_radius: int = 20,
    name: str = "mask",
) -> GapFill:
    """Join the two nearest components at each breakage centre (see the module docstring).

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), binary
        Airway mask with breakages (e.g. a stage-1 output). Not modified.
    centres : ndarray of int, shape (n, 3)
        Breakage centres (voxels).
    image : ndarray of float, shape (I, J, K), optional
        Normalised CT in [0, 1] (:func:`deeptree.stage1.data.normalize_ct`); needed for
        ``path="intensity"``.
    path : {"straight", "intensity"}
    max_distance : float
        Longest gap joined, voxels.
    search_radius : int
        Components are looked for in the box of this half-width (voxels) around a centre.
    name : str
        What to call the mask in errors.

    Returns
    -------
    GapFill

    Raises
    ------
    InputError
        Mask not a 3D binary volume, centres not (n, 3), unknown path, ``intensity``
        without an image or with one of another shape.
    """

    mask = as_binary_mask(mask, name, allow_empty=True)
    centres = np.asarray(centres)
    if centres.size == 0:
        centres = np.zeros((0, 3), dtype=np.int64)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise InputError(f"centres: expected an (n, 3) array of voxel indices, got {centres.shape}")
    if path not in PATHS:
        raise InputError(f"gap filler path: choose one of {', '.join(PATHS)}, got {path!r}")
    if path == "intensity":
        if image is None:
            raise InputError("gap filler: path='intensity' needs the normalised CT (image)")
        image = check_volume(image, "image")
        check_same_grid(image, mask, "image", name)
    shape = np.asarray(mask.shape)
    added = np.zeros(mask.shape, dtype=bool)
    labels, n = label_components(mask, name)
    groups = _UnionFind(n)
    joins: list[Join] = []
    skipped = 0
    for centre in centres.astype(np.int64):
        lo = np.maximum(centre - search_radius, 0)
        hi = np.minimum(centre + search_radius + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        join = _join_at(
            labels[box],
            mask[box],
            centre - lo,
            groups,
            max_distance,
            path,
            None if image is None else image[box],
        )
        if join is None:
            skipped += 1
            continue
        tube, a, b, ka, kb, radius = join
        new = tube & ~mask[box]
        added[box] |= new
        groups.union(ka, kb)
        joins.append(
            Join(
                centre=tuple(int(x) for x in centre),
                start=tuple(int(x) for x in a + lo),
                end=tuple(int(x) for x in b + lo),
                components=(int(ka), int(kb)),
                length=float(np.linalg.norm(a - b)),
                radius=float(radius),
                n_voxels=int(new.sum()),
            )
        )
    return GapFill(added=added, joins=joins, skipped=skipped)


def _join_at(labels, mask, centre, groups, max_distance, path, image):
    """The tube joining the two nearest (not yet joined) components around ``centre``
    inside one box, or None."""
    from scipy.spatial import cKDTree

    ids = np.unique(labels[labels > 0])
    if len(ids) < 2:
        return None
    # distance from the centre to each component, nearest first; keep one per group
    coords = {k: np.argwhere(labels == k) for k in ids}
    near = sorted(ids, key=lambda k: (np.min(np.linalg.norm(coords[k] - centre, axis=1)), k))
    first = near[0]
    second = next((k for k in near[1:] if groups.find(k) != groups.find(first)), None)
    if second is None:
        return None
    a_pts, b_pts = coords[first], coords[second]
    dist, nearest = cKDTree(b_pts).query(a_pts)
    if dist.min() > max_distance:
        return None
    # among the closest pairs (a tube end face has many), the one nearest to the centre
    ties = np.flatnonzero(dist <= dist.min() + 1e-6)
    detour = np.linalg.norm(a_pts[ties] - centre, axis=1) + np.linalg.norm(
        b_pts[nearest[ties]] - centre, axis=1
    )
    best = int(ties[np.argmin(detour)])
    a, b = a_pts[best], b_pts[nearest[best]]
    inside = ndi.distance_transform_edt(mask)
    radius = 0.5 * (
        _lumen_radius(inside, labels, a, first) + _lumen_radius(inside, labels, b, second)
    )
    line = np.zeros(mask.shape, dtype=bool)
    if path == "intensity":
        from skimage.graph import route_through_array

        cost = np.asarray(image, dtype=np.float64) + STEP_COST
        route, _ = route_through_array(
            cost, tuple(a), tuple(b), fully_connected=True, geometric=True
        )
        line[tuple(np.asarray(route).T)] = True
    else:
        steps = int(np.ceil(np.linalg.norm(b - a) * 2)) + 1
        points = np.rint(a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a)).astype(np.int64)
        line[tuple(points.T)] = True
    tube = ndi.distance_transform_edt(~line) <= radius
    return tube, a, b, first, second, radius


def _lumen_radius(inside: np.ndarray, labels: np.ndarray, point: np.ndarray, k: int) -> float:
    """Lumen radius (voxels) of component ``k`` near ``point``: the largest distance to the
    background among its voxels within 3 voxels (the end voxel itself is too close to the
    gap to tell), minus half a voxel (the EDT counts to the background voxel's centre);
    at least 0.5, so that a one-voxel-thin branch gets a one-voxel-thin tube."""
    box = tuple(slice(max(int(p) - LUMEN_REACH, 0), int(p) + LUMEN_REACH + 1) for p in point)
    values = inside[box][labels[box] == k]
    return max(0.5, float(values.max()) - 0.5)
