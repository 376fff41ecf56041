"""The data and the models of a reproduction (``deeptree.evaluation.reproduce``): the
cohort generated (or a ``--data`` folder split) and prepared, and every model of a run
trained, resumed or loaded, in this process or in parallel, one training per device
(``deeptree.evaluation.fanout``).

Data
    Without ``data``: the training + validation phantoms from ``settings.seed`` into
    ``<out>/cohort`` and the test phantoms ``TEST_000 ...`` from ``settings.test_seed`` into
    ``<out>/test_cohort`` (resumably); with an ATM'22-layout folder, its split
    (:func:`~deeptree.evaluation.paper.split_dataset`). The training and validation cases are
    prepared once into ``<out>/cache`` (``deeptree.stage1.cache.load_cohort``).

Models
    Saved under ``<out>/models/seed<s>/<name>/last.pt`` (:func:`model_dir`; ``deeptree.train``
    checkpoints). A finished checkpoint whose metadata (variant, loss, network, profile,
    training case ids) and schedule match is loaded instead of retrained
    (:func:`train_or_load`); an unfinished one is resumed; one that does not match is an
    error (never overwritten).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from deeptree.checkpoints import CHECKPOINT_NAME, load_checkpoint
from deeptree.config import (
    CLDICE,
    LOSS_VARIANTS,
    ReproduceSettings,
    TrainConfig,
    get_config,
)
from deeptree.distributed import default_workers
from deeptree.evaluation.fanout import fan_out
from deeptree.evaluation.paper import Split, split_dataset
from deeptree.evaluation.scoring import PAPER_STAGE2
from deeptree.io import InputError, list_cases
from deeptree.phantom import case_is_complete, generate_case, generate_cohort, write_case
from deeptree.report import jsonable
from deeptree.stage1.cache import load_cohort
from deeptree.stage1.task import cldice_task, stage1_task
from deeptree.stage2.task import case_sources, stage2_checkpoint, stage2_options, stage2_task
from deeptree.train import train

__all__ = [
    "EXTENDED_MARK",
    "fan_out_training",
    "model_dir",
    "prepare_data",
    "train_or_load",
    "train_stage1_models",
    "train_stage2_models",
]


# --------------------------------------------------------------------------------------------
# train or load
# --------------------------------------------------------------------------------------------
#: The file ``benchmarks/extend_models.py`` leaves in a model folder whose model it retrained
#: with a longer schedule (JSON: the two schedules and why).
EXTENDED_MARK = "extended.json"


def model_dir(models_root: str | os.PathLike, key: str) -> Path:
    """``<models_root>/stage1_<key>`` (``+`` written ``_``) or ``<models_root>/stage2``."""
    name = "stage2" if key == "stage2" else "stage1_" + key.replace("+", "_")
    return Path(models_root) / name


def _finished(path: Path, meta: dict, cfg: TrainConfig, own_length: bool = False) -> bool:
    """True when ``path`` holds a finished run of exactly this model and schedule; False when
    there is none or it is unfinished (resume it); InputError when it is another model.

    ``own_length`` (shipped models), or an :data:`EXTENDED_MARK` file beside the checkpoint
    (a model of the run retrained with a longer schedule because it missed the flattening
    rule, put in place by ``benchmarks/extend_models.py``): the checkpoint may have been
    trained longer than ``cfg`` says; it must be finished at its own schedule.
    """
    own_length = own_length or (path.parent / EXTENDED_MARK).is_file()

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
        if key == "iterations" and own_length and saved_cfg.get(key, 0) >= cfg.iterations:
            continue
        if saved_cfg.get(key) != getattr(cfg, key):
            raise InputError(
                f"{path}: was trained with {key}={saved_cfg.get(key)!r}, this run has "
                f"{getattr(cfg, key)!r}; give another --out (or delete that folder)"
            )
    # own length: no shorter than cfg's, or the loop above refused it
    length = int(saved_cfg.get("iterations", 0)) if own_length else cfg.iterations
    return int(state.get("iteration", 0)) >= length


def train_or_load(
    task, cfg: TrainConfig, out_dir, *, device=None, progress=True, workers: int = 0,
    load_only: bool = False,
) -> tuple[Path, bool, float]:  # fmt: skip
    """Train ``task`` into ``out_dir`` unless a finished compatible checkpoint is there.

    ``workers`` DataLoader processes prepare the batches (0: in the training process).
    ``load_only`` (shipped models, ``deeptree.evaluation.shipped``): never train; a missing
    or unfinished checkpoint is an InputError naming it; a model trained longer than ``cfg``
    (its own schedule, finished) is accepted.

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
    if _finished(path, task.meta, cfg, own_length=load_only):
        return path, False, 0.0
    if load_only:
        raise InputError(
            f"{path}: missing or unfinished, and shipped models are never trained here"
        )
    result = train(
        task, cfg, out_dir, resume=True, device=device, progress=progress, num_workers=workers
    )
    return result.checkpoint, True, float(result.seconds)


