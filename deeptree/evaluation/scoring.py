"""Scoring one test case by every method of a training seed, the honest-precision reference
(the ground truth dilated by one voxel), and the per-method summaries with intervals
(``deeptree.evaluation.stats``). Used by ``deeptree.evaluation.reproduce``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from deeptree.config import LOSS_VARIANTS
from deeptree.evaluation.baselines import region_growing
from deeptree.evaluation.compare import group_by_method, score_masks
from deeptree.evaluation.paper import REGION_GROWING, STAGE2_SUFFIX, TABLE_METRICS, option_method
from deeptree.evaluation.stats import seed_case_table, summarize_table
from deeptree.io import InputError
from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth
from deeptree.pipeline import repair
from deeptree.stage1.predict import predict_stage1

#: Name of the paper's stage-2 model among the stage-2 models of a seed (the others are the
#: names of ``deeptree.stage2.task.STAGE2_OPTIONS``).
PAPER_STAGE2 = "stage2"


def evaluate_case(
    case,
    stage1_models: dict,
    stage2_models,
    *,
    device=None,
    protocol: str = "paper",
    reference=None,
    baseline: bool = True,
) -> tuple[list[dict], list[dict], dict]:
    """Every method on one test case (one training seed's models).

    Parameters
    ----------
    case : deeptree.io.Case
        CT (HU), binary airway label, spacing (mm).
    stage1_models : dict
        Method id -> the :class:`~deeptree.checkpoints.LoadedModel` of ``load_stage1_model``.
        Ids that are a stage-1 variant of ``deeptree.config.LOSS_VARIANTS`` are also scored
        after the paper's stage 2.
    stage2_models : dict or LoadedModel or None
        ``{"stage2": the paper's stage-2 model, <option>: the model of that option, ...}``
        (``load_stage2_model`` outputs); the paper's model repairs every variant, an
        option's model repairs amc+gul (method ``amc+gul+stage2+<option>``). A single
        LoadedModel is the paper's; None: no stage-2 rows.
    device : optional
    protocol : {"paper", "atm22"}
    reference : deeptree.metrics.GroundTruth, optional
        ``prepare_ground_truth`` of the label (made here if not given).
    baseline : bool
        Also score the region-growing baseline (it has no training seed).

    Returns
    -------
    rows : list of dict
        One per method: ``case``, ``method``, ``BD``, ``TLD``, ``precision``, ``DSC``
        (fractions), ``n_components`` (of the raw prediction), ``seconds``.
    generation_rows : list of dict
        ``deeptree.metrics.generation_metrics`` rows with ``case`` and ``method``.
    masks : dict
        Method id -> uint8 (I, J, K) prediction; ``"_repair"`` -> the
        ``deeptree.pipeline.SegmentationResult`` of ``amc+gul`` + stage 2 (if run).
    """

    gt = np.asarray(case.label) > 0
    if reference is None:
        reference = prepare_ground_truth(gt, case.spacing, name=f"{case.id} label")
    if stage2_models is not None and not isinstance(stage2_models, dict):
        stage2_models = {PAPER_STAGE2: stage2_models}
    stage2_models = stage2_models or {}
    masks: dict = {}
    seconds: dict[str, float] = {}
    for key, (model, meta) in stage1_models.items():
        t0 = time.perf_counter()
        pred = predict_stage1(
            model,
            case.ct,
            meta["patch_size"],
            overlap=meta.get("overlap", 0.5),
            device=device,
            name=f"{case.id} CT",
        )
        masks[key], seconds[key] = pred.mask, time.perf_counter() - t0
        if key not in LOSS_VARIANTS:
            continue
        for name, connector in stage2_models.items():
            if name != PAPER_STAGE2 and key != "amc+gul":
                continue
            method = key + STAGE2_SUFFIX if name == PAPER_STAGE2 else option_method(name)
            t1 = time.perf_counter()
            result = repair(pred.mask, case.ct, connector, device=device, name=f"{case.id} CT")
            masks[method] = result.mask
            seconds[method] = seconds[key] + time.perf_counter() - t1
            if method == "amc+gul" + STAGE2_SUFFIX:
                masks["_repair"] = result
    if baseline:
        t0 = time.perf_counter()
        try:
            masks[REGION_GROWING] = region_growing(case.ct, case.spacing)
        except InputError:  # no trachea found: the baseline returns nothing, scored as such
            masks[REGION_GROWING] = np.zeros(gt.shape, np.uint8)
        seconds[REGION_GROWING] = time.perf_counter() - t0
    rows, generation_rows = [], []
    methods = [m for m in masks if not m.startswith("_")]
    scores = score_masks({m: masks[m] for m in methods}, reference, case.spacing, protocol)
    for method, m in scores.items():
        rows.append(
            {
                "case": case.id,
                "method": method,
                **{k: float(m[k]) for k in (*TABLE_METRICS, "DSC")},
                "n_components": int(m["n_components"]),
                "seconds": round(seconds[method], 3),
            }
        )
        for g in generation_metrics(masks[method], reference, case.spacing):
            generation_rows.append({"case": case.id, "method": method, **g})
    return rows, generation_rows, masks


def dilated_gt_precision(gt: np.ndarray, spacing, reference=None, protocol: str = "paper") -> float:
    """Precision of the ground truth dilated by one voxel (6-connected), scored against the
    ground truth as any prediction: how much precision one voxel of extra thickness costs.

    Parameters
    ----------
    gt : ndarray (I, J, K), binary
    spacing : 3 floats (mm)
    reference : deeptree.metrics.GroundTruth, optional
        ``prepare_ground_truth(gt, spacing)`` (made here if not given).
    protocol : {"paper", "atm22"}

    Returns
    -------
    float
        Fraction in [0, 1].
    """
    gt = np.asarray(gt) > 0
    if reference is None:
        reference = prepare_ground_truth(gt, spacing, name="ground truth")
    dilated = ndimage.binary_dilation(gt).astype(np.uint8)
    return float(airway_metrics(dilated, reference, spacing, protocol)["precision"])


def summarize_methods(rows: Sequence[dict], **bootstrap) -> dict[str, dict]:
    """Per method and metric (BD, TLD, precision, DSC; fractions): the mean over training
    seeds of the case means with its 95% two-level bootstrap interval
    (``deeptree.evaluation.stats.summarize_table``: ``mean``, ``low``, ``high``,
    ``n_seeds``, ``n_cases``). Rows without a ``seed`` key count as one seed."""
    rows = [r if "seed" in r else {**r, "seed": 0} for r in rows]
    out = {}
    for method in group_by_method(rows):
        out[method] = {
            k: summarize_table(seed_case_table(rows, method, k), **bootstrap)
            for k in (*TABLE_METRICS, "DSC")
        }
    return out
