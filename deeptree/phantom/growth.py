"""Procedural airway tree grown inside the lungs with Kitaoka's branching rules.

The tree is grown by volume filling (Kitaoka, Takaki and Suki 1999, "A three-dimensional
model of the human airway tree", J Appl Physiol 87:2207-2217; Tawhai et al. 2000,
"Generation of an anatomically based three-dimensional model of the conducting airways",
Ann Biomed Eng 28:793-802). Each branch owns a region of the lung, represented by a cloud of
random points; at its end the region is cut in two by a plane that contains the branch, and
each half gets a daughter:

1. flow-dividing ratio ``r`` = share of the parent's region (points) in the daughter's half;
2. daughter lumen diameter ``d_i = d_parent * r_i ** (1 / n)`` with the diameter exponent
   ``n = 2.8`` (Kitaoka rule 4);
3. branching angle from the minimum-power rule (Kitaoka rule 5)
   ``cos(theta_1) = (1 + r^(4/n) - (1 - r)^(4/n)) / (2 r^(2/n))``;
4. the daughters lie in a plane about 90 degrees rotated from the parent's branching plane
   (rule 3; here the cut plane may turn up to 45 degrees further to split the region across
   its longest extent, which keeps the filling even);
5. length three times the diameter (rule 6), but not beyond the centroid of the region;
6. growth stops when a daughter would be thinner than the smallest lumen the profile
   resolves, its region holds too few points, it would leave the lung, or it would come
   closer to another branch than the two walls allow (branches are shortened first).

The trachea and main bronchi are set from anatomy (trachea 15-19 mm wide and 100-120 mm
long; right main bronchus short and steep, 20-30 degrees from the tracheal axis; left one
long and oblique, 40-50 degrees), with diameters from the same rule applied to the volumes
of the two lungs.

Wall thickness: ``0.12 * d + 0.2 mm``, a simple linear rule (about 10-20 % of the lumen
diameter plus a fraction of a millimetre: trachea 2-2.5 mm, a 5 mm bronchus 0.8 mm, a 2 mm
bronchus 0.45 mm), of the order of quantitative CT wall measurements in adults.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

import numpy as np

from deeptree.phantom.thorax import ThoraxGeometry

DIAMETER_EXPONENT = 2.8  # Kitaoka 1999 rule 4
MURRAY_EXPONENT = (
    3.0  # blood vessels: Murray 1926 (PNAS 12:207), Huang et al. 1996 (J Appl Physiol 81:2123)
)
LENGTH_TO_DIAMETER = 3.0  # Kitaoka 1999 rule 6
_SPLIT_TURNS = np.deg2rad(np.arange(-45.0, 46.0, 15.0))  # allowed turns of the cut plane


def wall_thickness_mm(lumen_diameter_mm):
    """Airway wall thickness (mm) for a lumen diameter (mm): ``0.12 d + 0.2``."""
    return 0.12 * np.asarray(lumen_diameter_mm, dtype=float) + 0.2


def kitaoka_angle(r: float, n: float = DIAMETER_EXPONENT) -> float:
    """Branching angle (radians) between a daughter and its parent's axis.

    Parameters
    ----------
    r : float in (0, 1)
        Flow-dividing ratio of this daughter (its share of the parent's flow).
    n : float
        Diameter exponent.

    Returns
    -------
    float
        ``arccos((1 + r^(4/n) - (1 - r)^(4/n)) / (2 r^(2/n)))`` (Kitaoka 1999, rule 5):
        35 degrees for a symmetric split, larger for the smaller daughter.
    """
    c = (1.0 + r ** (4.0 / n) - (1.0 - r) ** (4.0 / n)) / (2.0 * r ** (2.0 / n))
    return float(np.arccos(np.clip(c, -1.0, 1.0)))


@dataclass(frozen=True)
class Branch:
    """One airway branch: a straight tube between two points.

    Attributes
    ----------
    id : int
        0 for the trachea; ids increase in the order of growth.
    parent : int
        Id of the parent branch, -1 for the trachea.
    generation : int
        0 trachea, 1 main bronchi, 2 lobar, ...
    start_mm, end_mm : tuple of 3 float
        Centreline end points, world RAS mm.
    radius_mm : float
        Lumen radius (mm).
    wall_mm : float
        Wall thickness (mm).
    flow : float
        Share of the total lung volume this branch ventilates (1 for the trachea).
    side : str
        "T" trachea, "R" right lung, "L" left lung.
    """

    id: int
    parent: int
    generation: int
    start_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]
    radius_mm: float
    wall_mm: float
    flow: float
    side: str

    @property
    def length_mm(self) -> float:
        """Centreline length (mm)."""
        return float(np.linalg.norm(np.subtract(self.end_mm, self.start_mm)))


@dataclass(frozen=True)
class AirwayTreeSpec:
    """A phantom airway tree kept as data.

    Attributes
    ----------
    branches : tuple of Branch
        Sorted by id; ``branches[i].id == i``.
    plugs : tuple of dict
        Short stretches of raised lumen density (mucus): ``{"branch", "t0", "t1", "hu"}``
        with ``t0 < t1`` fractions of the branch length. The ground truth keeps them.
    meta : dict
        Growth parameters (profile, seed, scale, diameter exponent, smallest lumen...).
    """

    branches: tuple[Branch, ...]
    plugs: tuple[dict, ...] = ()
    meta: dict = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Branch data as arrays: ``start``, ``end`` (N, 3) mm, ``radius``, ``wall`` (N,) mm,
        ``parent``, ``generation`` (N,) int."""
        b = self.branches
        return {
            "start": np.array([x.start_mm for x in b], dtype=float).reshape(-1, 3),
            "end": np.array([x.end_mm for x in b], dtype=float).reshape(-1, 3),
            "radius": np.array([x.radius_mm for x in b], dtype=float),
            "wall": np.array([x.wall_mm for x in b], dtype=float),
            "parent": np.array([x.parent for x in b], dtype=int),
            "generation": np.array([x.generation for x in b], dtype=int),
        }

    def children(self, branch_id: int) -> list[int]:
        """Ids of the daughters of ``branch_id``."""
        return [b.id for b in self.branches if b.parent == branch_id]

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"meta", "branches": [dict, ...], "plugs"}``."""
        return {
            "meta": dict(self.meta),
            "branches": [asdict(b) for b in self.branches],
            "plugs": [dict(p) for p in self.plugs],
        }

    @classmethod
    def from_dict(cls, data: dict) -> AirwayTreeSpec:
        """Inverse of :meth:`to_dict`."""
        branches = tuple(
            Branch(**{**b, "start_mm": tuple(b["start_mm"]), "end_mm": tuple(b["end_mm"])})
            for b in data["branches"]
        )
        return cls(branches, tuple(data.get("plugs", ())), dict(data.get("meta", {})))


# --------------------------------------------------------------------------------------------
# growth
# --------------------------------------------------------------------------------------------
def sample_lung_points(
    geom: ThoraxGeometry, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random points inside the lungs (rejection sampling).

    Returns
    -------
    points : ndarray, shape (n, 3), float64, world mm
    side : ndarray, shape (n,), int8: +1 right lung, -1 left lung
    """
    lo, hi = geom.lung_box_mm()
    chunks, sides, total = [], [], 0
    while total < n:
        p = rng.uniform(lo, hi, size=(max(4 * n, 1000), 3))
        s = geom.lung_side(p[:, 0], p[:, 1], p[:, 2])
        keep = s != 0
        chunks.append(p[keep])
        sides.append(s[keep])
        total += int(keep.sum())
    return np.concatenate(chunks)[:n], np.concatenate(sides)[:n]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular(u: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Unit vector perpendicular to ``u``, as close as possible to ``hint``."""
    w = hint - (hint @ u) * u
    if np.linalg.norm(w) < 1e-6:
        w = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    return _unit(w)


def point_segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (mm) from points to segments.

    Parameters
    ----------
    q : ndarray, shape (M, 3)
    a, b : ndarray, shape (N, 3)
        Segment end points.

    Returns
    -------
    ndarray, shape (M, N)
    """
    d = b - a  # (N, 3)
    dd = np.maximum(np.einsum("ij,ij->i", d, d), 1e-12)
    rel = q[:, None, :] - a[None, :, :]  # (M, N, 3)
    t = np.clip(np.einsum("mnk,nk->mn", rel, d) / dd, 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * d[None], axis=-1)


@dataclass
class _Growing:
    """Mutable branch list during growth (arrays kept in step for the collision test)."""

    start: list = field(default_factory=list)
    end: list = field(default_factory=list)
    radius: list = field(default_factory=list)
    wall: list = field(default_factory=list)
    parent: list = field(default_factory=list)
    generation: list = field(default_factory=list)
    flow: list = field(default_factory=list)
    side: list = field(default_factory=list)
    plane_normal: list = field(default_factory=list)
    _arrays: np.ndarray = field(default_factory=lambda: np.zeros((256, 7)))  # start, end, reach

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views of all branches so far: start (N, 3), end (N, 3), radius + wall (N,)."""
        n = len(self.start)
        return self._arrays[:n, 0:3], self._arrays[:n, 3:6], self._arrays[:n, 6]

    def add(self, start, end, radius, parent, generation, flow, side, plane_normal) -> int:
        n = len(self.start)
        if n == len(self._arrays):
            self._arrays = np.concatenate([self._arrays, np.zeros_like(self._arrays)])
        self._arrays[n, 0:3], self._arrays[n, 3:6] = start, end
        self._arrays[n, 6] = radius + wall_thickness_mm(2 * radius)
        self.start.append(np.asarray(start, float))
        self.end.append(np.asarray(end, float))
        self.radius.append(float(radius))
        self.wall.append(float(wall_thickness_mm(2 * radius)))
        self.parent.append(int(parent))
        self.generation.append(int(generation))
        self.flow.append(float(flow))
        self.side.append(side)
        self.plane_normal.append(np.asarray(plane_normal, float))
        return len(self.start) - 1


def grow_airway_tree(
    geom: ThoraxGeometry,
    rng: np.random.Generator,
    *,
    min_lumen_mm: float,
    n_points: int = 20000,
    min_points: int = 6,
    max_generation: int = 24,
    clearance_mm: float = 0.3,
) -> AirwayTreeSpec:
    """Grow an airway tree that fills the two lungs of ``geom``.

    Parameters
    ----------
    geom : ThoraxGeometry
        Lungs and carina position (world mm).
    rng : numpy.random.Generator
        Source of all randomness (region points, trachea size, main bronchus angles).
    min_lumen_mm : float
        Growth stops before a lumen diameter below this (mm).
    n_points : int
        Points that represent the lung volume; more points let the tree grow finer.
    min_points : int
        A region with fewer points gets no more branches.
    max_generation : int
        Hard stop (safety).
    clearance_mm : float
        Extra gap (mm) kept between the outer walls of two non-adjacent branches.

    Returns
    -------
    AirwayTreeSpec
        ``meta`` holds the growth parameters. Positions are world RAS mm.
    """
    s = geom.scale
    points, point_side = sample_lung_points(geom, n_points, rng)
    tree = _Growing()

    # trachea: from the neck down to the carina, tilted forward at the top (~6 degrees)
    d_trachea = rng.uniform(15.5, 19.0) * s
    l_trachea = rng.uniform(100.0, 120.0) * s
    carina = geom.carina_mm
    axis_down = _unit(np.array([0.0, -np.sin(np.deg2rad(6.0)), -np.cos(np.deg2rad(6.0))]))
    tree.add(
        carina - l_trachea * axis_down, carina, d_trachea / 2, -1, 0, 1.0, "T", [0.0, 1.0, 0.0]
    )

    # main bronchi: flows from the lung volumes, diameters by the rule, angles from anatomy
    n_right = int((point_side > 0).sum())
    heap: list = []
    for side, name, angle_deg, length_mm in (
        (+1, "R", rng.uniform(20.0, 30.0), rng.uniform(20.0, 25.0)),
        (-1, "L", rng.uniform(40.0, 50.0), rng.uniform(45.0, 50.0)),
    ):
        flow = (n_right if side > 0 else len(points) - n_right) / len(points)
        diameter = d_trachea * flow ** (1.0 / DIAMETER_EXPONENT)
        a = np.deg2rad(angle_deg)
        direction = _unit(np.cos(a) * axis_down + np.sin(a) * np.array([side, -0.12, 0.0]))
        # the bronchus ends in the hilum, inside its lung: lengthened if needed
        end = _extend_into_lung(geom, carina, direction, length_mm * s, side, s)
        normal = _unit(np.cross(axis_down, direction))
        bid = tree.add(carina, end, diameter / 2, 0, 1, flow, name, normal)
        idx = np.flatnonzero(point_side == side)
        heapq.heappush(heap, (-diameter, bid, idx))

    _fill(tree, heap, points, geom, min_lumen_mm, min_points, max_generation, clearance_mm)

    branches = tuple(
        Branch(
            id=i,
            parent=tree.parent[i],
            generation=tree.generation[i],
            start_mm=tuple(float(v) for v in tree.start[i]),
            end_mm=tuple(float(v) for v in tree.end[i]),
            radius_mm=tree.radius[i],
            wall_mm=tree.wall[i],
            flow=tree.flow[i],
            side=tree.side[i],
        )
        for i in range(len(tree.start))
    )
    meta = {
        "diameter_exponent": DIAMETER_EXPONENT,
        "length_to_diameter": LENGTH_TO_DIAMETER,
        "min_lumen_mm": float(min_lumen_mm),
        "n_points": int(n_points),
        "min_points": int(min_points),
        "scale": float(s),
        "carina_mm": [float(v) for v in carina],
    }
    return AirwayTreeSpec(branches=branches, meta=meta)


def _fill(
    tree,
    heap,
    points,
    geom,
    min_diameter_mm,
    min_points,
    max_generation,
    clearance_mm,
    exponent=DIAMETER_EXPONENT,
):
    """Volume filling: split regions, largest branches first so that they claim their space
    first. ``heap`` holds ``(-diameter, branch id, point indices)``."""
    while heap:
        _, bid, idx = heapq.heappop(heap)
        if len(idx) < 2 * min_points or tree.generation[bid] >= max_generation:
            continue
        for child_idx, child in _split(
            tree, bid, points, idx, geom, min_diameter_mm, min_points, clearance_mm, exponent
        ):
            heapq.heappush(heap, (-2 * tree.radius[child], child, child_idx))


def _extend_into_lung(geom, start, direction, length, side, scale):
    """End point of a root branch from ``start``: at least ``length`` long, and lengthened in
    1 mm steps until it lies inside its lung (with 4 mm to spare)."""
    end = start + length * direction
    for _ in range(80):
        if (
            geom.lung_side(*end) == side
            and geom.lung_side(*(end + 4.0 * scale * direction)) == side
        ):
            break
        end = end + 1.0 * scale * direction
    return end


def grow_vessel_tree(
    geom: ThoraxGeometry,
    rng: np.random.Generator,
    *,
    min_diameter_mm: float,
    n_points: int = 20000,
    min_points: int = 5,
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """A pulmonary vein tree: the same volume filling with Murray's exponent 3, from two roots
    per lung at the hilum (superior and inferior veins draining into the left atrium),
    independent of the airways.

    Returns
    -------
    list of (start (3,), end (3,), radius float), world mm
    """
    s = geom.scale
    points, point_side = sample_lung_points(geom, n_points, rng)
    tree = _Growing()
    heap: list = []
    hilum_z = geom.point([0.0, 0.0, 100.0])[2]
    for side in (+1, -1):
        # superior and inferior pulmonary veins, each draining its half of the lung
        for z, dz, upper in ((108.0, 0.3, True), (88.0, -0.35, False)):
            start = geom.point([side * 22.0, 0.0, z])
            direction = _unit(np.array([side * 1.0, -0.1, dz]))
            end = _extend_into_lung(geom, start, direction, 10.0 * s, side, s)
            idx = np.flatnonzero((point_side == side) & ((points[:, 2] >= hilum_z) == upper))
            diameter = 11.0 * s
            bid = tree.add(
                start, end, diameter / 2, -1, 0, len(idx) / len(points), "V", [0.0, 0.0, 1.0]
            )
            heapq.heappush(heap, (-diameter, bid, idx))
    _fill(tree, heap, points, geom, min_diameter_mm, min_points, 40, 0.1 * s, MURRAY_EXPONENT)
    return [(tree.start[i], tree.end[i], tree.radius[i]) for i in range(len(tree.start))]


def _split(
    tree: _Growing,
    bid,
    points,
    idx,
    geom,
    min_lumen_mm,
    min_points,
    clearance_mm,
    exponent=DIAMETER_EXPONENT,
):
    """Cut the region of branch ``bid`` in two and grow up to two daughters.

    Yields ``(point indices, new branch id)`` for each daughter that was added.
    """
    start, end = tree.start[bid], tree.end[bid]
    u = _unit(end - start)
    m = _perpendicular(u, tree.plane_normal[bid])
    p = points[idx] - end
    # candidate cut-plane normals: the parent's branching-plane normal (daughters in a plane
    # rotated 90 degrees), turned by up to 45 degrees about the axis; keep the one that cuts
    # the region across its longest extent
    um = np.cross(u, m)
    normals = np.cos(_SPLIT_TURNS)[:, None] * m + np.sin(_SPLIT_TURNS)[:, None] * um
    proj = p @ normals.T
    best = int(np.argmax(proj.var(axis=0)))
    n = normals[best]
    side = proj[:, best] > 0.0
    if min(side.mean(), 1.0 - side.mean()) < 0.1:
        # the plane through the axis leaves one half almost empty: cut through the centroid
        side = proj[:, best] > proj[:, best].mean()
    halves = [idx[side], idx[~side]]
    halves.sort(key=len, reverse=True)  # larger daughter first
    d_parent = 2 * tree.radius[bid]
    for sub in halves:
        r = len(sub) / len(idx)
        if r <= 0.0 or len(sub) < min_points:
            continue
        d = d_parent * r ** (1.0 / exponent)
        if d < min_lumen_mm:
            continue
        theta = kitaoka_angle(r, exponent)
        centroid = points[sub].mean(axis=0)
        w = _perpendicular(u, centroid - end if np.linalg.norm(centroid - end) > 1e-6 else n)
        direction = np.cos(theta) * u + np.sin(theta) * w
        length = min(LENGTH_TO_DIAMETER * d, float(np.linalg.norm(centroid - end)))
        length = _feasible_length(tree, bid, end, direction, length, d, geom, clearance_mm)
        if length < d:
            continue  # no room for a branch at least as long as it is wide
        normal = _perpendicular(direction, np.cross(u, direction))
        child = tree.add(
            end,
            end + length * direction,
            d / 2,
            bid,
            tree.generation[bid] + 1,
            tree.flow[bid] * r,
            tree.side[bid],
            normal,
        )
        yield sub, child


def _feasible_length(tree, parent, start, direction, length, diameter, geom, clearance_mm) -> float:
    """Longest length <= ``length`` (mm) for which a new branch stays inside the lung and
    clear of every non-adjacent branch."""
    r_out = diameter / 2 + float(wall_thickness_mm(diameter))
    step = max(min(diameter / 2, 1.0), 0.2)
    s = np.arange(step, length + step / 2, step)
    if s.size == 0:
        return 0.0
    q = start + s[:, None] * direction
    # inside the lung: centreline samples and the tip including its wall
    tip = q[-1:] + r_out * direction
    inside = geom.lung_side(q[:, 0], q[:, 1], q[:, 2]) != 0
    ok = inside.copy()
    if not (geom.lung_side(tip[:, 0], tip[:, 1], tip[:, 2]) != 0).all():
        ok[-1] = False
    # clearance from other branches (all but the parent and the sibling sharing the start)
    a, b, reach = tree.segments()
    lo, hi = np.minimum(q.min(0), start), np.maximum(q.max(0), start)
    margin = r_out + reach.max() + clearance_mm + step
    near = (np.minimum(a, b) <= hi + margin).all(1) & (np.maximum(a, b) >= lo - margin).all(1)
    near[parent] = False
    near &= ~np.all(np.isclose(a, start), axis=1)  # siblings start where this one starts
    if near.any():
        dist = point_segment_distance(q, a[near], b[near])
        need = reach[near][None, :] + r_out + clearance_mm + step / 2
        ok &= (dist >= need).all(axis=1)
    if ok.all():
        return float(length)
    first_bad = int(np.argmin(ok))
    # keep the samples before the first bad one, minus the tube's cap
    return float(s[first_bad - 1] - step) if first_bad > 0 else 0.0