# --------------------------------------------------------------------------------------------
# the data and every model of a run
# --------------------------------------------------------------------------------------------
def _generate_test_cohort(root: Path, settings: ReproduceSettings, progress: bool) -> None:
    """The test phantoms ``TEST_000 ...`` from ``settings.test_seed`` (case ``i``: seed
    ``(test_seed, i)``), resumably, in the ATM'22 layout under ``root``."""
    from tqdm.auto import tqdm

    for i in tqdm(range(settings.n_test), desc="test phantoms", disable=not progress):
        case_id = f"TEST_{i:03d}"
        if not case_is_complete(root, case_id):
            write_case(
                generate_case(settings.phantom, (settings.test_seed, i), case_id=case_id), root
            )


def prepare_data(settings: ReproduceSettings, out: Path, data, progress: bool):
    """The data of a run, generated or split, and its training and validation cases prepared.

    With ``data`` None, the training + validation phantoms (``settings.seed``) are generated
    into ``out/cohort`` and the test phantoms (``settings.test_seed``) into
    ``out/test_cohort`` (resumably: complete cases are kept); with an ATM'22-layout folder, it
    is split by :func:`~deeptree.evaluation.paper.split_dataset`. Cases are prepared once into
    ``out/cache`` (``deeptree.stage1.cache.load_cohort``).

    Returns
    -------
    data_label : str
        What the data is, for the report.
    split : Split
        The training, validation and test cases' paths.
    train_cases, val_cases : list of ``deeptree.stage1.cache.Stage1Case``
        The prepared training and validation cases (``val_cases`` empty when
        ``settings.validate`` is off).
    """
    if data is None:
        generate_cohort(
            out / "cohort",
            settings.phantom,
            settings.n_cases,
            seed=settings.seed,
            progress=progress,
        )
        _generate_test_cohort(out / "test_cohort", settings, progress)
        data_label = (
            f"synthetic cohort ({settings.phantom} phantoms): {settings.n_cases} training + "
            f"validation phantoms from seed {settings.seed}, {settings.n_test} test phantoms "
            f"from seed {settings.test_seed}"
        )
        cases = list_cases(out / "cohort")
        n_train = len(cases) - settings.n_val
        split = Split(cases[:n_train], cases[n_train:], list_cases(out / "test_cohort"))
        prepared_root = out / "cohort"
    else:
        data_label = str(data)
        split = split_dataset(data)
        prepared_root = data
    prepared = {c.id: c for c in load_cohort(prepared_root, out / "cache", progress=progress)}
    train_cases = [prepared[c.id] for c in split.train]
    val_cases = [prepared[c.id] for c in split.val] if settings.validate else []
    return data_label, split, train_cases, val_cases


def fan_out_training(
    settings: ReproduceSettings, out: Path, data, devices: Sequence[str], stage2: bool,
    workers: int | None = None,
) -> dict[str, tuple[dict, dict]]:  # fmt: skip
    """Train every model of the run in parallel, one training per device.

    One job per seed and stage-1 model, one per seed for its stage-2 models, run by
    :func:`deeptree.evaluation.fanout.fan_out` over ``devices`` (``"cpu"`` entries are one
    one-thread training each). ``workers`` DataLoader processes per training (default: the
    device's share of the CPUs, ``deeptree.distributed.default_workers``).

    Returns
    -------
    dict
        By job (``seed<s>/<key>``): (whether each model was trained in this call, by
        ``seed<s>/<model>``; training seconds, by ``train seed<s> <model>``).
    """
    jobs: dict[str, functools.partial] = {}
    if workers is None:
        workers = default_workers(devices[0], len(devices))
    for i, seed in enumerate(settings.seeds):
        extra = i < settings.extra_seeds
        for key in (*LOSS_VARIANTS, CLDICE) if extra else LOSS_VARIANTS:
            jobs[f"seed{seed}/{key}"] = functools.partial(
                _train_one, settings, out, data, seed, extra, key, workers
            )
        if stage2:
            jobs[f"seed{seed}/stage2"] = functools.partial(
                _train_one, settings, out, data, seed, extra, "stage2", workers
            )
    return dict(zip(jobs, fan_out(list(jobs.values()), list(devices)), strict=True))


