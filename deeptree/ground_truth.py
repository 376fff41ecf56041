"""The ground truth of the airway metrics, parsed once per case (:func:`prepare_ground_truth`).

A :class:`GroundTruth` holds the GT mask as given, its ATM'22 parse (the ``"atm22"``
protocol) and the same parse with the anatomical root (the ``"paper"`` protocol), and the
arrays :func:`deeptree.metrics.airway_metrics` reads from them. See :mod:`deeptree.metrics`
for the protocols and :mod:`deeptree.tree` for the two root rules.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deeptree.config import AnatomyConfig
from deeptree.io import InputError, check_spacing
from deeptree.masks import as_binary_mask, bounding_box
from deeptree.tree import AirwayTree, parse_tree

#: Generations 0 (trachea) and 1 (main bronchi) are the central airways the paper excludes.
CENTRAL_MAX_GENERATION = AnatomyConfig().central_max_generation

#: Relative tolerance when comparing two spacings (mm).
SPACING_RTOL = 1e-4


@dataclass(frozen=True)
class GroundTruth:
    """A ground-truth airway mask with everything the metrics read from its parse.

    Build it with :func:`prepare_ground_truth` (once per case) and pass it as ``gt`` to
    :func:`deeptree.metrics.airway_metrics` to evaluate many predictions of the same case cheaply.

    Attributes
    ----------
    mask : ndarray of bool, shape (I, J, K)
        The GT as given, "raw" (before the parse keeps its largest component and fills
        its holes); the caller's own array when that was already bool (not copied: do not
        modify it meanwhile). The paper protocol scores precision, DSC, sensitivity and
        FPR against it.
    tree : AirwayTree
        Its parse for the ``"atm22"`` protocol: ``parse_tree(mask, spacing, root="atm22",
        nearest_in_voxels=True)``, the official ATM'22 partition (lengths and diameters
        still in mm). ``tree.mask`` (bool, (I, J, K)) is the processed GT, the largest
        6-connected component of ``mask`` with its holes filled: :attr:`parsed_mask`.
    anatomical_tree : AirwayTree
        The same parse with the anatomical root (``tree.with_root("anatomical", affine)``),
        for the ``"paper"`` protocol; shares ``mask`` and ``skeleton`` with ``tree``.
    spacing : tuple of 3 float
        Voxel size in mm of the GT (checked against the predictions').
    n_voxels : int
        Number of raw GT voxels (``mask.sum()``).
    parsed_n_voxels : int
        Number of processed GT voxels (``tree.mask.sum()``); the ``"atm22"`` protocol
        scores precision, DSC, sensitivity and FPR against this mask.
    skeleton_coords : ndarray of int64, shape (S, 3)
        Voxel coordinates of the full GT skeleton (``tree.skeleton``).
    skeleton_branch : ndarray of int64, shape (S,)
        Branch id of each skeleton voxel (``tree.branch_labels`` there).
    branch_ids : ndarray of int64, shape (B,)
        The ids of ``tree.branches``, sorted.
    generation_of : ndarray of int64, shape (max id + 1,)
        Generation of each branch id; -1 for an id that is not a branch (and for 0).
    anatomical_skeleton_branch, anatomical_branch_ids, anatomical_generation_of : ndarray
        The same three for ``anatomical_tree`` (shapes (S,), (B',), (max id' + 1,)).
    central_coords : ndarray of int64, shape (C, 3)
        Voxels of the central region: parsed-mask voxels whose branch of
        ``anatomical_tree`` has generation <= :data:`CENTRAL_MAX_GENERATION`.
    central_in_gt : ndarray of bool, shape (C,)
        Whether each central voxel is in ``mask`` (a filled hole of the parse is not).
    """

    mask: np.ndarray
    tree: AirwayTree
    anatomical_tree: AirwayTree
    spacing: tuple[float, float, float]
    n_voxels: int
    parsed_n_voxels: int
    skeleton_coords: np.ndarray
    skeleton_branch: np.ndarray
    branch_ids: np.ndarray
    generation_of: np.ndarray
    anatomical_skeleton_branch: np.ndarray
    anatomical_branch_ids: np.ndarray
    anatomical_generation_of: np.ndarray
    central_coords: np.ndarray
    central_in_gt: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (I, J, K) of the volume."""
        return self.mask.shape  # type: ignore[return-value]

    @property
    def parsed_mask(self) -> np.ndarray:
        """bool (I, J, K): the processed GT (largest 6-connected component, holes filled)."""
        return self.tree.mask

    @property
    def n_components_dropped(self) -> int:
        """Number of 6-connected GT components the parse dropped (0 for a one-piece GT)."""
        return int(self.tree.n_components_dropped)

    @property
    def skeleton_generation(self) -> np.ndarray:
        """int64 (S,): generation of each skeleton voxel's branch (-1 if unlabelled)."""
        return self.generation_of[self.skeleton_branch]

    def branches_for(self, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(skeleton_branch, branch_ids, generation_of) of the parse a protocol uses:
        the anatomical root for ``"paper"``, the ATM'22 root for ``"atm22"``."""
        if protocol == "paper":
            return (
                self.anatomical_skeleton_branch,
                self.anatomical_branch_ids,
                self.anatomical_generation_of,
            )
        return self.skeleton_branch, self.branch_ids, self.generation_of


def prepare_ground_truth(
    gt: np.ndarray,
    spacing: Sequence[float],
    gt_tree: AirwayTree | None = None,
    *,
    affine: np.ndarray | None = None,
    name: str = "ground truth",
) -> GroundTruth:
    """Parse a ground-truth airway mask once, for any number of evaluations.

    Parameters
    ----------
    gt : ndarray, shape (I, J, K), bool or 0/1 integers/floats
        Binary GT airway mask. Not modified.
    spacing : sequence of 3 float
        Voxel size in mm.
    gt_tree : AirwayTree, optional
        Its parse if already computed; parsed here if None. For the official ATM'22 numbers
        it must be ``parse_tree(gt, spacing, nearest_in_voxels=True)``; a tree that says it
        was parsed in mm (``nearest_in_voxels`` False) is accepted with a
        :class:`UserWarning` (its branches can differ from ATM'22's around junctions).
        Either root: the other is derived with :meth:`AirwayTree.with_root`.
    affine : ndarray, shape (4, 4), optional
        Voxel-to-world (RAS+) transform of the GT: which end is cranial for the anatomical
        root of the paper protocol. None: that of ``gt_tree`` if given, else +k cranial.
    name : str
        What to call the GT in errors (e.g. its file name).

    Returns
    -------
    GroundTruth

    Raises
    ------
    InputError
        Non-binary or empty GT, bad spacing, a ``gt_tree`` whose shape or spacing does not
        match, or a GT whose parse has no branch.
    """
    spacing = check_spacing(spacing, f"{name} spacing")
    mask = as_binary_mask(gt, name, allow_empty=True)
    if not mask.any():
        raise InputError(f"{name}: the ground-truth mask is empty (no foreground voxel)")
    if gt_tree is None:
        gt_tree = parse_tree(
            mask, spacing, root="atm22", affine=affine, name=name, nearest_in_voxels=True
        )
    else:
        if gt_tree.mask.shape != mask.shape:
            raise InputError(
                f"{name}: the given GT parse has shape {gt_tree.mask.shape}, the mask {mask.shape}"
            )
        if not np.allclose(gt_tree.spacing, spacing, rtol=SPACING_RTOL, atol=0):
            raise InputError(
                f"{name}: the given GT parse was made with spacing {tuple(gt_tree.spacing)} mm, "
                f"not {spacing} mm"
            )
        # Older trees do not say how they were parsed; a tree that says "in mm" gets a warning.
        if getattr(gt_tree, "nearest_in_voxels", None) is False:
            warnings.warn(
                f"{name}: the GT parse assigned voxels to branches in mm; ATM'22 does it in "
                "voxel units, so BD can differ from the official figure. Parse with "
                "parse_tree(gt, spacing, nearest_in_voxels=True) or let prepare_ground_truth "
                "parse it.",
                UserWarning,
                stacklevel=2,
            )
    if not gt_tree.branches:
        raise InputError(f"{name}: the parsed ground truth has no branch (too small to evaluate)")
    anatomical_tree = gt_tree.with_root("anatomical", affine)
    gt_tree = gt_tree.with_root("atm22")

    # Work inside the bounding box of the parsed mask: the skeleton and the branch region
    # lie there, and a crop is ~10x smaller than a CT-sized volume.
    box = bounding_box(gt_tree.mask)
    assert box is not None  # a tree with branches has a non-empty mask
    lo = np.array([s.start for s in box], dtype=np.int64)
    skeleton_coords = np.argwhere(gt_tree.skeleton[box]) + lo
    skeleton_branch, branch_ids, generation_of = _branch_arrays(gt_tree, skeleton_coords)
    anatomical = _branch_arrays(anatomical_tree, skeleton_coords)

    central_ids = [
        i for i, b in anatomical_tree.branches.items() if b.generation <= CENTRAL_MAX_GENERATION
    ]
    central_coords = np.argwhere(np.isin(anatomical_tree.branch_labels[box], central_ids)) + lo
    central_in_gt = mask[tuple(central_coords.T)]
    return GroundTruth(
        mask=mask,
        tree=gt_tree,
        anatomical_tree=anatomical_tree,
        spacing=spacing,
        n_voxels=int(np.count_nonzero(mask)),
        parsed_n_voxels=int(np.count_nonzero(gt_tree.mask[box])),
        skeleton_coords=skeleton_coords,
        skeleton_branch=skeleton_branch,
        branch_ids=branch_ids,
        generation_of=generation_of,
        anatomical_skeleton_branch=anatomical[0],
        anatomical_branch_ids=anatomical[1],
        anatomical_generation_of=anatomical[2],
        central_coords=central_coords,
        central_in_gt=central_in_gt,
    )


def _branch_arrays(tree: AirwayTree, skeleton_coords: np.ndarray):
    """(skeleton_branch (S,), branch_ids (B,), generation_of (max id + 1,)), int64, of a parse."""
    skeleton_branch = tree.branch_labels[tuple(skeleton_coords.T)].astype(np.int64)
    branch_ids = np.array(sorted(tree.branches), dtype=np.int64)
    generation_of = np.full(int(branch_ids.max()) + 1, -1, dtype=np.int64)
    for branch_id, branch in tree.branches.items():
        generation_of[branch_id] = branch.generation
    return skeleton_branch, branch_ids, generation_of
