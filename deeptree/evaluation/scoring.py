"""Scoring one test case by every method of a training seed under each output rule, the
choice of the output rule on the validation phantoms, the honest-precision reference (the
ground truth dilated by one voxel), and the per-method summaries with intervals
(``deeptree.evaluation.stats``). Used by ``deeptree.evaluation.reproduce``.

An empty prediction has no precision (NaN, not 0): the model that made it is counted as
failed (``deeptree.evaluation.stats.failed_models``) and left out of the means, never averaged in as 0.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from deeptree.config import LOSS_VARIANTS
from deeptree.evaluation.baselines import region_growing
from deeptree.evaluation.compare import group_by_method, score_masks
from deeptree.evaluation.paper import REGION_GROWING, STAGE2_SUFFIX, TABLE_METRICS, option_method
from deeptree.evaluation.stats import failed_models, seed_case_table, summarize_table
from deeptree.io import InputError
from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth
from deeptree.pipeline import repair
from deeptree.stage1.predict import OUTPUT_RULES, check_rule, predict_stage1

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
    rules: Sequence[str] = ("argmax",),
) -> tuple[list[dict], list[dict], dict]:
    """Every method on one test case (one training seed's models), under each output rule.

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
    rules : sequence of str
        Output rules (``deeptree.stage1.predict.OUTPUT_RULES``) to score: every stage-1 model
        is run once and its mask taken under each rule
        (:meth:`~deeptree.stage1.predict.Stage1Prediction.mask_for`); stage 2 repairs each
        rule's stage-1 mask. A mask equal under two rules (every two-channel model) is
        repaired and scored once. Region growing has no output rule: its row is repeated
        under each rule, so that each rule's rows form a whole table.

    Returns
    -------
    rows : list of dict
        One per rule and method: ``case``, ``method``, ``rule``, ``BD``, ``TLD``,
        ``precision`` (NaN for an empty prediction: undefined), ``DSC`` (fractions),
        ``n_components`` (of the raw prediction), ``seconds``.
    generation_rows : list of dict
        ``deeptree.metrics.generation_metrics`` rows with ``case``, ``method`` and ``rule``.
    masks : dict
        Of the first rule: method id -> uint8 (I, J, K) prediction; ``"_repair"`` -> the
        ``deeptree.pipeline.SegmentationResult`` of ``amc+gul`` + stage 2 (if run).
    """

    gt = np.asarray(case.label) > 0
    rules = [check_rule(r) for r in rules]
    if reference is None:
        reference = prepare_ground_truth(gt, case.spacing, name=f"{case.id} label")
    if stage2_models is not None and not isinstance(stage2_models, dict):
        stage2_models = {PAPER_STAGE2: stage2_models}
    stage2_models = stage2_models or {}
    masks: dict = {rule: {} for rule in rules}  # rule -> method -> mask
    seconds: dict[str, float] = {}
    repaired: dict = {}  # (connector name, stage-1 mask digest) -> repair result
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
        seconds[key] = time.perf_counter() - t0
        for rule in rules:
            masks[rule][key] = pred.mask_for(rule)
        if key not in LOSS_VARIANTS:
            continue
        for name, connector in stage2_models.items():
            if name != PAPER_STAGE2 and key != "amc+gul":
                continue
            method = key + STAGE2_SUFFIX if name == PAPER_STAGE2 else option_method(name)
            t1 = time.perf_counter()
            for rule in rules:
                stage1_mask = masks[rule][key]
                digest = (name, _digest(stage1_mask))
                if digest not in repaired:  # the same mask under another rule: repaired once
                    repaired[digest] = repair(
                        stage1_mask, case.ct, connector, device=device, name=f"{case.id} CT"
                    )
                masks[rule][method] = repaired[digest].mask
                if method == "amc+gul" + STAGE2_SUFFIX:
                    masks[rule]["_repair"] = repaired[digest]
            seconds[method] = seconds[key] + time.perf_counter() - t1
    if baseline:
        t0 = time.perf_counter()
        try:
            grown = region_growing(case.ct, case.spacing)
        except InputError:  # no trachea found: the baseline returns nothing, scored as such
            grown = np.zeros(gt.shape, np.uint8)
        for rule in rules:
            masks[rule][REGION_GROWING] = grown
        seconds[REGION_GROWING] = time.perf_counter() - t0
    rows, generation_rows = [], []
    scored: dict = {}  # mask digest -> (metrics, generation rows): equal masks scored once
    for rule in rules:
        for method in [m for m in masks[rule] if not m.startswith("_")]:
            mask = masks[rule][method]
            digest = _digest(mask)
            if digest not in scored:
                m = score_masks({method: mask}, reference, case.spacing, protocol)[method]
                scored[digest] = (m, generation_metrics(mask, reference, case.spacing))
            m, generations = scored[digest]
            values = {k: float(m[k]) for k in (*TABLE_METRICS, "DSC")}
            if not np.any(mask):  # nothing predicted: precision is undefined, not 0
                values["precision"] = float("nan")
            rows.append(
                {
                    "case": case.id,
                    "method": method,
                    "rule": rule,
                    **values,
                    "n_components": int(m["n_components"]),
                    "seconds": round(seconds[method], 3),
                }
            )
            for g in generations:
                generation_rows.append({"case": case.id, "method": method, "rule": rule, **g})
    return rows, generation_rows, masks[rules[0]]


def _digest(mask: np.ndarray) -> tuple:
    """Identity of a mask's content (shape and bytes), to repair and score equal masks once."""
    mask = np.ascontiguousarray(np.asarray(mask) > 0)
    return mask.shape, hashlib.sha1(mask.tobytes()).hexdigest()


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


def _seed_order(seed):
    return (seed is None, seed)


def summarize_methods(rows: Sequence[dict], **bootstrap) -> dict[str, dict]:
    """Per method and metric (BD, TLD, precision, DSC; fractions) of one output rule: the mean
    over training seeds of the case means with its 95% two-level bootstrap interval
    (``deeptree.evaluation.stats.summarize_table``: ``mean``, ``low``, ``high``,
    ``n_seeds``, ``n_cases``), over the models that did not fail, plus ``n_failed`` (models
    left out: an empty prediction on a test case, ``stats.failed_models``) and ``per_seed``
    (list of (seed, mean over the cases, None for a failed model), in seed order). Every
    model failed: ``mean``, ``low``, ``high`` NaN and ``n_seeds`` 0. Rows without a
    ``seed`` key count as one seed."""
    rows = [r if "seed" in r else {**r, "seed": 0} for r in rows]
    failed = failed_models(rows)
    out = {}
    for method, mine in group_by_method(rows).items():
        seeds = sorted({r["seed"] for r in mine}, key=_seed_order)
        bad = {s for s in seeds if (method, s) in failed}
        good = [r for r in mine if r["seed"] not in bad]
        n_cases = len({r["case"] for r in mine})
        out[method] = {}
        for k in (*TABLE_METRICS, "DSC"):
            if good:
                stats = summarize_table(seed_case_table(good, method, k), **bootstrap)
            else:
                nan = float("nan")
                stats = {"mean": nan, "low": nan, "high": nan, "n_seeds": 0, "n_cases": n_cases}
            stats["n_failed"] = len(bad)
            stats["per_seed"] = [
                (s, None if s in bad else float(np.mean([r[k] for r in mine if r["seed"] == s])))
                for s in seeds
            ]
            out[method][k] = stats
    return out


def harmonic_tld_precision(metrics: dict) -> float:
    """The harmonic mean of TLD and precision (fractions) of one prediction, 2 T P / (T + P);
    0 when nothing of the tree is detected or the prediction is empty (precision NaN)."""
    t, p = float(metrics["TLD"]), float(metrics["precision"])
    if not (np.isfinite(t) and np.isfinite(p)) or t + p <= 0:
        return 0.0
    return 2 * t * p / (t + p)


def pick_output_rule(scores: dict[str, Sequence[float]]) -> str:
    """The output rule with the higher mean validation score (one value per stage-1 model);
    a tie goes to the first of ``deeptree.stage1.predict.OUTPUT_RULES`` (argmax)."""
    means = {rule: float(np.mean(scores[rule])) for rule in OUTPUT_RULES if rule in scores}
    if not means:
        return OUTPUT_RULES[0]
    best = max(means.values())
    return next(rule for rule, m in means.items() if m == best)


def rule_figures(validation: dict[str, float]) -> str:
    """``"argmax 64.4, union 64.5"``: each rule's validation score (a fraction) in percent, with
    one decimal, or more (up to four) where one decimal would print different scores as equal,
    so that the sentence never shows a winner and a loser with the same figure."""
    values = [100 * float(v) for v in validation.values()]
    for decimals in range(1, 5):
        printed = [f"{v:.{decimals}f}" for v in values]
        if len(set(printed)) == len(set(values)):
            break
    return ", ".join(f"{rule} {text}" for rule, text in zip(validation, printed, strict=True))


def choose_output_rule(models: dict, val_cases: Sequence, *, device=None) -> dict:
    """The output rule of a run's tables, by a rule fixed in advance, on the validation
    phantoms only: the rule (``deeptree.stage1.predict.OUTPUT_RULES``) with the higher mean,
    over every given stage-1 model, of the model's validation score, the mean over the
    validation cases of :func:`harmonic_tld_precision` (paper protocol). Ties, and a run
    without validation cases, take argmax.

    Parameters
    ----------
    models : dict
        Model name (e.g. ``"seed0/amc"``) -> :class:`~deeptree.checkpoints.LoadedModel`; the
        reproduction gives every stage-1 variant of every training seed.
    val_cases : sequence of deeptree.stage1.data.Stage1Case
        Prepared validation cases (normalised CT ``image``, anatomy ``label``, ``spacing``
        in mm, ``affine``); empty: no choice is made.
    device : optional

    Returns
    -------
    dict
        ``rule``; ``validation`` (rule -> the mean score, empty without validation);
        ``per_model`` (rule -> name -> score); ``n_models``, ``n_cases``; ``text``: the
        sentence the tables print.
    """
    if not val_cases or not models:
        return {
            "rule": OUTPUT_RULES[0], "validation": {}, "per_model": {}, "n_models": len(models),
            "n_cases": 0,
            "text": "argmax, fixed in advance (nnU-Net's rule): this run has no validation "
            "phantoms to choose on",
        }  # fmt: skip
    per_model: dict[str, dict[str, float]] = {rule: {} for rule in OUTPUT_RULES}
    references = [
        prepare_ground_truth(np.asarray(c.label) > 0, c.spacing, affine=c.affine, name=f"{c.id} label")
        for c in val_cases
    ]  # fmt: skip
    for name, (model, meta) in models.items():
        values: dict[str, list[float]] = {rule: [] for rule in OUTPUT_RULES}
        for case, reference in zip(val_cases, references, strict=True):
            pred = predict_stage1(
                model, np.asarray(case.image), meta["patch_size"],
                overlap=meta.get("overlap", 0.5), device=device, normalized=True, name=case.id,
            )  # fmt: skip
            for rule in OUTPUT_RULES:
                mask = pred.mask_for(rule)
                m = airway_metrics(mask, reference, case.spacing) if mask.any() else None
                values[rule].append(harmonic_tld_precision(m) if m is not None else 0.0)
        for rule in OUTPUT_RULES:
            per_model[rule][name] = float(np.mean(values[rule]))
    scores = {rule: list(per_model[rule].values()) for rule in OUTPUT_RULES}
    rule = pick_output_rule(scores)
    validation = {r: float(np.mean(v)) for r, v in scores.items()}
    figures = rule_figures(validation)
    return {
        "rule": rule,
        "validation": validation,
        "per_model": per_model,
        "n_models": len(models),
        "n_cases": len(val_cases),
        "text": f"{rule}, chosen on validation (validation figures, the mean over "
        f"{len(models)} stage-1 models x {len(val_cases)} validation phantoms of the harmonic "
        f"mean of TLD and precision, percent: {figures}; higher wins, a tie goes to argmax)",
    }
