"""Breakage simulation on ground truth: training data for stage 2 (DeepTree paper, Sec. 2.3).

The paper's recipe, with the choices docs/design.md fixes:

1. parse the GT into branches (:func:`deeptree.tree.parse_tree`, the ATM'22 scheme: its
   skeleton and skeleton-to-volume propagation stand in for the paper's minimum-cost-path
   skeleton and propagation of its ref. [4]);
2. the *peripheral* branches are the leaf branches of generation >= 3; a random 50% of them
   are chosen;
3. in each chosen branch a contiguous run of 10%-30% of its (ordered) skeleton voxels is
   removed;
4. the removed runs are propagated to the volume by nearest labelled skeleton voxel: the
   voxels whose nearest skeleton voxel is in a run form the breakage label ``Y^B``; the
   broken mask is ``GT - Y^B``.

Choices this module adds, so that every gap is a real breakage:

* a run never touches either end of its branch (at least one skeleton voxel of the branch is
  left on each side), so that the gap lies *within* the branch and cuts off a distal piece;
* nearest-skeleton propagation cuts the branch with a Voronoi slab that can be thin: where a
  voxel of the distal piece still touches (26-connectivity) a mask voxel outside it, there is
  a bridge. Such *contact voxels* of the distal piece are added to the gap when they lie next
  to it (within 2 voxels of the propagated run); after that no voxel of the distal piece
  touches the rest of the mask, so the piece is disconnected (proof: its remaining voxels
  had no outside neighbour, else they would be contact voxels). A branch whose bridge lies
  elsewhere (e.g. it touches a neighbouring branch), or whose distal piece would vanish, is
  not cut: the next branch in the random order is tried instead, and the result counts
  these rejections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from deeptree.io import InputError
from deeptree.masks import CONNECTIVITY_26, as_binary_mask, bounding_box, grow_box, label_components

#: docs/design.md: peripheral = leaf branch of generation >= 3.
MIN_PERIPHERAL_GENERATION = 3

#: Contact voxels farther than this (26-steps from the propagated run) reject a branch.
BRIDGE_REACH = 2

# A margin of a few voxels around each gap: the crop must hold every neighbour of its voxels.
_CROP_MARGIN = BRIDGE_REACH + 2


@dataclass(frozen=True)
class Gap:
    """One simulated breakage.

    Attributes
    ----------
    branch : int
        Id of the cut branch in the parsed tree.
    generation : int
        Its generation.
    n_skeleton : int
        Labelled skeleton voxels of the branch.
    run_start, run_stop : int
        The removed run is ``tree.branch_path(branch)[run_start:run_stop]`` (proximal first).
    run : ndarray of int64, shape (run_stop - run_start, 3)
        Voxel coordinates of the removed skeleton run.
    voxels : ndarray of int64, shape (n_voxels, 3)
        Voxel coordinates of this gap's part of ``Y^B``.
    n_widened : int
        Of ``voxels``, how many were contact voxels added to cut a bridge (see module notes).
    centre : tuple of 3 int
        The middle voxel of the run: a voxel of the gap where stage 2 crops are centred.
    proximal_voxel, distal_voxel : tuple of 3 int
        The branch's last skeleton voxel before the gap and first one after it that remain in
        the broken mask.
    proximal_component : int
        Label of the part before the gap (holding ``proximal_voxel``) in
        ``label_components(broken)`` (26-connectivity, scan order).
    distal_components : tuple of int
        Labels of the part(s) cut off beyond the gap, sorted; never the proximal one. A
        branch that the parser fused from a fork (its skeleton has two distal arms) can
        leave two distal pieces.
    """

    branch: int
    generation: int
    n_skeleton: int
    run_start: int
    run_stop: int
    run: np.ndarray
    voxels: np.ndarray
    n_widened: int
    centre: tuple[int, int, int]
    proximal_voxel: tuple[int, int, int]
    distal_voxel: tuple[int, int, int]
    proximal_component: int
    distal_components: tuple[int, ...]

    @property
    def run_length(self) -> int:
        """Number of removed skeleton voxels."""
        return self.run_stop - self.run_start

    @property
    def run_fraction(self) -> float:
        """Removed share of the branch's skeleton voxels."""
        return self.run_length / self.n_skeleton

    @property
    def n_voxels(self) -> int:
        """Voxels of ``Y^B`` from this gap."""
        return len(self.voxels)

    def record(self) -> dict:
        """The gap as a small JSON-friendly dict (no voxel lists)."""
        return {
            "branch": self.branch,
            "generation": self.generation,
            "n_skeleton": self.n_skeleton,
            "run_start": self.run_start,
            "run_stop": self.run_stop,
            "run_length": self.run_length,
            "run_fraction": round(self.run_fraction, 4),
            "n_voxels": self.n_voxels,
            "n_widened": self.n_widened,
            "centre": list(self.centre),
            "proximal_voxel": list(self.proximal_voxel),
            "distal_voxel": list(self.distal_voxel),
            "proximal_component": self.proximal_component,
            "distal_components": list(self.distal_components),
        }


