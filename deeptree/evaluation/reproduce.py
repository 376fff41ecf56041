"""The paper's comparisons in one call: split a dataset, train or load every model, predict the
test cases, evaluate, and write the tables and figures (notebook 07,
``deeptree reproduce``).

What is compared
    *Table 2 (ablation)*: the stage-1 network ("nnUNet*") trained with each of the four losses
    of ``deeptree.stage1.losses`` (``plain``, ``amc``, ``gul``, ``amc+gul``), each scored without and
    with the paper's stage 2 (trained once per training seed, it repairs all four), then
    one row per stage-2 option (``deeptree.stage2.task.STAGE2_OPTIONS``: the additions to the
    paper's stage 2, each trained on its own and applied after amc+gul). *Table 1
    (comparison)*, with the methods that can be built here: the classical baseline
    (``deeptree.evaluation.baselines.region_growing``), plain nnUNet* with DiceCE (= Table 2
    row 1, beside the paper's own nnUNet* row), clDice (DiceCE + MONAI's soft clDice,
    :class:`~deeptree.stage1.losses.DiceCEClDiceLoss`, a model of its own), GUL, the WingsNet
    loss (= Table 2 row 3; WingsNet's own network is not built), and DeepTree (AMC + GUL +
    stage 2 = Table 2 row 8).

A fair ablation
    The variants differ only in the component ablated: the same network body, iterations,
    training cases and training seeds; for one seed the same initial weights (all but the
    output heads, ``deeptree.networks.stage1_network``); each with nnU-Net's patch sampler
    for its own labels (``deeptree.stage1.data``); one output rule for all
    (``deeptree.stage1.predict.airway_from_probabilities``).

Output rule
    Every stage-1 model (and DeepTree: its stage 2 repairs that rule's stage-1 mask) is scored
    under both output rules, argmax and union. The tables use the rule chosen by a rule fixed
    in advance, on the validation phantoms only
    (:func:`~deeptree.evaluation.scoring.choose_output_rule`): the rule with the higher mean,
    over every stage-1 variant of every training seed, of the validation harmonic mean of TLD
    and precision; without validation phantoms (smoke), argmax. The other rule's tables are
    written beside (``tables_<rule>.md``).

Statistics (``deeptree.evaluation.stats``)
    Each method is trained once per training seed and scored on every test case. A table
    cell is the mean over seeds of the case means with a 95% two-level bootstrap interval
    (seeds and cases resampled); a component's effect is the paired difference (same seed,
    same case) with its interval, and the verdict is "improves" only when the interval lies
    above zero, "hurts" below, else "not resolved at this scale", decided on the interval
    as printed. A model with an empty prediction (precision undefined) is counted as failed
    in its cell and left out of the means; each cell also lists its per-seed values. The
    stage-2 options (trained for fewer seeds) sit in a table of their own beside the paper's
    stage 2 of the same seeds. Beside the tables: the precision of each test case's ground
    truth dilated by one voxel (:func:`dilated_gt_precision`), what one voxel of thickness
    costs.

Metrics
    ``deeptree.metrics.airway_metrics`` with the paper's protocol (trachea and main bronchi
    excluded, largest 26-connected component of the prediction); per-generation TLD and BD
    of the first training seed pooled over the test cases
    (``deeptree.metrics.generation_metrics``).

The paper's numbers
    :data:`~deeptree.evaluation.paper.PAPER_TABLE1` and :data:`~deeptree.evaluation.paper.PAPER_TABLE2` hold the published figures (percent). They
    were measured on real CT (the BAS dataset, 20 test cases with curated labels) and are
    printed *beside* ours, labelled :data:`~deeptree.evaluation.paper.PAPER_SOURCE`; they are never ours.

Data and seeds
    Without ``data``: ``settings.n_cases`` training + validation phantoms from the cohort
    seed (``settings.n_val`` of them validate) and ``settings.n_test`` test phantoms from
    the test seed, on which no setting is ever chosen. With an ATM'22-layout folder: the
    paper's proportions (:func:`~deeptree.evaluation.paper.split_sizes`): the paper splits
    90 cases 50/20/20; for ``n`` cases ``n_test = n_val = floor(2 n / 9 + 1/2)``, at least 1
    test case, at least 1 validation case when ``n >= 3``, the rest trains, in id order.

Models (``deeptree.evaluation.training``)
    Saved under ``<out>/models/seed<s>/<name>/last.pt`` (``deeptree.train`` checkpoints, loadable by
    ``deeptree.stage1.predict.load_stage1_model`` / ``deeptree.stage2.predict.load_stage2_model`` and
    ``deeptree predict``). A finished checkpoint whose metadata (variant, loss, network,
    profile, training case ids) and schedule match is loaded instead of retrained; an
    unfinished one is resumed; one that does not match is an error (never overwritten).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deeptree.checkpoints import load_checkpoint
from deeptree.config import CLDICE, LOSS_VARIANTS, ReproduceSettings, reproduce_settings
from deeptree.evaluation.budget import estimate_seconds
from deeptree.evaluation.convergence import convergence_rows, model_logs, silent_stage2_flags
from deeptree.evaluation.fanout import fan_out
from deeptree.evaluation.outputs import ReproduceResult, write_outputs
from deeptree.evaluation.paper import (
    REGION_GROWING,
    STAGE2_SUFFIX,
    TABLE_METRICS,
    Split,
    component_effects,
    generation_curves,
    option_method,
    option_rows,
    table1_rows,
    table2_rows,
)
from deeptree.evaluation.scoring import (
    choose_output_rule,
    dilated_gt_precision,
    evaluate_case,
    summarize_methods,
)
from deeptree.evaluation.shipped import shipped_rule, shipped_settings, verify_shipped
from deeptree.evaluation.stats import failed_models
from deeptree.evaluation.training import (
    fan_out_training,
    prepare_data,
    train_stage1_models,
    train_stage2_models,
)
from deeptree.io import SAMPLES_DIR, InputError, load_case, read_nifti
from deeptree.masks import label_components
from deeptree.metrics import airway_metrics, prepare_ground_truth
from deeptree.networks import choose_device
from deeptree.orientation import case_to_ras
from deeptree.pipeline import segment
from deeptree.progress import enabled as progress_enabled
from deeptree.resample import affine_spacing, from_model_grid, to_model_grid
from deeptree.stage1.predict import OUTPUT_RULES, load_stage1_model
from deeptree.stage1.task import class1_dice_failure
from deeptree.stage2.predict import load_stage2_model
from deeptree.stage2.task import case_sources

__all__ = [
    "estimate_seconds",
    "evaluate_case",
    "dilated_gt_precision",
    "reproduce",
    "run_on_real_ct",
    "summarize_methods",
    "weak_model_flags",
]


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def weak_model_flags(
    logs: dict, empty: dict | None = None, root: str | os.PathLike | None = None
) -> list[str]:
    """Stage-1 models that output nothing on the test cases, or whose last validation has a
    class-1 Dice below the floor (0.3).

    Parameters
    ----------
    logs : dict
        Model name -> its ``log.jsonl`` (``deeptree.train``).
    empty : dict, optional
        Model name -> the sentence saying where it predicted nothing (:func:`empty_models`,
        e.g. "outputs nothing: an empty prediction on every one of the 10 test cases (argmax
        rule)"): such a model is flagged so, whatever its log says.
    root : path-like, optional
        The run folder: log paths are printed relative to it (no path of the machine).

    Returns
    -------
    list of str
        One line per flagged model (:func:`deeptree.stage1.task.class1_dice_failure`); a
        model whose log holds no per-class validation Dice is flagged only if it is in
        ``empty``.
    """
    empty = dict(empty or {})
    flags = []
    for name, log in logs.items():
        try:
            problem = class1_dice_failure(log)
        except InputError:  # not validated (smoke), or a log from before per-class Dice
            problem = None
        if problem is not None and root is not None:
            problem = problem.replace(str(log), os.path.relpath(log, root))
        if name in empty:
            why = empty.pop(name)
            if problem is not None:  # the log's figures, without the "misses the trachea" guess
                why += "; " + problem.removesuffix(
                    ": the model misses the trachea and main bronchi"
                )
            flags.append(f"{name}: {why}")
        elif problem is not None:
            flags.append(f"{name}: {problem}: the trachea and main bronchi are not learned")
    flags += [f"{name}: {why}" for name, why in empty.items()]
    return flags


def empty_models(rows: Sequence[dict], methods: Sequence[str], rule: str) -> dict[str, str]:
    """The models of ``methods`` with an empty prediction on a test case, by
    ``seed<s>/<method>``, with the sentence :func:`weak_model_flags` prints.

    Parameters
    ----------
    rows : sequence of dict
        Per-case rows of one output rule (``rule``), with ``seed``.
    methods : sequence of str
        Method ids to check (the stage-1 models).
    rule : str
        The output rule of ``rows`` (named in the sentence).
    """
    n_cases = len({r["case"] for r in rows})
    out = {}
    for (method, seed), n in failed_models(rows).items():
        if method not in methods:
            continue
        out[f"seed{seed}/{method}"] = (
            f"outputs nothing: an empty prediction on every one of the {n} test cases ({rule} rule)"
            if n == n_cases
            else f"an empty prediction on {n} of {n_cases} test cases ({rule} rule), counted "
            "as a failed model"
        )
    return out


def rule_tables(rows: Sequence[dict], options: Sequence[str] = ()) -> dict:
    """Every table of one output rule from its per-case rows.

    Returns
    -------
    dict
        ``summary`` (:func:`summarize_methods`), ``table1`` (with nnUNet* on clDice's seeds
        beside clDice), ``table2``, ``options`` (the stage-2 options beside the paper's
        stage 2 of the same seeds, :func:`~deeptree.evaluation.paper.option_rows`),
        ``effects``.
    """
    summary = summarize_methods(rows)
    option_ids = {option_method(o) for o in options}
    option_seeds = {r["seed"] for r in rows if r["method"] in option_ids}
    baseline = "amc+gul" + STAGE2_SUFFIX
    matched = summarize_methods(
        [r for r in rows if r["method"] in option_ids
         or (r["method"] == baseline and r["seed"] in option_seeds)]
    ) if option_ids else {}  # fmt: skip
    cldice_seeds = {r["seed"] for r in rows if r["method"] == CLDICE}
    matched1 = summarize_methods(
        [r for r in rows if r["method"] in ("plain", CLDICE) and r["seed"] in cldice_seeds]
    ) if cldice_seeds else {}  # fmt: skip
    return {
        "summary": summary,
        "table1": table1_rows(summary, matched1),
        "table2": table2_rows(summary),
        "options": option_rows(matched, options),
        "effects": component_effects(rows, options),
    }


# --------------------------------------------------------------------------------------------
# the whole run
# --------------------------------------------------------------------------------------------
def reproduce(
    profile: str = "cpu",
    out: str | os.PathLike = "runs/reproduce",
    data: str | os.PathLike | None = None,
    *,
    settings: ReproduceSettings | None = None,
    device=None,
    progress: bool | None = None,
    stage2: bool = True,
    workers: int | None = None,
    devices: Sequence[str] | None = None,
    models: str | os.PathLike | None = None,
) -> ReproduceResult:
    """Split, train or load every model for every training seed, predict the test cases,
    evaluate, write tables with intervals.

    Seeds (:class:`~deeptree.config.ReproduceSettings`): ``settings.seed`` draws the
    training and validation phantoms, ``settings.test_seed`` the test phantoms (never used
    to choose anything), ``settings.seeds`` are the training seeds. For each training seed
    every stage-1 model starts from the same weights (but its output heads) and sees the
    same patch stream of nnU-Net's sampler for its own labels; the paper's stage 2 is
    trained once per seed and repairs every variant of that seed; the stage-2 options
    (``settings.stage2_options``) and clDice are trained for the first
    ``settings.extra_seeds`` seeds. The output rule of the tables
    (:func:`~deeptree.evaluation.scoring.choose_output_rule`) and the option ``best``'s
    checkpoint are chosen on the validation phantoms (the inference overlap is fixed in
    advance); nothing on the test phantoms.

    Parameters
    ----------
    profile : str
        ``smoke``, ``cpu`` or ``gpu`` (ignored when ``settings`` is given).
    out : path-like
        Run folder: ``cohort/`` and ``test_cohort/`` (synthetic data), ``cache/``,
        ``models/seed<s>/``, ``tables/``, ``figures/``, ``results.json``.
    data : path-like, optional
        An ATM'22-layout folder (``imagesTr`` + ``labelsTr``), split 50/20/20; None: a
        synthetic cohort (``settings.n_cases`` training + validation phantoms and
        ``settings.n_test`` test phantoms) is generated into ``out`` (resumably).
    settings : ReproduceSettings, optional
        Default :func:`reproduce_settings(profile) <reproduce_settings>`.
    device : optional
        Default: CUDA if available.
    progress : bool or None
        Progress bars; None: unless under the notebook runner
        (:func:`deeptree.progress.enabled`).
    stage2 : bool
        Train stage 2 and score the ``+stage2`` rows (the ablation's lower half and DeepTree).
    workers : int, optional
        DataLoader worker processes of every training run. Default: 0 on a CPU (the
        cores are busy with the network), ``min(12, cores - 2)`` on a GPU, where patch
        sampling and stage-2 simulations must keep up with the network.
    devices : sequence of str, optional
        Two or more devices (``["cuda:0", "cuda:1"]``): the models are first trained in
        parallel, one training per device (:func:`deeptree.evaluation.fanout.fan_out`; one
        job per seed and stage-1 model, one per seed for its stage-2 models), then loaded;
        the default ``workers`` of those trainings is each device's share of the CPUs
        (:func:`deeptree.distributed.default_workers`). On GPUs the models are those of a
        sequential run. Default on a CPU: ``settings.cpu_trainings`` times ``"cpu"`` (the
        cpu profile: two trainings side by side, each with its share of the cores as torch
        threads, :func:`deeptree.evaluation.fanout.cpu_threads`); give ``["cpu"]`` to train
        one after the other with torch's default threads. On a CPU the test cases are
        scored the same way: one test case per process, side by side.
    models : path-like, optional
        A results folder with shipped models (``deeptree.evaluation.shipped``,
        ``deeptree ship``): every file is checked against the manifest, the models are loaded
        from there and never trained, the settings are the manifest's (``settings`` may
        only reduce what is scored: fewer test cases or seeds), the output rule is the one
        chosen on the validation phantoms when the models were trained (recorded in the
        manifest). The phantoms are regenerated from their seeds into ``out``.

    Returns
    -------
    ReproduceResult (its files are already written, see ``result.paths``)

    Raises
    ------
    InputError
        Bad data folder (see :func:`split_dataset`), or an incompatible checkpoint in
        ``out/models``.
    """
    t_start = time.perf_counter()
    progress = progress_enabled(progress)
    shipped = verify_shipped(models) if models is not None else None
    if settings is None:
        settings = shipped_settings(shipped) if shipped else reproduce_settings(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models_root = Path(models) / "models" if shipped else out / "models"
    device = choose_device(device)
    fan_workers = workers  # None: each parallel training takes its share of the CPUs
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(12, (os.cpu_count() or 1) - 2))
    seconds: dict[str, float] = {}
    # 1. data: the cohort (generated when no folder is given), its split, prepared cases
    data_label, split, train_cases, val_cases = prepare_data(settings, out, data, progress)
    seconds["data"] = time.perf_counter() - t_start
    # (several devices: every model trained in parallel first; the loop below then loads them)
    if devices is None and device.type == "cpu" and settings.cpu_trainings > 1:
        devices = ["cpu"] * settings.cpu_trainings
    parallel = bool(devices) and list(devices) != ["cpu"]  # ["cpu"]: one after the other
    fanned = (
        fan_out_training(settings, out, data, devices, stage2, fan_workers)
        if parallel and not shipped
        else {}
    )
    run_options = {
        "device": device, "progress": progress, "workers": workers, "load_only": bool(shipped),
    }  # fmt: skip
    checkpoints: dict[str, Path] = {}
    trained: dict[str, bool] = {}
    loaded: dict[int, dict] = {}  # seed -> stage-1 models, for the output rule's choice
    logs: dict[str, Path] = {}
    options = settings.stage2_options if stage2 else ()
    if stage2:  # prepared once, for every seed's stage-2 models
        sources = case_sources(split.train)
        val_sources = case_sources(split.val) if settings.validate else []
    for i, seed in enumerate(settings.seeds):
        extra = i < settings.extra_seeds
        root = models_root / f"seed{seed}"
        # 2. stage 1: the four loss variants (and clDice for the first seeds)
        paths, did = train_stage1_models(
            settings, seed, extra, split, train_cases, val_cases, root, seconds, run_options
        )
        for key, path in paths.items():
            checkpoints[f"seed{seed}/{key}"], trained[f"seed{seed}/{key}"] = path, did[key]
            logs[f"seed{seed}/{key}"] = path.parent / "log.jsonl"
        if not shipped:
            loaded[seed] = {k: load_stage1_model(p, device) for k, p in paths.items()}
        # 3. stage 2: the paper's, once per seed, repairs every variant; the options after
        # amc+gul for the first seeds
        if stage2:
            paths, did = train_stage2_models(
                settings, seed, options if extra else (), (sources, val_sources), split, root,
                seconds, run_options,
            )  # fmt: skip
            for key, path in paths.items():
                checkpoints[f"seed{seed}/{key}"] = path
                if key in did:  # "best" is the paper's run's best.pt, not a training
                    trained[f"seed{seed}/{key}"] = did[key]
    for did_train, secs in fanned.values():  # what the parallel trainings did
        trained.update(did_train)
        seconds.update(secs)
    # 4. the output rule of the tables, chosen on the validation phantoms (every stage-1
    # variant of every seed), then every method on the test cases under both rules
    t_eval = time.perf_counter()
    if shipped:  # chosen on validation when the models were trained
        choice = shipped_rule(shipped)
    else:
        choice = choose_output_rule(
            {f"seed{seed}/{k}": m for seed in settings.seeds for k, m in loaded[seed].items()
             if k in LOSS_VARIANTS},
            val_cases, device=device,
        )  # fmt: skip
    seconds["choose output rule"] = time.perf_counter() - t_eval
    rule = choice["rule"]
    rules = (rule, *[r for r in OUTPUT_RULES if r != rule])
    t_eval = time.perf_counter()
    rows, generation_rows, figure_case, gt_precision = _evaluate_test_cases(
        split, settings.seeds, checkpoints, device, progress, rules,
        devices=devices if parallel else None,
    )  # fmt: skip
    seconds["evaluate"] = time.perf_counter() - t_eval
    by_rule = {r: rule_tables([x for x in rows if x["rule"] == r], options) for r in rules}
    chosen_rows = [x for x in rows if x["rule"] == rule]
    trained_logs = model_logs(checkpoints)
    convergence = convergence_rows(trained_logs, _torch_threads(checkpoints))
    flags = weak_model_flags(
        logs, empty_models(chosen_rows, (*LOSS_VARIANTS, CLDICE), rule), root=out
    ) + silent_stage2_flags(convergence, trained_logs, root=out)
    first = settings.seeds[0]
    tables = by_rule[rule]
    result = ReproduceResult(
        settings=settings,
        data_label=data_label,
        split=split,
        rows=rows,
        generation_rows=generation_rows,
        summary=tables["summary"],
        table1=tables["table1"],
        table2=tables["table2"],
        effects=tables["effects"],
        curves=generation_curves([g for g in generation_rows if g["rule"] == rule]),
        figure_case=figure_case,
        # the first seed's models by name (run_on_real_ct, notebooks); every model in
        # all_checkpoints
        checkpoints={
            k.split("/", 1)[1]: v for k, v in checkpoints.items() if k.startswith(f"seed{first}/")
        },
        trained=trained,
        seconds=seconds,
        all_checkpoints=checkpoints,
        gt_precision=gt_precision,
        flags=flags,
        estimate=estimate_seconds(settings),
        rule=choice,
        by_rule=by_rule,
        option_table=tables["options"],
        logs=logs,  # write_outputs draws every stage-1 model's training curves
        convergence=convergence,
        shipped=Path(models).resolve().name if shipped else "",
    )
    seconds["total"] = time.perf_counter() - t_start
    write_outputs(result, out)
    return result


def _torch_threads(checkpoints: dict) -> dict[str, int]:
    """Model name -> the torch threads its checkpoint was trained with (1 if not recorded)."""
    return {k: int(load_checkpoint(p).get("torch_threads") or 1) for k, p in checkpoints.items()}


def _evaluate_test_cases(
    split: Split, seeds: Sequence[int], checkpoints: dict, device, progress: bool,
    rules: Sequence[str] = ("argmax",), devices: Sequence[str] | None = None,
) -> tuple[list[dict], list[dict], dict, list[dict]]:  # fmt: skip
    """Score every method of every training seed on the test cases under each output rule:
    per-case rows (with ``seed``; None for the seed-free baseline, and ``rule``),
    per-generation rows, the first test case's masks of the first seed under the first rule
    for the figures, and the precision of each test case's dilated ground truth.

    ``checkpoints``: ``seed<s>/<name>`` -> checkpoint (stage-1 variants and clDice, the
    paper's ``stage2`` and the options). ``devices`` (two or more): one test case per
    process, side by side (:func:`~deeptree.evaluation.fanout.fan_out`); the rows are those
    of the cases in order either way."""
    import functools

    from tqdm.auto import tqdm

    jobs = [
        functools.partial(_score_test_case, paths, i, tuple(seeds), checkpoints, tuple(rules))
        for i, paths in enumerate(split.test)
    ]
    if devices:
        scored = fan_out(jobs, list(devices))
    else:
        scored = [job(device) for job in tqdm(jobs, desc="evaluate", disable=not progress)]
    rows, generation_rows, figure_case, gt_precision = [], [], {}, []
    for case_rows, case_generations, case_figure, case_gt_precision in scored:
        rows += case_rows
        generation_rows += case_generations
        figure_case = figure_case or case_figure
        gt_precision.append(case_gt_precision)
    return rows, generation_rows, figure_case, gt_precision


def _score_test_case(
    paths, index: int, seeds: tuple, checkpoints: dict, rules: tuple, device
) -> tuple[list[dict], list[dict], dict, dict]:
    """One test case of :func:`_evaluate_test_cases` (a picklable job: the models are
    loaded here from their checkpoints): its rows, per-generation rows (first seed), the
    figure case (the first test case only, else empty) and its dilated-GT precision."""
    case = case_to_ras(load_case(paths.image, paths.label, case_id=paths.id))  # models' order
    gt = np.asarray(case.label) > 0
    reference = prepare_ground_truth(gt, case.spacing, name=f"{case.id} label")
    gt_precision = {"case": case.id, "precision": dilated_gt_precision(gt, case.spacing, reference)}
    rows, generation_rows, figure_case = [], [], {}
    for j, seed in enumerate(seeds):
        mine = {
            k.split("/", 1)[1]: p for k, p in checkpoints.items() if k.startswith(f"seed{seed}/")
        }
        stage1 = {
            k: load_stage1_model(p, device)
            for k, p in mine.items()
            if k in (*LOSS_VARIANTS, CLDICE)
        }
        stage2 = {k: load_stage2_model(p, device) for k, p in mine.items() if k not in stage1}
        case_rows, case_generations, masks = evaluate_case(
            case, stage1, stage2 or None, device=device, reference=reference, baseline=j == 0,
            rules=rules,
        )  # fmt: skip
        for r in (*case_rows, *case_generations):
            r["seed"] = None if r["method"] == REGION_GROWING else seed
        rows += case_rows
        # per-generation curves: the first seed (pooled counts, no interval)
        generation_rows += case_generations if j == 0 else []
        if index == 0 and j == 0:  # the figures show the first test case, first seed
            figure_case = {
                "id": case.id,
                "ct": case.ct,
                "gt": gt,
                "spacing": case.spacing,
                "masks": {k: v for k, v in masks.items() if not k.startswith("_")},
                "repair": masks.get("_repair"),
            }
    return rows, generation_rows, figure_case, gt_precision


# --------------------------------------------------------------------------------------------
# real CT samples
# --------------------------------------------------------------------------------------------
#: The real CT samples the trained models are run on (folder under ``deeptree.io.SAMPLES_DIR``).
REAL_SAMPLES: tuple[str, ...] = ("totalseg_chest", "cip_ct64")


def run_on_real_ct(
    checkpoints: dict,
    samples_dir: str | os.PathLike | None = None,
    *,
    samples: Sequence[str] = REAL_SAMPLES,
    device=None,
) -> tuple[list[dict], dict]:
    """Run nnUNet* (plain, stage 1) and DeepTree (AMC + GUL + stage 2) of a reproduction on the
    real CT samples, and score them where a label exists.

    Nothing is resampled: the models see the real CT at its own voxel size (1.5 mm for
    ``totalseg_chest``, ~4 mm for ``cip_ct64``), whatever the phantoms' spacing was, in RAS
    voxel order as they were trained (the samples are stored LPS: flipped for the models,
    the masks flipped back; ``deeptree.orientation``). The
    ``cip_ct64`` label is coarse (a few generations at 4 mm): when its parse has no branch
    beyond the main bronchi, the paper protocol is undefined and the ``atm22`` protocol (no
    exclusion) is used; the row says which.

    Parameters
    ----------
    checkpoints : dict
        ``ReproduceResult.checkpoints``: ``"plain"``, ``"amc+gul"`` and (optional) ``"stage2"``.
    samples_dir : path-like, optional
        Default ``deeptree.io.SAMPLES_DIR``.
    samples : sequence of str
        Sample folders (each with ``ct.nii.gz``, optionally ``airway.nii.gz``).
    device : optional

    Returns
    -------
    rows : list of dict
        ``sample``, ``method``, ``spacing`` (mm), ``voxels`` (predicted, final mask),
        ``components`` (of the stage-1 mask), ``volume_ml``, and ``BD``, ``TLD``,
        ``precision``, ``DSC``, ``protocol`` where a label exists (else None).
    masks : dict
        sample -> ``{"ct", "spacing", "label" (or None), method -> mask}``.
    """

    folder = Path(samples_dir) if samples_dir is not None else SAMPLES_DIR
    plain = load_stage1_model(checkpoints["plain"], device or "cpu")
    deeptree_s1 = load_stage1_model(checkpoints["amc+gul"], device or "cpu")
    stage2 = (
        load_stage2_model(checkpoints["stage2"], device or "cpu")
        if "stage2" in checkpoints
        else None
    )
    rows, masks = [], {}
    for name in samples:
        ct = read_nifti(folder / name / "ct.nii.gz")
        label_path = folder / name / "airway.nii.gz"
        label = read_nifti(label_path).array > 0 if label_path.is_file() else None
        reference = (
            prepare_ground_truth(label, ct.spacing, affine=ct.affine, name=str(label_path))
            if label is not None
            else None
        )
        masks[name] = {"ct": ct.array, "spacing": ct.spacing, "label": label}
        # the models' voxel order (RAS), at the CT's own voxel size; masks come back exactly
        model_ct, grid = to_model_grid(ct.array, ct.affine, None, str(folder / name / "ct.nii.gz"))
        runs = {
            "nnUNet*": (plain, None),
            "DeepTree" if stage2 is not None else "nnUNet* + AMC + GUL": (deeptree_s1, stage2),
        }
        for method, (model, connector) in runs.items():
            seg = segment(
                model_ct,
                model,
                connector,
                affine_spacing(grid.model_affine),
                affine=grid.model_affine,
                device=device,
                name=str(folder / name / "ct.nii.gz"),
            )
            mask = from_model_grid(
                seg.mask if connector is not None else seg.stage1_mask, grid, "mask"
            )
            masks[name][method] = mask
            row = {
                "sample": name,
                "method": method,
                "spacing": tuple(round(s, 2) for s in ct.spacing),
                "voxels": int(np.count_nonzero(mask)),
                "volume_ml": round(float(np.count_nonzero(mask) * np.prod(ct.spacing) / 1000), 2),
                "components": int(label_components(seg.stage1_mask)[1]),
            }
            if reference is not None:
                try:
                    m, protocol = airway_metrics(mask, reference, ct.spacing, "paper"), "paper"
                except InputError:  # coarse label: nothing beyond the main bronchi
                    m, protocol = airway_metrics(mask, reference, ct.spacing, "atm22"), "atm22"
                row.update({k: float(m[k]) for k in (*TABLE_METRICS, "DSC")}, protocol=protocol)
            else:
                row.update({k: None for k in (*TABLE_METRICS, "DSC")}, protocol=None)
            rows.append(row)
    return rows, masks