def _train_one(
    settings: ReproduceSettings, out: Path, data, seed: int, extra: bool, key: str,
    workers: int, device: str,
) -> tuple[dict, dict]:  # fmt: skip
    """One job of :func:`fan_out_training` on ``device``: the stage-1 model ``key`` of
    ``seed``, or (``key="stage2"``) that seed's stage-2 models; returns (trained by
    ``seed<s>/<model>``, training seconds)."""
    _, split, train_cases, val_cases = prepare_data(settings, out, data, progress=False)
    options = {"device": device, "progress": False, "workers": workers}
    root = out / "models" / f"seed{seed}"
    seconds: dict[str, float] = {}
    if key == "stage2":
        sources = case_sources(split.train)
        val_sources = case_sources(split.val) if settings.validate else []
        stage2_opts = settings.stage2_options if extra else ()
        _, did = train_stage2_models(
            settings, seed, stage2_opts, (sources, val_sources), split, root, seconds, options
        )
    else:
        _, did = train_stage1_models(
            settings, seed, extra, split, train_cases, val_cases, root, seconds, options,
            keys=(key,),
        )  # fmt: skip
    return {f"seed{seed}/{k}": v for k, v in did.items()}, seconds


def train_stage1_models(
    settings: ReproduceSettings, seed: int, extra: bool, split: Split, train_cases: list,
    val_cases: list, models_root: Path, seconds: dict, run_options: dict,
    keys: Sequence[str] | None = None,
) -> tuple[dict, dict]:  # fmt: skip
    """Train (or load) the stage-1 models of one training seed (or those of ``keys``);
    returns their checkpoints and whether each was trained in this call, by method id, and
    adds the training times to ``seconds``."""
    train_ids = [c.id for c in split.train]
    cfg = replace(settings.stage1_train, seed=seed)
    checkpoints, trained = {}, {}
    if keys is None:
        keys = (*LOSS_VARIANTS, CLDICE) if extra else LOSS_VARIANTS
    for key in keys:
        if key == CLDICE:
            task = cldice_task(
                train_cases, val_cases, settings.stage1_net, cfg,
                weight=settings.cldice_weight, iterations=settings.cldice_iterations, profile=settings.profile,
            )  # fmt: skip
        else:
            task = stage1_task(
                train_cases, val_cases, key, settings.stage1_net, cfg, profile=settings.profile
            )
            task.meta["loss"] = key
        task.meta["train_cases"] = train_ids
        path, did_train, secs = train_or_load(task, cfg, model_dir(models_root, key), **run_options)
        checkpoints[key], trained[key] = path, did_train
        seconds[f"train seed{seed} {key}"] = secs
    return checkpoints, trained


def train_stage2_models(
    settings: ReproduceSettings, seed: int, options: Sequence[str], prepared: tuple,
    split: Split, models_root: Path, seconds: dict, run_options: dict,
) -> tuple[dict, dict]:  # fmt: skip
    """Train (or load) the paper's stage-2 model of one training seed and one model per
    option that changes the training (``best`` reuses the paper's run: its ``best.pt``).

    Returns
    -------
    checkpoints : dict
        ``"stage2"`` (the paper's ``last.pt``) and each option -> the checkpoint to use.
    trained : dict
        Whether each was trained in this call.
    """
    sources, val_sources = prepared  # stage-2 sources of the training / validation cases
    run = get_config(settings.profile)
    checkpoints, trained = {}, {}
    for name in (PAPER_STAGE2, *[o for o in options if o != "best"]):
        chosen = () if name == PAPER_STAGE2 else (name,)
        data, cfg, _ = stage2_options(
            chosen, settings.stage2_data, replace(settings.stage2_train, seed=seed)
        )
        task = stage2_task(
            sources, val_sources, settings.stage2_net, cfg, data=data,
            breakage=run.breakage, attention=run.attention, profile=settings.profile,
        )  # fmt: skip
        task.meta["train_cases"] = [c.id for c in split.train]
        task.meta["stage2_options"] = list(chosen)
        folder = models_root / ("stage2" if name == PAPER_STAGE2 else f"stage2_{name}")
        path, did_train, secs = train_or_load(task, cfg, folder, **run_options)
        checkpoints[name], trained[name] = stage2_checkpoint(path.parent), did_train
        seconds[f"train seed{seed} {folder.name}"] = secs
    if "best" in options:
        checkpoints["best"] = stage2_checkpoint(checkpoints[PAPER_STAGE2].parent, best=True)
    return checkpoints, trained