@dataclass
class Breakage:
    """The result of :func:`simulate_breakage`.

    Attributes
    ----------
    broken : ndarray of bool, shape (I, J, K)
        The GT with the gaps removed (``mask & ~label``).
    label : ndarray of bool, shape (I, J, K)
        ``Y^B``: the removed voxels, all inside the GT.
    gaps : list of Gap
        One per cut branch, in the random order in which branches were taken.
    n_peripheral : int
        Peripheral branches (leaves of generation >= ``min_generation``) of the tree.
    n_target : int
        Gaps asked for: ``round(branch_fraction * n_peripheral)``.
    n_rejected : int
        Branches tried but not cut (too short for an inner run, bridge away from the gap, or
        no distal piece left); each was replaced by the next branch in the random order.
    n_components : int
        26-connected components of ``broken``.
    """

    broken: np.ndarray
    label: np.ndarray
    gaps: list[Gap]
    n_peripheral: int
    n_target: int
    n_rejected: int
    n_components: int


def peripheral_branches(tree, min_generation: int = MIN_PERIPHERAL_GENERATION) -> list[int]:
    """Ids of the peripheral branches: leaves of generation >= ``min_generation``, sorted.

    Parameters
    ----------
    tree : deeptree.tree.AirwayTree
    min_generation : int
        docs/design.md: 3.

    Returns
    -------
    list of int
    """
    return sorted(
        b.id for b in tree.branches.values() if b.is_leaf and b.generation >= min_generation
    )


def _as_generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        if rng is None:
            raise InputError("rng: give a numpy Generator or an integer seed (got None)")
        return np.random.default_rng(int(rng))
    raise InputError(
        f"rng: expected a numpy.random.Generator or an int seed, got {type(rng).__name__}"
    )


def check_fractions(
    branch_fraction, run_fraction, names: tuple[str, str] = ("branch_fraction", "run_fraction")
) -> tuple[float, float, float]:
    """The breakage fractions as floats, or an error naming the bad one.

    Parameters
    ----------
    branch_fraction : number in [0, 1]
        Share of the peripheral branches cut.
    run_fraction : pair of numbers, 0 < low <= high < 1
        Range of the removed share of a branch's skeleton.
    names : (str, str)
        What to call them in the message (e.g. ``("--branch-fraction", "--run-fraction")``).

    Returns
    -------
    (branch_fraction, low, high) : floats

    Raises
    ------
    InputError
        Not numbers, out of range, or ``low > high``.
    """
    branch, run = names
    try:
        branch_fraction = float(branch_fraction)
        low, high = (float(f) for f in run_fraction)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"{branch} must be a number and {run} a pair of numbers, got "
            f"{branch_fraction!r} and {run_fraction!r}"
        ) from err
    if not 0.0 <= branch_fraction <= 1.0:
        raise InputError(f"{branch} must be in [0, 1], got {branch_fraction}")
    if not 0.0 < low <= high < 1.0:
        raise InputError(f"{run} must satisfy 0 < low <= high < 1, got ({low}, {high})")
    return branch_fraction, low, high


def run_length_range(n_skeleton: int, run_fraction=(0.1, 0.3)) -> tuple[int, int]:
    """Allowed run lengths (voxels) for a branch: integers in [low * n, high * n].

    Returns
    -------
    (shortest, longest) : tuple of int
        ``shortest > longest`` when no integer fits (the branch is too short).
    """
    low, high = run_fraction
    # the 1e-9 keeps 0.1 * 30 = 3.0000000000000004 from rounding up to 4
    return max(1, math.ceil(low * n_skeleton - 1e-9)), math.floor(high * n_skeleton + 1e-9)


def _check_tree(mask: np.ndarray, tree) -> None:
    """The tree must come from parse_tree on this mask (same grid, its mask inside ours)."""
    if tree.mask.shape != mask.shape:
        raise InputError(
            f"tree: parsed on shape {tree.mask.shape}, but the mask has shape {mask.shape}"
        )
    box = bounding_box(tree.mask)
    if box is None:
        raise InputError("tree: its mask is empty")
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    outside = tree.mask[box] & ~mask[box]
    if outside.any():
        # parse_tree fills holes: its voxels outside the mask are fine only if they are holes,
        # i.e. not 6-connected through the background to the border of the padded box
        background, _ = ndi.label(~mask[box])
        border = np.unique(
            np.concatenate([np.moveaxis(background, a, 0)[[0, -1]].ravel() for a in range(3)])
        )
        if np.isin(background[outside], border[border > 0]).any():
            raise InputError("tree: its mask has voxels outside the given mask; parse this mask")


