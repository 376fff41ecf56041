"""Reference reimplementation of the ATM'22 airway tree parsing, for cross-checking only.

NOT package code. This follows, step by step and on the whole volume, the algorithm of
``evaluation/tree_parse.py`` in the ATM'22 challenge repository
(https://github.com/Puzzled-Hui/ATM-22-Related-Work, also mirrored as
EndoluminalSurgicalVision-IMR/ATM-22-Related-Work; by Minghui Zhang, Hao Zheng et al.,
Institute of Medical Robotics, Shanghai Jiao Tong University), which the challenge's
evaluation (``evaluation/evaluation_atm_22.py``) uses to count branches. It was written
from a reading of that file, not copied, to answer one question: does
:func:`deeptree.tree.parse_tree` count the same branches as the challenge on the same mask?

Steps, as in the original (function names in brackets):

1. largest 6-connected component, then ``binary_fill_holes`` [large_connected_domain];
2. 3D thinning (Lee 1994; ``skeletonize_3d`` then, ``skeletonize`` in current skimage);
3. a skeleton voxel whose 3x3x3 sum (itself included) exceeds 3 is a junction and is
   removed; 26-connected pieces of fewer than 5 voxels are dropped [skeleton_parsing];
4. every mask voxel takes the piece of its nearest remaining skeleton voxel (EDT in
   voxel units, no spacing) [tree_parsing_func];
5. trachea = the largest region [loc_trachea]; region i is adjacent to the labels found
   on its 6-neighbour dilation ring, computed in its bounding box + 8 voxels
   [adjacent_map, find_bb_3D];
6. breadth-first parents/children/generations [parent_children_map]; while some region
   has several parents or some region has exactly one child, fuse the extra parents into
   the first, merge each only child into its parent, renumber the labels and start again
   from step 5 [whether_refinement, tree_refinement].

The original's per-region full-volume loops are kept on purpose, so that its running
time is representative. Run it as a script::

    .venv/bin/python benchmarks/atm22_reference.py data/samples/atm_001/airway.nii.gz
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy import ndimage
from skimage import measure
from skimage.morphology import skeletonize


def largest_component_filled(label: np.ndarray) -> np.ndarray:
    cd, num = measure.label(label, return_num=True, connectivity=1)
    volume = np.array([(cd == k + 1).sum() for k in range(num)])
    largest = (cd == int(np.argsort(volume)[-1]) + 1).astype(np.uint8)
    return ndimage.binary_fill_holes(largest).astype(np.uint8)


def skeleton_pieces(skeleton: np.ndarray):
    neighbours = ndimage.convolve(
        skeleton, ndimage.generate_binary_structure(3, 3).astype(np.uint8)
    )
    parse = skeleton.copy()
    parse[neighbours * skeleton > 3] = 0
    full = ndimage.generate_binary_structure(3, 3)
    cd, num = ndimage.label(parse, structure=full)
    for i in range(num):
        if (cd == i + 1).sum() < 5:
            parse[cd == i + 1] = 0
    cd, num = ndimage.label(parse, structure=full)
    return parse, cd, num


def propagate(parse: np.ndarray, label: np.ndarray, cd: np.ndarray) -> np.ndarray:
    inds = ndimage.distance_transform_edt(1 - parse, return_distances=False, return_indices=True)
    return (cd[inds[0], inds[1], inds[2]] * label).astype(np.int32)


def trachea_of(tree_parsing: np.ndarray, num: int) -> int:
    volume = np.array([(tree_parsing == k + 1).sum() for k in range(num)])
    return int(np.argsort(volume)[-1]) + 1


def box_with_margin(region: np.ndarray, margin: int = 8):
    """Bounding box of ``region`` grown to its size + ``margin``, shifted inside the volume
    (the original's find_bb_3D)."""
    slices = []
    for axis in range(3):
        hit = np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, length = hit[0], hit[-1] - hit[0] + 1
        size = min(length + margin, region.shape[axis])
        start = lo - (size - length) // 2
        start = min(max(start, 0), region.shape[axis] - size)
        slices.append(slice(int(start), int(start + size)))
    return tuple(slices)


def adjacency(tree_parsing: np.ndarray, num: int) -> np.ndarray:
    matrix = np.zeros((num, num), dtype=np.uint8)
    ring_structure = ndimage.generate_binary_structure(3, 1)
    for i in range(num):
        current = tree_parsing == i + 1
        box = box_with_margin(current)
        current = current[box]
        ring = ndimage.binary_dilation(current, structure=ring_structure) & ~current
        found = np.unique(tree_parsing[box][ring])
        for j in found[found > 0]:
            matrix[i, j - 1] = 1
    return matrix


def parents_children(matrix: np.ndarray, trachea: int, num: int):
    parent = np.zeros((num, num), dtype=np.uint8)
    children = np.zeros((num, num), dtype=np.uint8)
    generation = np.zeros(num, dtype=np.int32)
    processing = [trachea - 1]
    parent[trachea - 1, trachea - 1] = 1
    while processing:
        iteration, processing = processing, []
        while iteration:
            cur = iteration.pop()
            for child in np.flatnonzero(matrix[cur]):
                if parent[child].sum() == 0:
                    parent[child, cur] = 1
                    children[cur, child] = 1
                    generation[child] = generation[cur] + 1
                    processing.append(child)
                elif generation[cur] + 1 == generation[child]:
                    parent[child, cur] = 1
                    children[cur, child] = 1
    return parent, children, generation


def refine(parent, children, tree_parsing: np.ndarray, num: int):
    """One refinement pass; returns (tree_parsing, num, changed)."""
    several = np.flatnonzero(parent.sum(axis=1) > 1)
    only_child = np.flatnonzero(children.sum(axis=1) == 1)
    deleted: list[int] = []
    for w in several:
        ps = np.flatnonzero(parent[w])
        for p in ps[1:]:
            tree_parsing[tree_parsing == p + 1] = ps[0] + 1
            if p not in deleted:
                deleted.append(int(p))
    for u in only_child:
        if u in deleted:
            continue
        child = int(np.flatnonzero(children[u] == 1)[0])
        if child not in deleted:
            tree_parsing[tree_parsing == child + 1] = u + 1
            deleted.append(child)
    if not deleted:
        return tree_parsing, num, False
    for i in range(num):
        if i not in deleted:
            move = int(np.sum(np.array(deleted) < i))
            tree_parsing[tree_parsing == i + 1] = i + 1 - move
    return tree_parsing, num - len(deleted), True


def atm22_parse(mask: np.ndarray):
    """Parse a binary mask the ATM'22 way.

    Returns
    -------
    tree_parsing : ndarray of int32, shape (I, J, K)
        Branch labels 1..num on the mask.
    skeleton : ndarray of uint8
        Full skeleton of the parsed mask.
    num : int
        Number of branches.
    generation : ndarray of int32, shape (num,)
        Generation of each branch (index = label - 1).
    """
    label = largest_component_filled((mask > 0).astype(np.uint8))
    skeleton = skeletonize(label).astype(np.uint8)
    parse, cd, num = skeleton_pieces(skeleton)
    tree_parsing = propagate(parse, label, cd)
    trachea = trachea_of(tree_parsing, num)
    matrix = adjacency(tree_parsing, num)
    parent, children, generation = parents_children(matrix, trachea, num)
    changed = True
    while changed:
        tree_parsing, num, changed = refine(parent, children, tree_parsing, num)
        if changed:
            trachea = trachea_of(tree_parsing, num)
            matrix = adjacency(tree_parsing, num)
            parent, children, generation = parents_children(matrix, trachea, num)
    return tree_parsing, skeleton, num, generation


def crop_to_mask(mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """The mask's bounding box + ``margin`` voxels (zeros outside the volume): the parse
    of the crop equals the parse of the whole volume, at a fraction of the memory."""
    nz = np.argwhere(mask)
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    crop = mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    return np.pad(crop, margin)


if __name__ == "__main__":
    from deeptree.io import read_nifti

    volume = read_nifti(sys.argv[1])
    mask = crop_to_mask(volume.array > 0)
    start = time.perf_counter()
    tree_parsing, skeleton, num, generation = atm22_parse(mask)
    seconds = time.perf_counter() - start
    on_skeleton = np.bincount((tree_parsing * skeleton).ravel())[1:]
    print(
        f"ATM'22 reference: {num} branches, {np.count_nonzero(on_skeleton)} labels on the skeleton, "
        f"{seconds:.1f} s on the bounding-box crop {mask.shape}"
    )
    print("generations:", np.bincount(generation).tolist())
