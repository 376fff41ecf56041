"""Airway evaluation metrics compatible with the ATM'22 challenge and the DeepTree paper.

Definitions follow the official ATM'22 evaluation code (Zhang et al., "Multi-site,
Multi-domain Airway Tree Modeling (ATM'22)", Medical Image Analysis 2023;
github.com/EndoluminalSurgicalVision-IMR/ATM-22-Related-Work, ``evaluation/``):

* the ground truth (GT) is parsed once (:func:`deeptree.tree.parse_tree`, the ATM'22
  parsing scheme): largest 6-connected component with holes filled, its full 3D-thinning
  skeleton, and a branch id for every voxel of the parsed mask. As in the official
  ``tree_parsing_func``, a voxel's nearest skeleton voxel is found in *voxel units* with
  scipy's EDT (``parse_tree(..., nearest_in_voxels=True)``), not in mm: this decides which
  branch the junction voxels belong to and even how many branches there are (atm_001: 187
  branches in voxel units, as the official code, 182 in mm, which moves BD by up to 0.8
  percentage points; on isotropic phantoms a different tie-break alone moves it by up
  to 3.8 points);
* **TLD** (tree length detected, "TD" in ATM'22) = share of the GT skeleton voxels that lie
  inside the prediction;
* **BD** (branches detected) = share of the GT branches with at least 80% of their
  skeleton voxels inside the prediction. A branch's skeleton voxels are the voxels of the
  *full* skeleton (junction voxels included) whose branch id is that branch, exactly as
  ``label_skeleton * label_parsing`` in the official ``branch_detected_calculation``;
* **precision** = true-positive voxels / predicted voxels; **DSC** = 2 TP / (|P| + |G|);
  **sensitivity** = TP / |G|; **FPR** = FP / (voxels outside the GT);
* every metric is computed on the largest connected component of the prediction,
  26-connected by default (the paper keeps the largest component at inference). The
  published ATM'22 metric functions take this component as given; the organisers' own
  evaluation scripts (e.g. ``evaluation.py`` of github.com/haozheng-sjtu/3d-airway-segmentation)
  label it with ``skimage.measure.label(connectivity=1)``, i.e. 6-connectivity: pass
  ``connectivity=6`` to reproduce those. The choice matters for fragmented predictions
  (atm_001 eroded once: BD 40.6% with 26, 34.8% with 6).

With the same component, protocol ``"atm22"`` reproduces a step-by-step reimplementation
of the official code (``benchmarks/atm22_official_metrics.py``) to within 0.005
percentage points on atm_001 and on phantoms (the official rounding), also when 40 small
extra components and 10 holes are added to the GT; see ``benchmarks/RESULTS.md``.

Two protocols:

``"atm22"``
    The challenge's numbers, no exclusion. Every metric uses the *processed* GT G', the
    parsed mask (the GT's largest 6-connected component with its holes filled): TLD and
    BD by construction, and also precision = |L ∩ G'| / |L|, DSC = 2 |L ∩ G'| / (|L| +
    |G'|), sensitivity = |L ∩ G'| / |G'| and FPR = |L \\ G'| / (voxels outside G'). This is
    what the official pipeline does: its ``tree_parse.py`` writes the processed label
    (``large_connected_domain``: largest 6-connected component, ``binary_fill_holes``) as
    ``*_label.nii.gz`` beside ``*_parse`` and ``*_skel``, and the metric functions of
    ``evaluation_atm_22.py`` score the prediction against that label. A GT with stray
    small components therefore counts a prediction of them as false positives, and a
    filled hole as a GT voxel (scored against the raw mask instead, precision comes out up
    to 0.8 points too high on phantoms with 40 stray components; ``benchmarks/RESULTS.md``).
``"paper"`` (default)
    The paper (DeepTree, Sec. 3: "we also exclude the trachea and left/right main bronchi
    for evaluation of all three metrics"). Its branches come from the same parse with the
    *anatomical* root (:mod:`deeptree.tree`: the trachea runs from the cranial end of the
    mask to the main carina, and a bud or a tracheal bronchus does not split it), not the
    ATM'22 one (the largest region, which can make a main bronchus the root on such trees).
    The *central region* C is the set of voxels
    of the parsed GT mask whose branch has generation 0 or 1 (``tree.branch_labels`` of
    those branches). Then TLD counts only GT skeleton voxels outside C; BD counts only
    branches of generation >= 2; precision = |L ∩ G \\ C| / |L \\ C| with L the largest
    component of the prediction and G the GT *as given* (raw). Predicted voxels outside the
    parsed GT mask are never in C (a leak beside the trachea stays a false positive). DSC,
    sensitivity and FPR are computed on the whole volume, also against the raw G.
    Why the raw GT: the paper takes its metrics from [12, 23, 24] (Qin, Zheng et al.),
    whose evaluation script (``evaluation.py`` of github.com/haozheng-sjtu/3d-airway-
    segmentation) computes precision as ``(large_cd * label).sum() / large_cd.sum()``
    with the annotated label as loaded, not the parsed one; and a voxel the annotators
    marked as airway is not a false positive because it is cut off from the main tree.
    TLD and BD need a tree, so they use the parse (its skeleton and branches) under both
    protocols.

Which GT mask each metric uses:

=================================  =====================  ======================
metric                             ``"paper"``            ``"atm22"``
=================================  =====================  ======================
TLD, BD (skeleton, branches)       parsed G'              parsed G'
precision                          raw G (C removed)      parsed G'
DSC, sensitivity, FPR              raw G                  parsed G'
=================================  =====================  ======================

The two masks differ only when the GT has more than one 6-connected component or
enclosed holes; ``"gt_components_dropped"`` in the result says how many components the
parse dropped (:func:`prepare_ground_truth` also warns).

All ratios are **fractions in [0, 1]** (not percent) under the keys ``"BD"``, ``"TLD"``,
``"precision"``, ``"DSC"``, ``"sensitivity"``, ``"FPR"``; tables format them as percent
(:func:`format_summary`). A ratio whose denominator is 0 (e.g. precision of an empty
prediction) is 0.0, never a division error. The official code rounds percentages to 2-3
decimals and adds a smoothing term of 1e-5; neither is done here (both change a figure by
far less than 0.01 percentage points).

Speed: parse the GT once with :func:`prepare_ground_truth` and pass the result as ``gt``;
an evaluation then only labels the prediction inside its bounding box and reads the
prediction at the GT skeleton voxels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deeptree.ground_truth import (
    CENTRAL_MAX_GENERATION,
    SPACING_RTOL,
    GroundTruth,
    prepare_ground_truth,
)
from deeptree.io import InputError, check_spacing
from deeptree.masks import as_binary_mask, bounding_box, check_connectivity, label_components
from deeptree.tree import AirwayTree

#: Evaluation protocols: ``"paper"`` excludes the central airways, ``"atm22"`` does not.
PROTOCOLS: tuple[str, ...] = ("paper", "atm22")

#: The ratio metrics, as fractions in [0, 1].
METRIC_KEYS: tuple[str, ...] = ("BD", "TLD", "precision", "DSC", "sensitivity", "FPR")

#: Count keys returned beside the ratios.
COUNT_KEYS: tuple[str, ...] = (
    "branches_total",
    "branches_detected",
    "skeleton_total",
    "skeleton_covered",
    "precision_tp",
    "precision_predicted",
    "tp_voxels",
    "pred_voxels",
    "gt_voxels",
    "gt_components_dropped",
    "n_components",
)

#: ATM'22: a branch is detected when >= 80% of its skeleton voxels are predicted.
BRANCH_DETECTED_THRESHOLD = 0.8


# --------------------------------------------------------------------------------------------
# the prediction's largest component
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Component:
    """The largest connected component of a prediction, stored in its bounding box."""

    mask: np.ndarray  # bool, the bounding-box crop
    box: tuple[slice, slice, slice]
    n_components: int

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def values_at(self, coords: np.ndarray) -> np.ndarray:
        """bool (n,): whether each voxel (n, 3) lies in the component."""
        lo = np.array([s.start for s in self.box])
        hi = np.array([s.stop for s in self.box])
        inside = np.all((coords >= lo) & (coords < hi), axis=1)
        values = np.zeros(len(coords), dtype=bool)
        local = coords[inside] - lo
        values[inside] = self.mask[tuple(local.T)]
        return values


def _largest_component(mask: np.ndarray, connectivity: int) -> _Component | None:
    box = bounding_box(mask)
    if box is None:
        return None
    crop = mask[box]
    labels, n = label_components(crop, connectivity=connectivity)
    if n == 1:
        return _Component(mask=crop, box=box, n_components=1)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return _Component(mask=labels == int(np.argmax(sizes)), box=box, n_components=int(n))


# --------------------------------------------------------------------------------------------
# the metrics
# --------------------------------------------------------------------------------------------
def airway_metrics(
    pred: np.ndarray,
    gt: np.ndarray | GroundTruth,
    spacing: Sequence[float],
    protocol: str = "paper",
    *,
    gt_tree: AirwayTree | None = None,
    affine: np.ndarray | None = None,
    pred_spacing: Sequence[float] | None = None,
    connectivity: int = 26,
    threshold: float = BRANCH_DETECTED_THRESHOLD,
    pred_name: str = "prediction",
    gt_name: str = "ground truth",
) -> dict[str, float | int | str]:
    """BD, TLD, precision, DSC, sensitivity and FPR of a predicted airway mask.

    Parameters
    ----------
    pred : ndarray, shape (I, J, K), bool or 0/1 integers/floats
        Predicted airway mask. Not modified. Only its largest connected component counts.
    gt : ndarray, shape (I, J, K), or GroundTruth
        The binary GT mask, or its :class:`GroundTruth` from :func:`prepare_ground_truth`
        (the GT parsed once per case; the fast path for validation loops).
    spacing : sequence of 3 float
        Voxel size of the GT in mm.
    protocol : {"paper", "atm22"}
        ``"paper"`` excludes the trachea and main bronchi (generations 0-1 of the GT parse)
        from BD, TLD and precision (see the module docstring for the exact rule) and scores
        precision, DSC, sensitivity and FPR against the raw GT as given, as the paper's
        sources do; ``"atm22"`` reproduces the challenge's numbers (no exclusion) and scores
        all four against the processed GT (largest 6-connected component, holes filled),
        as the official pipeline. TLD and BD use the GT parse under both.
    gt_tree : AirwayTree, optional
        The GT parse, when ``gt`` is an array and the parse is already computed (see
        :func:`prepare_ground_truth` for which parse gives the official numbers).
    affine : ndarray, shape (4, 4), optional
        The GT's voxel-to-world transform, when ``gt`` is an array: which end is cranial
        for the anatomical root of the paper protocol (None: +k; see
        :func:`prepare_ground_truth`).
    pred_spacing : sequence of 3 float, optional
        Voxel size of the prediction in mm; must equal ``spacing`` if given.
    connectivity : {26, 6}
        Connectivity of the prediction's components (26 in the challenge and the paper).
    threshold : float
        Share of a branch's skeleton voxels that must be predicted for it to count as
        detected (0.8 in ATM'22).
    pred_name, gt_name : str
        What to call the arrays in errors (e.g. their file names).

    Returns
    -------
    dict
        ``"BD"``, ``"TLD"``, ``"precision"``, ``"DSC"``, ``"sensitivity"``, ``"FPR"``:
        float fractions in [0, 1];
        ``"branches_total"``, ``"branches_detected"``: the branches behind BD;
        ``"skeleton_total"``, ``"skeleton_covered"``: the GT skeleton voxels behind TLD;
        ``"precision_tp"``, ``"precision_predicted"``: the voxels behind precision (central
        region removed under ``"paper"``);
        ``"tp_voxels"``, ``"pred_voxels"``, ``"gt_voxels"``: whole-volume counts behind
        DSC, sensitivity and FPR (``pred_voxels`` is the largest component's size;
        ``gt_voxels`` is the size of the GT mask the protocol scores against: raw under
        ``"paper"``, processed under ``"atm22"``);
        ``"gt_components_dropped"``: 6-connected GT components left out of the parse
        (under ``"atm22"``, also out of the GT that precision and DSC use);
        ``"n_components"``: connected components of the whole prediction;
        ``"protocol"``: the protocol used. Counts are ints.

    Raises
    ------
    InputError
        Shape or spacing mismatch, non-binary masks, an empty GT, an unknown protocol or
        connectivity, or (``"paper"``) a GT with no branch beyond the main bronchi.
    """
    reference, component = _evaluate_inputs(
        pred,
        gt,
        spacing,
        protocol,
        gt_tree,
        pred_spacing,
        connectivity,
        threshold,
        pred_name,
        gt_name,
        affine,
    )
    return _metrics(reference, component, protocol, threshold, gt_name)


def generation_metrics(
    pred: np.ndarray,
    gt: np.ndarray | GroundTruth,
    spacing: Sequence[float],
    *,
    gt_tree: AirwayTree | None = None,
    affine: np.ndarray | None = None,
    pred_spacing: Sequence[float] | None = None,
    connectivity: int = 26,
    threshold: float = BRANCH_DETECTED_THRESHOLD,
    pred_name: str = "prediction",
    gt_name: str = "ground truth",
) -> list[dict[str, float | int]]:
    """TLD and BD per generation of the GT tree (for the evaluation plots).

    Parameters are those of :func:`airway_metrics` (no protocol: each generation is
    reported, the caller keeps the ones it wants).

    Returns
    -------
    list of dict
        One dict per generation present in the GT parse, sorted by generation, with
        ``"generation"`` (int, 0 = trachea), ``"TLD"``, ``"BD"`` (fractions in [0, 1]) and
        ``"skeleton_total"``, ``"skeleton_covered"``, ``"branches_total"``,
        ``"branches_detected"`` (ints). Skeleton voxels without a branch id (none in a
        normal parse) are left out.
    """
    reference, component = _evaluate_inputs(
        pred,
        gt,
        spacing,
        "atm22",
        gt_tree,
        pred_spacing,
        connectivity,
        threshold,
        pred_name,
        gt_name,
        affine,
    )
    covered = _skeleton_covered(reference, component)
    skeleton_generation = reference.skeleton_generation
    detected = _branches_detected(reference.branches_for("atm22"), covered, threshold)
    branch_generation = reference.generation_of[reference.branch_ids]
    rows = []
    for generation in np.unique(branch_generation):
        on_skeleton = skeleton_generation == generation
        of_branch = branch_generation == generation
        rows.append(
            _ratio_row(
                int(np.count_nonzero(on_skeleton)),
                int(np.count_nonzero(covered & on_skeleton)),
                int(np.count_nonzero(of_branch)),
                int(np.count_nonzero(detected & of_branch)),
            )
            | {"generation": int(generation)}
        )
    return rows


def _evaluate_inputs(
    pred, gt, spacing, protocol, gt_tree, pred_spacing, connectivity, threshold, pred_name,
    gt_name, affine=None,
) -> tuple[GroundTruth, _Component | None]:  # fmt: skip
    """Validate the inputs; return the prepared GT and the prediction's largest component."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not 0.0 < float(threshold) <= 1.0:
        raise InputError(f"threshold must be in (0, 1], got {threshold!r}")
    check_connectivity(connectivity)
    spacing = check_spacing(spacing, f"{gt_name} spacing")
    if pred_spacing is not None:
        pred_spacing = check_spacing(pred_spacing, f"{pred_name} spacing")
        if not np.allclose(pred_spacing, spacing, rtol=SPACING_RTOL, atol=0):
            raise InputError(
                f"{pred_name}: spacing {pred_spacing} mm does not match the {gt_name} spacing "
                f"{spacing} mm (resample the prediction to the GT grid first)"
            )
    if isinstance(gt, GroundTruth):
        if gt_tree is not None or affine is not None:
            raise InputError(
                f"{gt_name}: give gt_tree and affine only with a GT array, not with a "
                "GroundTruth (prepare_ground_truth takes them)"
            )
        if not np.allclose(gt.spacing, spacing, rtol=SPACING_RTOL, atol=0):
            raise InputError(
                f"{gt_name}: the prepared GT has spacing {gt.spacing} mm, not {spacing} mm"
            )
        reference = gt
    else:
        reference = prepare_ground_truth(gt, spacing, gt_tree, affine=affine, name=gt_name)
    pred_mask = as_binary_mask(pred, pred_name, allow_empty=True)
    if pred_mask.shape != reference.shape:
        raise InputError(
            f"{pred_name}: shape {pred_mask.shape} does not match the {gt_name} shape {reference.shape}"
        )
    return reference, _largest_component(pred_mask, connectivity)


def _metrics(
    reference: GroundTruth,
    component: _Component | None,
    protocol: str,
    threshold: float,
    gt_name: str = "ground truth",
) -> dict[str, float | int | str]:
    covered = _skeleton_covered(reference, component)
    skeleton_branch, branch_ids, generation_of = reference.branches_for(protocol)
    detected = _branches_detected((skeleton_branch, branch_ids, generation_of), covered, threshold)

    # The GT that precision, DSC, sensitivity and FPR are scored against: the processed
    # (parsed) mask under "atm22", as the official pipeline; the raw mask under "paper".
    if protocol == "atm22":
        gt_mask, n_gt = reference.parsed_mask, reference.parsed_n_voxels
    else:
        gt_mask, n_gt = reference.mask, reference.n_voxels
    if component is None:
        n_pred = tp = n_components = 0
    else:
        n_pred = component.n_voxels
        tp = int(np.count_nonzero(component.mask & gt_mask[component.box]))
        n_components = component.n_components

    if protocol == "paper":
        # Only what lies beyond the main bronchi counts for TLD, BD and precision.
        keep_skeleton = ~_is_central_generation(generation_of[skeleton_branch])
        keep_branch = ~_is_central_generation(generation_of[branch_ids])
        if not keep_branch.any():
            raise InputError(
                f"{gt_name}: its parse has no branch beyond the main bronchi (generation >= 2); "
                "use protocol='atm22'"
            )
        predicted_central = (
            component.values_at(reference.central_coords)
            if component is not None
            else np.zeros(len(reference.central_coords), dtype=bool)
        )
        precision_tp = tp - int(np.count_nonzero(predicted_central & reference.central_in_gt))
        precision_predicted = n_pred - int(np.count_nonzero(predicted_central))
    else:
        keep_skeleton = np.ones(len(skeleton_branch), dtype=bool)
        keep_branch = np.ones(len(branch_ids), dtype=bool)
        precision_tp, precision_predicted = tp, n_pred

    n_background = gt_mask.size - n_gt
    result: dict[str, float | int | str] = {"protocol": protocol}
    result |= _ratio_row(
        int(np.count_nonzero(keep_skeleton)),
        int(np.count_nonzero(covered & keep_skeleton)),
        int(np.count_nonzero(keep_branch)),
        int(np.count_nonzero(detected & keep_branch)),
    )
    result |= {
        "precision": _ratio(precision_tp, precision_predicted),
        "DSC": _ratio(2 * tp, n_pred + n_gt),
        "sensitivity": _ratio(tp, n_gt),
        "FPR": _ratio(n_pred - tp, n_background),
        "precision_tp": precision_tp,
        "precision_predicted": precision_predicted,
        "tp_voxels": tp,
        "pred_voxels": n_pred,
        "gt_voxels": n_gt,
        "gt_components_dropped": reference.n_components_dropped,
        "n_components": n_components,
    }
    return result


def _is_central_generation(generation: np.ndarray) -> np.ndarray:
    """True for generations 0..CENTRAL_MAX_GENERATION (not for -1 = no branch id)."""
    return (generation >= 0) & (generation <= CENTRAL_MAX_GENERATION)


def _skeleton_covered(reference: GroundTruth, component: _Component | None) -> np.ndarray:
    """bool (S,): whether each GT skeleton voxel lies in the prediction's largest component."""
    if component is None:
        return np.zeros(len(reference.skeleton_coords), dtype=bool)
    return component.values_at(reference.skeleton_coords)


def _branches_detected(branches, covered: np.ndarray, threshold: float) -> np.ndarray:
    """bool (B,): whether each branch of ``branch_ids`` is detected; ``branches`` is
    (skeleton_branch, branch_ids, generation_of) of :meth:`GroundTruth.branches_for`.

    As the official ``branch_detected_calculation``: ratio = covered / total skeleton voxels
    of the branch, detected when ratio >= threshold (a float division compared with the
    threshold, not ``covered >= threshold * total``, which float rounding can break).
    A branch without skeleton voxel is counted and not detected.
    """
    skeleton_branch, branch_ids, generation_of = branches
    n_ids = len(generation_of)
    total = np.bincount(skeleton_branch, minlength=n_ids)[branch_ids]
    hit = np.bincount(skeleton_branch[covered], minlength=n_ids)[branch_ids]
    ratio = np.divide(hit, total, out=np.zeros(len(total), dtype=np.float64), where=total > 0)
    return (total > 0) & (ratio >= threshold)


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, 0.0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator > 0 else 0.0


def _ratio_row(skeleton_total, skeleton_covered, branches_total, branches_detected) -> dict:
    return {
        "BD": _ratio(branches_detected, branches_total),
        "TLD": _ratio(skeleton_covered, skeleton_total),
        "branches_total": branches_total,
        "branches_detected": branches_detected,
        "skeleton_total": skeleton_total,
        "skeleton_covered": skeleton_covered,
    }


# --------------------------------------------------------------------------------------------
# Dice per anatomy class
# --------------------------------------------------------------------------------------------
#: The anatomy classes of :func:`class_dice` (1 trachea + main bronchi, 2 > 2 mm, 3 <= 2 mm).
DICE_CLASSES: tuple[int, ...] = (1, 2, 3)


def class_dice(
    pred: np.ndarray,
    labels: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    pred_name: str = "prediction",
    labels_name: str = "anatomy labels",
) -> dict[int, float | None]:
    """Dice of a binary airway prediction in the zone of each anatomy class.

    The volume is split into zones by the class of the nearest GT airway voxel (Euclidean,
    in mm): every GT voxel of class c is in zone c, and so is every predicted voxel whose
    nearest GT voxel is of class c. Then Dice_c = 2 |P ∩ G_c| / (|P ∩ Z_c| + |G_c|). This
    reads the airway mask only (whatever channels a model has), so it compares every
    variant alike, and it shows a model that misses a class (stage-1 validation logs it;
    ``deeptree.stage1.task.class1_dice_failure`` flags class 1 below 0.3). The whole
    prediction counts (no largest-component step).

    Parameters
    ----------
    pred : ndarray, shape (I, J, K), bool or 0/1 integers/floats
        Predicted airway mask.
    labels : ndarray of int, shape (I, J, K)
        GT anatomy labels, values in {0, 1, 2, 3} (:func:`deeptree.anatomy.anatomy_labels`,
        ``deeptree.stage1.data.anatomy_label_map``).
    spacing : sequence of 3 float
        Voxel size in mm (for the nearest GT voxel).
    pred_name, labels_name : str
        What to call the arrays in errors.

    Returns
    -------
    dict of int to float or None
        Class (1, 2, 3) -> Dice in [0, 1]; None for a class the GT does not have.

    Raises
    ------
    InputError
        Shape mismatch, a non-binary prediction, labels outside {0, 1, 2, 3} or without any
        airway voxel, bad spacing.
    """
    from scipy.spatial import cKDTree

    spacing = check_spacing(spacing, f"{labels_name} spacing")
    mask = as_binary_mask(pred, pred_name, allow_empty=True)
    labels = np.asarray(labels)
    if labels.shape != mask.shape:
        raise InputError(
            f"{pred_name}: shape {mask.shape} does not match the {labels_name} shape {labels.shape}"
        )
    if labels.dtype.kind not in "biu" or labels.min() < 0 or labels.max() > max(DICE_CLASSES):
        raise InputError(f"{labels_name}: expected integer classes in {{0, 1, 2, 3}}")
    gt = labels > 0
    if not gt.any():
        raise InputError(f"{labels_name}: no airway voxel (all background)")
    n = max(DICE_CLASSES) + 1
    gt_classes = labels[gt].astype(np.int64)
    size = np.bincount(gt_classes, minlength=n)
    hit = np.bincount(labels[mask & gt].astype(np.int64), minlength=n)
    outside = np.argwhere(mask & ~gt)
    extra = np.zeros(n, dtype=np.int64)
    if len(outside):
        scale = np.asarray(spacing)
        nearest = cKDTree(np.argwhere(gt) * scale).query(outside * scale)[1]
        extra = np.bincount(gt_classes[nearest], minlength=n)
    return {
        c: (2.0 * hit[c] / (hit[c] + extra[c] + size[c]) if size[c] else None) for c in DICE_CLASSES
    }


# --------------------------------------------------------------------------------------------
# cohort summaries
# --------------------------------------------------------------------------------------------
def summarize(
    rows: Iterable[Mapping[str, object]], keys: Sequence[str] = METRIC_KEYS, ddof: int = 1
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over a cohort (the paper's tables).

    Parameters
    ----------
    rows : iterable of dict
        One dict per case, e.g. from :func:`airway_metrics`.
    keys : sequence of str
        The metrics to summarise (default :data:`METRIC_KEYS`).
    ddof : int
        Delta degrees of freedom of the standard deviation (1: sample standard deviation;
        0: population, as ``np.std`` in the ATM'22 example scripts).

    Returns
    -------
    dict
        ``{key: {"mean": float, "std": float, "n": int}}``, fractions as in the rows;
        ``std`` is 0.0 (not NaN) when there are no more than ``ddof`` cases.

    Raises
    ------
    InputError
        No rows, or a row without one of the keys.
    """
    rows = list(rows)
    if not rows:
        raise InputError("summarize: no case to summarise")
    summary = {}
    for key in keys:
        try:
            values = np.array([float(row[key]) for row in rows], dtype=np.float64)
        except KeyError as err:
            raise InputError(f"summarize: a case has no {key!r} value") from err
        std = float(np.std(values, ddof=ddof)) if len(values) > ddof else 0.0
        summary[key] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return summary


def format_summary(summary: Mapping[str, Mapping[str, float]], digits: int = 1) -> dict[str, str]:
    """Format a :func:`summarize` result as percent, ``"95.4 ± 2.1"``, one string per metric.

    Parameters
    ----------
    summary : dict
        From :func:`summarize` (fractions).
    digits : int
        Decimals of the percentages.
    """
    return {
        key: f"{100 * stats['mean']:.{digits}f} ± {100 * stats['std']:.{digits}f}"
        for key, stats in summary.items()
    }