def _voxels_by_value(values: np.ndarray, n_values: int) -> list[np.ndarray]:
    """For v = 1..n_values, the (n, 3) coordinates of the voxels holding v (index v - 1)."""
    box = bounding_box(values)
    if box is None:
        return [np.zeros((0, 3), dtype=np.int64) for _ in range(n_values)]
    sub = values[box]
    flat = np.flatnonzero(sub)
    held = sub.ravel()[flat]
    order = np.argsort(held, kind="stable")
    flat, held = flat[order], held[order]
    bounds = np.searchsorted(held, np.arange(1, n_values + 2))
    offset = np.array([s.start for s in box], dtype=np.int64)
    coords = np.stack(np.unravel_index(flat, sub.shape), axis=1).astype(np.int64) + offset
    return [coords[bounds[v] : bounds[v + 1]] for v in range(n_values)]


def simulate_breakage(
    mask: np.ndarray,
    tree,
    rng,
    branch_fraction: float = 0.5,
    run_fraction: tuple[float, float] = (0.1, 0.3),
    *,
    min_generation: int = MIN_PERIPHERAL_GENERATION,
    name: str = "mask",
) -> Breakage:
    """Cut gaps into peripheral branches of a ground-truth airway (paper Sec. 2.3).

    Parameters
    ----------
    mask : ndarray, shape (I, J, K), bool or 0/1 integers
        Ground-truth airway mask. Not modified.
    tree : deeptree.tree.AirwayTree
        ``parse_tree(mask, spacing)``.
    rng : numpy.random.Generator or int
        Randomness (an int is a seed); the same seed gives the same bytes.
    branch_fraction : float
        Share of the peripheral branches to cut (paper: 0.5), rounded to the nearest count.
    run_fraction : (float, float)
        The removed run has between ``low * n`` and ``high * n`` skeleton voxels (rounded
        inwards, at least 1) for a branch of ``n`` skeleton voxels (paper: 10%-30%).
    min_generation : int
        Peripheral branches are leaves of at least this generation (docs/design.md: 3).
    name : str
        What to call the mask in errors.

    Returns
    -------
    Breakage
        Broken mask, ``Y^B`` and one :class:`Gap` record per cut, each disconnecting a
        distal piece of its branch from the rest (26-connectivity).

    Raises
    ------
    InputError
        Mask not binary 3D or empty; tree from another grid or mask; fractions out of range;
        ``rng`` neither a Generator nor an int.

    Notes
    -----
    The run length is drawn uniformly among the allowed integers, then its start uniformly
    among the positions that keep at least one skeleton voxel of the branch on each side. A
    branch where no such run exists is rejected like a bridged one (module notes).
    """
    mask = as_binary_mask(mask, name)
    _check_tree(mask, tree)
    rng = _as_generator(rng)
    branch_fraction, low, high = check_fractions(branch_fraction, run_fraction)
    shape = mask.shape

    peripheral = peripheral_branches(tree, min_generation)
    n_target = int(math.floor(branch_fraction * len(peripheral) + 0.5))
    order = [int(b) for b in rng.permutation(np.asarray(peripheral, dtype=np.int64))]

    # Draw a run for every candidate in the random order (the draws do not depend on which
    # candidates get rejected later), and write run (2c + 1) and distal part (2c + 2) of
    # candidate c on the skeleton, for one propagation to the volume.
    plans = []
    skeleton_values = np.zeros(shape, dtype=np.int32)
    for c, b in enumerate(order):
        path = tree.branch_path(b)
        n = len(path)
        shortest, longest = run_length_range(n, (low, high))
        if shortest > longest or n < shortest + 2:
            plans.append(None)
            continue
        length = int(rng.integers(shortest, longest + 1))
        start = int(rng.integers(1, n - length))  # 1 .. n - length - 1
        plans.append((path, start, start + length))
        skeleton_values[tuple(path[start : start + length].T)] = 2 * c + 1
        skeleton_values[tuple(path[start + length :].T)] = 2 * c + 2
    regions = _voxels_by_value(tree.propagate(skeleton_values), 2 * len(order))
    del skeleton_values

    # keep the memory layout of the input (NIfTI data are often Fortran-ordered): a
    # C-ordered copy of a CT-sized Fortran array costs seconds
    broken = mask.copy(order="K")
    label = np.zeros_like(broken)
    accepted: list[tuple] = []
    n_rejected = 0
    for c, b in enumerate(order):
        if len(accepted) == n_target:
            break
        cut = _cut(broken, mask, plans[c], regions[2 * c], regions[2 * c + 1], shape)
        if cut is None:
            n_rejected += 1
            continue
        box, gap, n_widened, proximal_voxel, distal_voxel, distal_left = cut
        broken[box] &= ~gap
        label[box] |= gap
        accepted.append(
            (b, plans[c], box, gap, n_widened, proximal_voxel, distal_voxel, distal_left)
        )

    components, n_components = label_components(broken)
    gaps = []
    for b, (path, start, stop), box, gap, n_widened, proximal, distal, distal_left in accepted:
        offset = np.array([s.start for s in box], dtype=np.int64)
        gaps.append(
            Gap(
                branch=b,
                generation=tree.branches[b].generation,
                n_skeleton=len(path),
                run_start=start,
                run_stop=stop,
                run=path[start:stop].copy(),
                voxels=np.argwhere(gap) + offset,
                n_widened=n_widened,
                centre=tuple(int(x) for x in path[(start + stop - 1) // 2]),
                proximal_voxel=proximal,
                distal_voxel=distal,
                proximal_component=int(components[proximal]),
                distal_components=tuple(
                    int(x) for x in np.unique(components[box][distal_left]) if x > 0
                ),
            )
        )
    return Breakage(
        broken=broken,
        label=label,
        gaps=gaps,
        n_peripheral=len(peripheral),
        n_target=n_target,
        n_rejected=n_rejected,
        n_components=n_components,
    )


def _cut(broken, mask, plan, run_voxels, distal_voxels, shape):
    """The gap of one planned run, or None if it cannot disconnect its distal piece.

    Returns (box, gap mask inside box, number of contact voxels added, proximal and distal
    anchor voxels, distal piece inside box).
    """
    if plan is None or len(run_voxels) == 0 or len(distal_voxels) == 0:
        return None
    path, start, stop = plan
    points = np.concatenate([run_voxels, distal_voxels])
    points_box = tuple(
        slice(int(lo), int(hi) + 1)
        for lo, hi in zip(points.min(axis=0), points.max(axis=0), strict=True)
    )
    box = grow_box(points_box, _CROP_MARGIN, shape)
    offset = np.array([s.start for s in box], dtype=np.int64)

    def local(points):
        out = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
        out[tuple((points - offset).T)] = True
        return out

    here = broken[box]
    run = local(run_voxels) & mask[box]
    distal = local(distal_voxels) & here & ~run
    others = here & ~run & ~distal
    # distal voxels that touch the rest of the mask: a bridge around or through the gap
    contacts = distal & ndi.binary_dilation(others, CONNECTIVITY_26)
    if contacts.any():
        near_gap = ndi.binary_dilation(run, CONNECTIVITY_26, iterations=BRIDGE_REACH)
        if (contacts & ~near_gap).any():
            return None  # touches something away from the gap: cutting here would not do
    gap = run | contacts
    # anchors: the branch's skeleton voxels nearest to the gap on each side that are left (a
    # skeleton voxel may lie in a hole that parse_tree filled, outside the GT)
    proximal = next((v for v in path[start - 1 :: -1] if broken[tuple(v)]), None)
    distal_left = distal & ~contacts
    distal_anchor = next((v for v in path[stop:] if distal_left[tuple(v - offset)]), None)
    if proximal is None or distal_anchor is None:
        return None
    return (
        box,
        gap,
        int(contacts.sum()),
        _as_tuple(proximal),
        _as_tuple(distal_anchor),
        distal_left,
    )


def _as_tuple(voxel) -> tuple[int, int, int]:
    return tuple(int(x) for x in voxel)  # type: ignore[return-value]


def crop_around(centre, size, shape) -> tuple[slice, slice, slice]:
    """A box of ``size`` voxels per axis centred on a voxel, shifted to stay in the volume.

    Parameters
    ----------
    centre : 3 ints
        Voxel (i, j, k), e.g. :attr:`Gap.centre` or a breakage centre.
    size : int or 3 ints
        Box size in voxels (stage 2 of the paper: 64); clipped to the volume's shape.
    shape : 3 ints
        Shape of the volume.

    Returns
    -------
    tuple of 3 slice
        ``volume[box]`` has shape ``min(size, shape)`` on every axis.
    """
    sizes = np.broadcast_to(np.asarray(size, dtype=np.int64), (3,))
    box = []
    for c, n, s in zip(centre, shape, sizes, strict=True):
        s = int(min(s, n))
        start = int(min(max(int(c) - s // 2, 0), n - s))
        box.append(slice(start, start + s))
    return tuple(box)  # type: ignore[return-value]
