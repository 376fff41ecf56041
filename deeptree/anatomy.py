"""The three anatomy classes of DeepTree's stage 1 (paper Sec. 2.1, "AMC").

The airway tree Y is split into

* class 1, Y^L: the trachea and the left/right main bronchi (generations 0 and 1),
  large branches in the mediastinum;
* class 2, Y^M: every other branch whose mean lumen diameter is > 2 mm (bronchi up to
  about the segmental level);
* class 3, Y^S: the remaining branches, mean lumen diameter <= 2 mm, deep in the lung.

The 2 mm threshold is the paper's ("we set an airway branch to Y^S if its average lumen
diameter is <= 2 mm"); the generation rule for class 1 follows from its anatomy. Both
are fields of :class:`deeptree.config.AnatomyConfig`. Branches, generations and
diameters come from :func:`deeptree.tree.parse_tree`.

Which diameter: on a real mask, :attr:`deeptree.tree.Branch.diameter_mm`, measured from
the lumen's cross-sectional area along the centreline (no half-voxel bias, see
docs/design.md "Diameter"); on a phantom, whose generator knows every branch's lumen radius,
:func:`generator_diameters` gives the true mean diameter of each parsed branch, and the
functions below take it through their ``diameters`` argument. The rule still assumes CT of
about 1 mm or finer (ATM'22: about 0.5-0.8 mm; the cpu phantoms: 1 mm): a branch under about
two voxels across is barely drawn at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deeptree.config import AnatomyConfig
from deeptree.io import InputError
from deeptree.phantom.growth import point_segment_distance
from deeptree.tree import AirwayTree

if TYPE_CHECKING:
    from deeptree.phantom.growth import AirwayTreeSpec

#: Class values in the label volume.
BACKGROUND, CENTRAL, MEDIUM, SMALL = 0, 1, 2, 3
CLASS_NAMES: dict[int, str] = {
    CENTRAL: "trachea + main bronchi",
    MEDIUM: "bronchi > 2 mm",
    SMALL: "bronchi <= 2 mm",
}


def branch_classes(
    tree: AirwayTree,
    config: AnatomyConfig | None = None,
    diameters: dict[int, float] | None = None,
) -> dict[int, int]:
    """Anatomy class (1, 2 or 3) of every branch of a parsed tree.

    Parameters
    ----------
    tree : AirwayTree
        From :func:`deeptree.tree.parse_tree`.
    config : AnatomyConfig, optional
        ``central_max_generation`` (default 1: generations 0 and 1 are class 1) and
        ``small_diameter_mm`` (default 2.0 mm: a branch whose mean lumen diameter is at
        most this is class 3). Defaults to the paper's values.
    diameters : dict of int to float, optional
        Mean lumen diameter (mm) of every branch id, e.g. a phantom's true diameters
        (:func:`generator_diameters`). None: each branch's measured
        :attr:`~deeptree.tree.Branch.diameter_mm`.

    Returns
    -------
    dict of int to int
        Branch id -> class.

    Raises
    ------
    InputError
        ``diameters`` lacks a branch of the tree.
    """
    config = _check_config(config)
    diameters = _check_diameters(tree, diameters)
    classes = {}
    for branch in tree.branches.values():
        if branch.generation <= config.central_max_generation:
            classes[branch.id] = CENTRAL
        elif diameters[branch.id] <= config.small_diameter_mm:
            classes[branch.id] = SMALL
        else:
            classes[branch.id] = MEDIUM
    return classes


def anatomy_labels(
    tree: AirwayTree,
    config: AnatomyConfig | None = None,
    diameters: dict[int, float] | None = None,
) -> np.ndarray:
    """Three-class anatomy label volume of a parsed airway tree.

    Parameters
    ----------
    tree : AirwayTree
        From :func:`deeptree.tree.parse_tree`.
    config : AnatomyConfig, optional
        Thresholds, see :func:`branch_classes`; the paper's defaults if omitted.
    diameters : dict of int to float, optional
        Branch id -> mean lumen diameter (mm), see :func:`branch_classes`; None: measured.

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        0 background, 1 trachea and main bronchi, 2 other bronchi with mean lumen
        diameter > 2 mm, 3 bronchi <= 2 mm. Every voxel of ``tree.mask`` (the largest
        component of the input, holes filled) is 1, 2 or 3; voxels of components that
        the parse dropped are 0.
    """
    classes = branch_classes(tree, config, diameters)
    lut = np.zeros(len(tree.branches) + 1, dtype=np.uint8)
    for branch_id, value in classes.items():
        lut[branch_id] = value
    out = np.zeros(tree.mask.shape, dtype=np.uint8)
    box = tree._box  # the mask's bounding box: nothing outside it is labelled
    out[box] = lut[tree.branch_labels[box]]
    return out


def class_summary(
    tree: AirwayTree,
    labels: np.ndarray,
    config: AnatomyConfig | None = None,
    diameters: dict[int, float] | None = None,
) -> dict:
    """Branch and voxel counts per class, for tables and plots.

    Parameters
    ----------
    tree : AirwayTree
    labels : ndarray of uint8, shape (I, J, K)
        :func:`anatomy_labels` of ``tree``.
    config : AnatomyConfig, optional
    diameters : dict of int to float, optional
        The diameters ``labels`` were made with (:func:`branch_classes`); None: measured.

    Returns
    -------
    dict
        ``{"branches": {1: n1, 2: n2, 3: n3}, "voxels": {1: v1, 2: v2, 3: v3}}``.
    """
    if labels.shape != tree.mask.shape:
        raise InputError(
            f"labels: shape {labels.shape} does not match the tree's {tree.mask.shape}"
        )
    classes = branch_classes(tree, config, diameters)
    return {
        "branches": {c: sum(v == c for v in classes.values()) for c in (CENTRAL, MEDIUM, SMALL)},
        "voxels": {c: int(np.count_nonzero(labels == c)) for c in (CENTRAL, MEDIUM, SMALL)},
    }


def generator_diameters(
    tree: AirwayTree, spec: AirwayTreeSpec, affine: np.ndarray
) -> dict[int, float]:
    """True mean lumen diameter of every parsed branch of a phantom, from its generator.

    Each labelled skeleton voxel of the parse takes the lumen diameter (2 x radius) of the
    generator's branch whose centreline segment is nearest to the voxel centre (world mm);
    a parsed branch's diameter is the mean over its skeleton voxels, the same "mean lumen
    diameter along the branch" that :attr:`~deeptree.tree.Branch.diameter_mm` estimates
    on a real mask. A parsed branch may span several generator branches (an only child
    merged into its parent, a branch cut by a junction the grid merges): each counts along
    its share of the skeleton.

    Parameters
    ----------
    tree : AirwayTree
        :func:`deeptree.tree.parse_tree` of the phantom's airway mask.
    spec : AirwayTreeSpec
        The phantom's tree (:func:`deeptree.phantom.read_tree` of ``treesTr/<id>.json``);
        end points in world RAS mm, radii in mm.
    affine : ndarray, shape (4, 4)
        Voxel-to-world transform of the mask (the phantom's affine).

    Returns
    -------
    dict of int to float
        Branch id -> mean true lumen diameter (mm).

    Raises
    ------
    InputError
        ``spec`` has no branch, or the affine is not a finite 4x4 matrix.
    """
    arrays = spec.arrays()
    if len(arrays["radius"]) == 0:
        raise InputError("phantom tree: no branch to read the lumen radii from")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InputError(f"affine: expected a finite 4x4 matrix, got shape {affine.shape}")
    voxels = tree._skeleton_voxels
    branch = tree.skeleton_labels[tuple(voxels.T)]
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    true = np.empty(len(voxels))
    for rows in np.array_split(np.arange(len(voxels)), max(1, len(voxels) // 2000)):
        nearest = np.argmin(point_segment_distance(world[rows], arrays["start"], arrays["end"]), 1)
        true[rows] = 2.0 * arrays["radius"][nearest]
    n = len(tree.branches)
    total = np.bincount(branch, weights=true, minlength=n + 1)
    count = np.bincount(branch, minlength=n + 1)
    return {b: float(total[b] / count[b]) for b in tree.branches}


def _check_diameters(tree: AirwayTree, diameters) -> dict[int, float]:
    if diameters is None:
        return {b.id: b.diameter_mm for b in tree.branches.values()}
    missing = sorted(set(tree.branches) - set(diameters))
    if missing:
        raise InputError(
            f"diameters: no value for branch(es) {missing[:5]} of the {len(tree.branches)}"
        )
    return diameters


def _check_config(config: AnatomyConfig | None) -> AnatomyConfig:
    config = AnatomyConfig() if config is None else config
    if not (np.isfinite(config.small_diameter_mm) and config.small_diameter_mm > 0):
        raise InputError(
            f"AnatomyConfig.small_diameter_mm must be > 0 mm, got {config.small_diameter_mm}"
        )
    if config.central_max_generation < 0:
        raise InputError(
            f"AnatomyConfig.central_max_generation must be >= 0, got {config.central_max_generation}"
        )
    return config
