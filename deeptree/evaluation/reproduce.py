"""The paper's comparisons in one call: split a dataset, train or load every model, predict the
test cases, evaluate, and write the tables and figures (notebook 07,
``deeptree reproduce``).

What is compared
    *Table 2 (ablation)*: the stage-1 network ("nnUNet*") trained with each of the four losses
    of ``deeptree.stage1.losses`` (``plain``, ``amc``, ``gul``, ``amc+gul``), each scored without and
    with stage 2 (one stage-2 model, trained once, repairs all four). *Table 1 (comparison)*,
    with the methods that can be built here: the classical baseline
    (``deeptree.evaluation.baselines.region_growing``), plain nnUNet* with DiceCE (= Table 2 row 1),
    clDice (DiceCE + MONAI's soft clDice, :class:`~deeptree.stage1.losses.DiceCEClDiceLoss`, a model of its own),
    GUL, the WingsNet loss (= Table 2 row 3: nnUNet* with DiceCE + GUL; WingsNet's own network
    is not built), and DeepTree (AMC + GUL + stage 2 = Table 2 row 8).

Metrics
    ``deeptree.metrics.airway_metrics`` with the paper's protocol (trachea and main bronchi
    excluded, largest 26-connected component of the prediction), BD, TLD and precision as mean
    ± sample standard deviation over the test cases; per-generation TLD and BD pooled over the
    test cases (``deeptree.metrics.generation_metrics``).

The paper's numbers
    :data:`~deeptree.evaluation.paper.PAPER_TABLE1` and :data:`~deeptree.evaluation.paper.PAPER_TABLE2` hold the published figures (percent). They
    were measured on real CT (the BAS dataset, 20 test cases with curated labels) and are
    printed *beside* ours, labelled :data:`~deeptree.evaluation.paper.PAPER_SOURCE`; they are never ours.

Split (:func:`~deeptree.evaluation.paper.split_sizes`)
    The paper splits 90 cases 50/20/20 (train/validation/test). For ``n`` cases we keep the
    proportions 5/9, 2/9, 2/9: ``n_test = n_val = floor(2 n / 9 + 1/2)`` (round half up), at
    least 1 test case, at least 1 validation case when ``n >= 3``, and the rest (at least 1)
    trains. Cases are taken in id order: training first, then validation, then test (a fixed,
    seed-free split as the paper's fixed split). 9 cases give 5/2/2, 3 give 1/1/1, 18 give
    10/4/4, 90 give 50/20/20.

Models
    Saved under ``<out>/models/<name>/last.pt`` (``deeptree.train`` checkpoints, loadable by
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

from deeptree.checkpoints import CHECKPOINT_NAME, load_checkpoint, selected_checkpoint
from deeptree.config import (
    CLDICE,
    LOSS_VARIANTS,
    ReproduceSettings,
    TrainConfig,
    get_config,
    reproduce_settings,
)
from deeptree.evaluation.baselines import region_growing
from deeptree.evaluation.compare import group_by_method, score_masks
from deeptree.evaluation.outputs import ReproduceResult, write_outputs
from deeptree.evaluation.paper import (
    REGION_GROWING,
    STAGE2_SUFFIX,
    TABLE_METRICS,
    Split,
    component_effects,
    generation_curves,
    method_ids,
    split_dataset,
    table1_rows,
    table2_rows,
)
from deeptree.io import SAMPLES_DIR, InputError, load_case, read_nifti
from deeptree.masks import label_components
from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth, summarize
from deeptree.networks import choose_device
from deeptree.phantom import generate_cohort
from deeptree.pipeline import repair, segment
from deeptree.progress import enabled as progress_enabled
from deeptree.report import jsonable
from deeptree.stage1.data import load_cohort
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.stage1.task import cldice_task, stage1_task
from deeptree.stage2.data import prepare_stage2_source
from deeptree.stage2.predict import load_stage2_model
from deeptree.stage2.task import stage2_task
from deeptree.train import train


# --------------------------------------------------------------------------------------------
# train or load
# --------------------------------------------------------------------------------------------
def model_dir(models_root: str | os.PathLike, key: str) -> Path:
    """``<models_root>/stage1_<key>`` (``+`` written ``_``) or ``<models_root>/stage2``."""
    name = "stage2" if key == "stage2" else "stage1_" + key.replace("+", "_")
    return Path(models_root) / name


def _finished(path: Path, meta: dict, cfg: TrainConfig) -> bool:
    """True when ``path`` holds a finished run of exactly this model and schedule; False when
    there is none or it is unfinished (resume it); InputError when it is another model."""

    if not path.is_file():
        return False
    state = load_checkpoint(path)
    saved = state.get("meta", {})
    for key, value in jsonable(meta).items():
        if saved.get(key) != value:
            raise InputError(
                f"{path}: holds a model with {key}={saved.get(key)!r}, this run needs "
                f"{value!r}; give another --out (or delete that folder)"
            )
    saved_cfg = state.get("train_config", {})
    for key in ("iterations", "batch_size", "learning_rate", "seed"):
        if saved_cfg.get(key) != getattr(cfg, key):
            raise InputError(
                f"{path}: was trained with {key}={saved_cfg.get(key)!r}, this run has "
                f"{getattr(cfg, key)!r}; give another --out (or delete that folder)"
            )
    return int(state.get("iteration", 0)) >= cfg.iterations


def train_or_load(
    task, cfg: TrainConfig, out_dir, *, device=None, progress=True, workers: int = 0
) -> tuple[Path, bool, float]:
    """Train ``task`` into ``out_dir`` unless a finished compatible checkpoint is there.

    ``workers`` DataLoader processes prepare the batches (0: in the training process).

    Returns
    -------
    checkpoint : Path
        ``out_dir/last.pt``.
    trained : bool
        False when an existing checkpoint was reused.
    seconds : float
        Training wall time of this call (0 when reused).
    """

    path = Path(out_dir) / CHECKPOINT_NAME
    if _finished(path, task.meta, cfg):
        return path, False, 0.0
    result = train(
        task, cfg, out_dir, resume=True, device=device, progress=progress, num_workers=workers
    )
    return result.checkpoint, True, float(result.seconds)


def _stage2_sources(paths: Sequence) -> list:
    """``deeptree.stage2.data.Stage2Source`` of cases (a ``lungsTr/<id>.nii.gz`` beside
    ``labelsTr`` is the fragments' room, as ``deeptree.stage2.task.load_sources``)."""
    import warnings

    out = []
    for p in paths:
        case = load_case(p.image, p.label, case_id=p.id)
        lung = Path(p.label).parent.parent / "lungsTr" / Path(p.label).name
        room = read_nifti(lung).array > 0 if lung.is_file() else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out.append(prepare_stage2_source(case.ct, case.label, case.spacing, p.id, room))
    return out


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def evaluate_case(
    case,
    stage1_models: dict,
    stage2,
    *,
    device=None,
    protocol: str = "paper",
) -> tuple[list[dict], list[dict], dict]:
    """Every method on one test case.

    Parameters
    ----------
    case : deeptree.io.Case
        CT (HU), binary airway label, spacing (mm).
    stage1_models : dict
        Method id -> the :class:`~deeptree.checkpoints.LoadedModel` of ``load_stage1_model``. Ids that are a stage-1
        variant of ``deeptree.config.LOSS_VARIANTS`` are also scored after stage 2.
    stage2 : LoadedModel or None
        The stage-2 model (``load_stage2_model`` output); None: no ``+stage2`` rows.
    device : optional
    protocol : {"paper", "atm22"}

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
    reference = prepare_ground_truth(gt, case.spacing, name=f"{case.id} label")
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
        if key in LOSS_VARIANTS and stage2 is not None:
            t1 = time.perf_counter()
            result = repair(pred.mask, case.ct, stage2, device=device, name=f"{case.id} CT")
            masks[key + STAGE2_SUFFIX] = result.mask
            seconds[key + STAGE2_SUFFIX] = seconds[key] + time.perf_counter() - t1
            if key == "amc+gul":
                masks["_repair"] = result
    t0 = time.perf_counter()
    try:
        masks[REGION_GROWING] = region_growing(case.ct, case.spacing)
    except InputError:  # no trachea found: the baseline returns nothing, scored as such
        masks[REGION_GROWING] = np.zeros(gt.shape, np.uint8)
    seconds[REGION_GROWING] = time.perf_counter() - t0
    rows, generation_rows = [], []
    methods = [m for m in method_ids(True) if m in masks]
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


def summarize_methods(rows: Sequence[dict]) -> dict[str, dict]:
    """``{method: deeptree.metrics.summarize(...)}`` over the cases (BD, TLD, precision, DSC;
    fractions, sample standard deviation)."""

    return {
        method: summarize(mine, keys=(*TABLE_METRICS, "DSC"))
        for method, mine in group_by_method(rows).items()
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
) -> ReproduceResult:
    """Split, train or load every model, predict the test cases, evaluate, write tables.

    Parameters
    ----------
    profile : str
        ``smoke``, ``cpu`` or ``gpu`` (ignored when ``settings`` is given).
    out : path-like
        Run folder: ``cohort/`` (synthetic data), ``cache/``, ``models/``, ``tables/``,
        ``figures/``, ``results.json``.
    data : path-like, optional
        An ATM'22-layout folder (``imagesTr`` + ``labelsTr``); None: a synthetic cohort of
        ``settings.n_cases`` phantoms is generated into ``out/cohort`` (resumably) and used
        through the same code path.
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
    settings = settings if settings is not None else reproduce_settings(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = choose_device(device)
    if workers is None:
        workers = 0 if device.type == "cpu" else max(0, min(12, (os.cpu_count() or 1) - 2))
    seconds: dict[str, float] = {}
    # 1. data: the cohort (generated when no folder is given), its split, prepared cases
    data_label, split, train_cases, val_cases = _prepare_data(settings, out, data, progress)
    seconds["data"] = time.perf_counter() - t_start
    # 2. stage 1: the four loss variants and clDice
    run_options = {"device": device, "progress": progress, "workers": workers}
    checkpoints, trained = _train_stage1_models(
        settings, split, train_cases, val_cases, out / "models", seconds, run_options
    )
    models = {key: load_stage1_model(path, device) for key, path in checkpoints.items()}
    # 3. stage 2: one model repairs every stage-1 variant
    stage2_model = None
    if stage2:
        path, trained["stage2"], seconds["train stage2"] = _train_stage2_model(
            settings, split, out / "models", run_options
        )
        checkpoints["stage2"] = path
        stage2_model = load_stage2_model(path, device)
    # 4. evaluation of every method on the test cases, tables and figures
    t_eval = time.perf_counter()
    rows, generation_rows, figure_case = _evaluate_test_cases(
        split, models, stage2_model, device, progress
    )
    seconds["evaluate"] = time.perf_counter() - t_eval
    summary = summarize_methods(rows)
    result = ReproduceResult(
        settings=settings,
        data_label=data_label,
        split=split,
        rows=rows,
        generation_rows=generation_rows,
        summary=summary,
        table1=table1_rows(summary),
        table2=table2_rows(summary),
        effects=component_effects(summary),
        curves=generation_curves(generation_rows),
        figure_case=figure_case,
        checkpoints=checkpoints,
        trained=trained,
        seconds=seconds,
    )
    seconds["total"] = time.perf_counter() - t_start
    write_outputs(result, out)
    return result


def _prepare_data(settings: ReproduceSettings, out: Path, data, progress: bool):
    """(data label, split, prepared training cases, prepared validation cases) of a run; with
    ``data`` None, a synthetic cohort is generated into ``out/cohort`` (resumably)."""
    if data is None:
        data = out / "cohort"
        generate_cohort(
            data, settings.phantom, settings.n_cases, seed=settings.seed, progress=progress
        )
        data_label = f"synthetic cohort ({settings.n_cases} {settings.phantom} phantoms, seed {settings.seed})"
    else:
        data_label = str(data)
    split = split_dataset(data)
    prepared = {c.id: c for c in load_cohort(data, out / "cache", progress=progress)}
    train_cases = [prepared[c.id] for c in split.train]
    val_cases = [prepared[c.id] for c in split.val] if settings.validate else []
    return data_label, split, train_cases, val_cases


def _train_stage1_models(
    settings: ReproduceSettings, split: Split, train_cases: list, val_cases: list,
    models_root: Path, seconds: dict, run_options: dict,
) -> tuple[dict, dict]:  # fmt: skip
    """Train (or load) every stage-1 model; returns its checkpoints and whether each was
    trained in this call, by method id, and adds the training times to ``seconds``."""
    train_ids = [c.id for c in split.train]
    checkpoints, trained = {}, {}
    for key in (*LOSS_VARIANTS, CLDICE):
        if key == CLDICE:
            task = cldice_task(
                train_cases, val_cases, settings.stage1_net, settings.stage1_train,
                weight=settings.cldice_weight, iterations=settings.cldice_iterations, profile=settings.profile,
            )  # fmt: skip
        else:
            task = stage1_task(
                train_cases,
                val_cases,
                key,
                settings.stage1_net,
                settings.stage1_train,
                profile=settings.profile,
            )
            task.meta["loss"] = key
        task.meta["train_cases"] = train_ids
        path, did_train, secs = train_or_load(
            task, settings.stage1_train, model_dir(models_root, key), **run_options
        )
        checkpoints[key], trained[key], seconds[f"train {key}"] = path, did_train, secs
    return checkpoints, trained


def _train_stage2_model(
    settings: ReproduceSettings, split: Split, models_root: Path, run_options: dict
) -> tuple[Path, bool, float]:
    """Train (or load) the stage-2 model; returns the checkpoint to use (``best.pt`` when
    validated, else ``last.pt``), whether it was trained in this call, and the seconds."""
    sources = _stage2_sources(split.train)
    val_sources = _stage2_sources(split.val) if settings.validate else []
    task = stage2_task(
        sources, val_sources, settings.stage2_net, settings.stage2_train, data=settings.stage2_data,
        breakage=get_config(settings.profile).breakage, attention=get_config(settings.profile).attention,
        profile=settings.profile,
    )  # fmt: skip
    task.meta["train_cases"] = [c.id for c in split.train]
    path, did_train, secs = train_or_load(
        task, settings.stage2_train, model_dir(models_root, "stage2"), **run_options
    )
    return selected_checkpoint(path.parent), did_train, secs


def _evaluate_test_cases(
    split: Split, models: dict, stage2_model, device, progress: bool
) -> tuple[list[dict], list[dict], dict]:
    """Score every method on the test cases: per-case rows, per-generation rows, and the
    first test case's masks for the figures."""
    from tqdm.auto import tqdm

    rows, generation_rows, figure_case = [], [], {}
    for i, paths in enumerate(tqdm(split.test, desc="evaluate", disable=not progress)):
        case = load_case(paths.image, paths.label, case_id=paths.id)
        case_rows, case_generations, masks = evaluate_case(
            case, models, stage2_model, device=device
        )
        rows += case_rows
        generation_rows += case_generations
        if i == 0:  # the figures show the first test case
            figure_case = {
                "id": case.id,
                "ct": case.ct,
                "gt": np.asarray(case.label) > 0,
                "spacing": case.spacing,
                "masks": {k: v for k, v in masks.items() if not k.startswith("_")},
                "repair": masks.get("_repair"),
            }
    return rows, generation_rows, figure_case


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
    ``totalseg_chest``, ~4 mm for ``cip_ct64``), whatever the phantoms' spacing was. The
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
            prepare_ground_truth(label, ct.spacing, name=str(label_path))
            if label is not None
            else None
        )
        masks[name] = {"ct": ct.array, "spacing": ct.spacing, "label": label}
        runs = {
            "nnUNet*": (plain, None),
            "DeepTree" if stage2 is not None else "nnUNet* + AMC + GUL": (deeptree_s1, stage2),
        }
        for method, (model, connector) in runs.items():
            seg = segment(
                ct.array,
                model,
                connector,
                ct.spacing,
                affine=ct.affine,
                device=device,
                name=str(folder / name / "ct.nii.gz"),
            )
            mask = seg.mask if connector is not None else seg.stage1_mask
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
