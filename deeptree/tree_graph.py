"""Graphs of a tree parse (:func:`deeptree.tree.parse_tree`): the segment graph, on which
the ATM'22 refinement runs and the root is found (steps 5-6), and the graph of skeleton
voxels that orders each branch and measures its length (step 7).

The two root rules (``root="anatomical"`` and ``root="atm22"``) are described in
:mod:`deeptree.tree`; here they are :func:`build_tree` with and without a cranial segment.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

#: ``root="anatomical"``: a split below the cranial end is the main carina when its
#: second-largest child subtree holds at least this share of the airway volume (voxels)
#: below the split. The smaller main bronchus's tree holds 31-48% of it on the phantoms and
#: atm_001 (docs/design.md); a bud well under 1%, a tracheal (upper-lobe) bronchus about a
#: tenth.
CARINA_MIN_SHARE = 0.2

#: The 26 neighbour offsets of a voxel.
NEIGHBOUR_OFFSETS_26 = np.array(
    [
        (a, b, c)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
        for c in (-1, 0, 1)
        if (a, b, c) != (0, 0, 0)
    ]
)


def touching_pairs(regions: np.ndarray) -> np.ndarray:
    """Unique pairs (a, b), a < b, of nonzero labels that touch face-to-face (6-connectivity)."""
    found = []
    for axis in range(3):
        a = np.moveaxis(regions, axis, 0)[:-1]
        b = np.moveaxis(regions, axis, 0)[1:]
        hit = (a != b) & (a > 0) & (b > 0)
        pa, pb = a[hit], b[hit]
        found.append(np.stack([np.minimum(pa, pb), np.maximum(pa, pb)], axis=1))
    pairs = np.concatenate(found, axis=0)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def build_tree(
    n_segments: int, pairs: np.ndarray, volumes: np.ndarray, cranial_segment: int | None = None
) -> tuple[np.ndarray, dict[int, int], dict[int, int]]:
    """ATM'22 steps 5-6 on the segment graph (``parent_children_map`` + ``tree_refinement``).

    Repeats until a pass changes nothing: trachea = the group with the largest region
    (``cranial_segment`` None, ATM'22) or the group holding ``cranial_segment``
    (anatomical); breadth-first generations from it; the parents of a group are its
    neighbours one generation up; a group with several parents (a loop) has them fused into
    the lowest-numbered one; then a group with exactly one child absorbs that child; then
    (anatomical, once the tree is clean) a trachea whose split is not the main carina
    (:data:`CARINA_MIN_SHARE`) absorbs its largest child subtree's top group. Anatomical
    generations: main bronchi 1, other children of the trachea 2, one more per level below.

    Returns
    -------
    seg_to_branch : ndarray of int32, shape (n_segments + 1,)
        Final branch id of each segment (index 0 -> 0). Ids are breadth-first, trachea 1.
    parents : dict
        branch id -> parent id (0 for the trachea).
    generation : dict
        branch id -> generation.
    """
    group = np.arange(n_segments + 1)

    def find(x: int) -> int:
        root = x
        while group[root] != root:
            root = group[root]
        while group[x] != root:  # path compression
            group[x], x = root, group[x]
        return root

    while True:
        roots = np.array([find(s) for s in range(n_segments + 1)])
        neighbours: dict[int, set[int]] = {int(r): set() for r in np.unique(roots[1:])}
        for a, b in roots[pairs] if len(pairs) else []:
            if a != b:
                neighbours[int(a)].add(int(b))
                neighbours[int(b)].add(int(a))
        group_volume = np.bincount(roots[1:], weights=volumes[1:], minlength=n_segments + 1)
        if cranial_segment is None:
            # ATM'22 loc_trachea: the largest region (ties: the lowest segment number)
            trachea = int(np.argmax(group_volume))
        else:
            trachea = int(roots[cranial_segment])
        gen = _bfs_generations(trachea, neighbours)
        parents = {v: sorted(u for u in neighbours[v] if gen[u] == gen[v] - 1) for v in neighbours}
        children: dict[int, list[int]] = {v: [] for v in neighbours}
        for v, ps in parents.items():
            for u in ps:
                children[u].append(v)
        several_parents = sorted(v for v, ps in parents.items() if len(ps) > 1)
        only_child = sorted(u for u, cs in children.items() if len(cs) == 1)
        if not several_parents and not only_child:
            if cranial_segment is None:
                break
            subtree = _subtree_volumes(children, gen, group_volume)
            below = _trachea_continues_into(children[trachea], subtree)
            if below is None:
                break
            group[below] = trachea  # both are group roots: the trachea runs on
            continue
        merged: set[int] = set()
        for v in several_parents:  # fuse the parents of one child (loops)
            keep, *others = parents[v]
            for p in others:
                if find(p) != find(keep):
                    group[find(p)] = find(keep)
                merged.add(p)
        for u in only_child:  # merge an only child into its parent
            child = children[u][0]
            if u in merged or child in merged:
                continue  # the next pass sees the new graph
            if find(child) != find(u):
                group[find(child)] = find(u)
            merged.add(child)

    if cranial_segment is not None:
        gen = _anatomical_generations(
            trachea, children, _subtree_volumes(children, gen, group_volume)
        )
    # number the groups breadth-first from the trachea, children by lowest segment number
    new_id = {trachea: 1}
    branch_parent = {1: 0}
    branch_gen = {1: 0}
    queue = deque([trachea])
    while queue:
        u = queue.popleft()
        for v in sorted(children[u]):
            new_id[v] = len(new_id) + 1
            branch_parent[new_id[v]] = new_id[u]
            branch_gen[new_id[v]] = gen[v]
            queue.append(v)
    seg_to_branch = np.zeros(n_segments + 1, dtype=np.int32)
    for s in range(1, n_segments + 1):
        seg_to_branch[s] = new_id[int(roots[s])]
    return seg_to_branch, branch_parent, branch_gen


def _subtree_volumes(
    children: dict[int, list[int]], gen: dict[int, int], volume
) -> dict[int, float]:
    """Region size of each group plus all groups below it (a tree: one parent each)."""
    total = {v: float(volume[v]) for v in children}
    for v in sorted(children, key=lambda u: -gen[u]):
        for c in children[v]:
            total[v] += total[c]
    return total


def _trachea_continues_into(below: list[int], subtree: dict[int, float]) -> int | None:
    """The child the trachea runs on into, or None when this split is the main carina (or
    there is no split): the second-largest child subtree holds >= CARINA_MIN_SHARE."""
    if len(below) < 2:
        return None
    sizes = sorted((subtree[c], -c) for c in below)  # ties: the lowest id is the larger
    if sizes[-2][0] >= CARINA_MIN_SHARE * sum(size for size, _ in sizes):
        return None
    return -sizes[-1][1]


def _anatomical_generations(
    trachea: int, children: dict[int, list[int]], subtree: dict[int, float]
) -> dict[int, int]:
    """Trachea 0; its two largest child subtrees (the main bronchi) 1; its other children
    (buds, a tracheal bronchus) 2; one more per level below."""
    ranked = sorted(children[trachea], key=lambda c: (-subtree[c], c))
    gen = {trachea: 0}
    for rank, c in enumerate(ranked):
        gen[c] = 1 if rank < 2 else 2
    queue = deque(ranked)
    while queue:
        u = queue.popleft()
        for v in children[u]:
            gen[v] = gen[u] + 1
            queue.append(v)
    return gen


def _bfs_generations(root: int, neighbours: dict[int, set[int]]) -> dict[int, int]:
    """Breadth-first distance from ``root`` of every node of a connected graph."""
    gen = {root: 0}
    queue = deque([root])
    while queue:
        u = queue.popleft()
        for v in neighbours[u]:
            if v not in gen:
                gen[v] = gen[u] + 1
                queue.append(v)
    if len(gen) != len(neighbours):  # cannot happen for a 6-connected mask
        raise RuntimeError("tree parsing: the branch graph is not connected")
    return gen


def order_branches(
    skeleton: np.ndarray,
    skeleton_labels: np.ndarray,
    branch_labels: np.ndarray,
    parents: dict[int, int],
    children: dict[int, list[int]],
    spacing: tuple[float, float, float],
    cranial: tuple[int, int] | None = None,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Order each branch's skeleton from proximal to distal and measure its length.

    The skeleton voxels lying in a branch's region (its labelled voxels plus the junction
    voxels and dropped pieces around them) form a 26-neighbour graph with edges weighted
    by their length in mm. Distances run from the region's voxel nearest to the parent's
    skeleton (for the trachea: from its most cranial voxel when ``cranial`` (axis, sense)
    is given, else from the end farthest from its children). Pieces of the
    region not connected to that start (possible after loops were fused) are joined by
    their shortest Euclidean gap.

    Returns
    -------
    paths : dict of int to ndarray of int64, shape (n, 3)
        Crop coordinates of each branch's labelled skeleton voxels, proximal first.
    lengths : ndarray of float, shape (n_branches + 1,)
        Largest distance (mm) reached in each branch's region.
    """
    voxels = np.argwhere(skeleton)
    region = branch_labels[tuple(voxels.T)]
    order = np.argsort(region, kind="stable")  # one contiguous block per branch
    voxels, region = voxels[order], region[order]
    points = voxels * np.asarray(spacing)
    graph = _neighbour_graph(voxels, region, skeleton.shape, spacing)
    n_branches = len(parents)
    starts = np.searchsorted(region, np.arange(n_branches + 2))
    block = {b: slice(starts[b], starts[b + 1]) for b in range(1, n_branches + 1)}

    def distances_from(b: int, source: int) -> np.ndarray:
        sub = graph[block[b], block[b]]
        return _bridged_geodesic(sub, points[block[b]], source)

    paths: dict[int, np.ndarray] = {}
    lengths = np.zeros(n_branches + 1)
    for b in range(1, n_branches + 1):
        pts = points[block[b]]
        if parents[b]:
            near_parent = cKDTree(points[block[parents[b]]]).query(pts)[0]
            dist = distances_from(b, int(np.argmin(near_parent)))
        elif cranial is not None:
            axis, sign = cranial
            dist = distances_from(b, int(np.argmax(sign * voxels[block[b], axis])))
        else:
            if children[b]:
                near_child = cKDTree(np.concatenate([points[block[c]] for c in children[b]]))
                first = int(np.argmin(near_child.query(pts)[0]))
            else:
                first = 0
            far_end = int(np.argmax(distances_from(b, first)))
            dist = distances_from(b, far_end)
        lengths[b] = dist.max()
        own = skeleton_labels[tuple(voxels[block[b]].T)] == b
        rank = np.argsort(dist[own], kind="stable")
        paths[b] = voxels[block[b]][own][rank]
    return paths, lengths


def _neighbour_graph(voxels, region, shape, spacing) -> sparse.csr_matrix:
    """Sparse graph of 26-neighbouring skeleton voxels of the same region, weights in mm."""
    flat = np.ravel_multi_index(voxels.T, shape)
    by_flat = np.argsort(flat)
    flat_sorted = flat[by_flat]
    rows, cols, weights = [], [], []
    for offset in NEIGHBOUR_OFFSETS_26[:13]:  # one of each +-offset pair
        target = np.ravel_multi_index((voxels + offset).T, shape)
        pos = np.clip(np.searchsorted(flat_sorted, target), 0, len(flat) - 1)
        hit = flat_sorted[pos] == target
        src, dst = np.flatnonzero(hit), by_flat[pos[hit]]
        same = region[src] == region[dst]
        src, dst = src[same], dst[same]
        rows.append(src)
        cols.append(dst)
        weights.append(np.full(len(src), float(np.linalg.norm(offset * np.asarray(spacing)))))
    rows, cols, weights = (np.concatenate(x) for x in (rows, cols, weights))
    n = len(voxels)
    graph = sparse.coo_matrix((weights, (rows, cols)), shape=(n, n))
    return (graph + graph.T).tocsr()


def _bridged_geodesic(graph: sparse.csr_matrix, points: np.ndarray, source: int) -> np.ndarray:
    """Geodesic distances from ``source``; unreachable pieces are reached by their shortest
    Euclidean gap from the part already reached (so every voxel gets a finite distance)."""
    dist = csgraph.dijkstra(graph, indices=source)
    while not np.isfinite(dist).all():
        reached = np.flatnonzero(np.isfinite(dist))
        missing = np.flatnonzero(~np.isfinite(dist))
        gap, which = cKDTree(points[reached]).query(points[missing])
        k = int(np.argmin(gap))
        start = missing[k]
        more = csgraph.dijkstra(graph, indices=start) + dist[reached[which[k]]] + gap[k]
        dist = np.where(np.isfinite(dist), dist, more)
    return dist
