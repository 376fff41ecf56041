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

Resolution matters: a branch's diameter is 2 x the mean distance from its skeleton voxels
to the nearest background voxel, which is at least one voxel away, so no branch measures
less than about 2 voxels. On grids coarser than 1 mm, class 3 is therefore empty with
the paper's 2 mm (the 1.5 mm phantoms had none); the rule assumes CT of about 1 mm or finer
(ATM'22: about 0.5-0.8 mm; the cpu phantoms: 1 mm).
"""

from __future__ import annotations

import numpy as np

from deeptree.config import AnatomyConfig
from deeptree.io import InputError
from deeptree.tree import AirwayTree

#: Class values in the label volume.
BACKGROUND, CENTRAL, MEDIUM, SMALL = 0, 1, 2, 3
CLASS_NAMES: dict[int, str] = {
    CENTRAL: "trachea + main bronchi",
    MEDIUM: "bronchi > 2 mm",
    SMALL: "bronchi <= 2 mm",
}


def branch_classes(tree: AirwayTree, config: AnatomyConfig | None = None) -> dict[int, int]:
    """Anatomy class (1, 2 or 3) of every branch of a parsed tree.

    Parameters
    ----------
    tree : AirwayTree
        From :func:`deeptree.tree.parse_tree`.
    config : AnatomyConfig, optional
        ``central_max_generation`` (default 1: generations 0 and 1 are class 1) and
        ``small_diameter_mm`` (default 2.0 mm: a branch whose mean lumen diameter is at
        most this is class 3). Defaults to the paper's values.

    Returns
    -------
    dict of int to int
        Branch id -> class.
    """
    config = _check_config(config)
    classes = {}
    for branch in tree.branches.values():
        if branch.generation <= config.central_max_generation:
            classes[branch.id] = CENTRAL
        elif branch.diameter_mm <= config.small_diameter_mm:
            classes[branch.id] = SMALL
        else:
            classes[branch.id] = MEDIUM
    return classes


def anatomy_labels(tree: AirwayTree, config: AnatomyConfig | None = None) -> np.ndarray:
    """Three-class anatomy label volume of a parsed airway tree.

    Parameters
    ----------
    tree : AirwayTree
        From :func:`deeptree.tree.parse_tree`.
    config : AnatomyConfig, optional
        Thresholds, see :func:`branch_classes`; the paper's defaults if omitted.

    Returns
    -------
    ndarray of uint8, shape (I, J, K)
        0 background, 1 trachea and main bronchi, 2 other bronchi with mean lumen
        diameter > 2 mm, 3 bronchi <= 2 mm. Every voxel of ``tree.mask`` (the largest
        component of the input, holes filled) is 1, 2 or 3; voxels of components that
        the parse dropped are 0.
    """
    classes = branch_classes(tree, config)
    lut = np.zeros(len(tree.branches) + 1, dtype=np.uint8)
    for branch_id, value in classes.items():
        lut[branch_id] = value
    out = np.zeros(tree.mask.shape, dtype=np.uint8)
    box = tree._box  # the mask's bounding box: nothing outside it is labelled
    out[box] = lut[tree.branch_labels[box]]
    return out


def class_summary(
    tree: AirwayTree, labels: np.ndarray, config: AnatomyConfig | None = None
) -> dict:
    """Branch and voxel counts per class, for tables and plots.

    Parameters
    ----------
    tree : AirwayTree
    labels : ndarray of uint8, shape (I, J, K)
        :func:`anatomy_labels` of ``tree``.
    config : AnatomyConfig, optional

    Returns
    -------
    dict
        ``{"branches": {1: n1, 2: n2, 3: n3}, "voxels": {1: v1, 2: v2, 3: v3}}``.
    """
    if labels.shape != tree.mask.shape:
        raise InputError(
            f"labels: shape {labels.shape} does not match the tree's {tree.mask.shape}"
        )
    classes = branch_classes(tree, config)
    return {
        "branches": {c: sum(v == c for v in classes.values()) for c in (CENTRAL, MEDIUM, SMALL)},
        "voxels": {c: int(np.count_nonzero(labels == c)) for c in (CENTRAL, MEDIUM, SMALL)},
    }


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
