"""Stage 1 training tasks: the anatomy-aware network with its loss, data and validation as a
:class:`deeptree.train.TrainingTask` (notebook 05), the clDice comparison model (notebook 07),
and the stage-1 model that notebook 06 starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deeptree.checkpoints import LoadedModel
from deeptree.config import NOTEBOOK_COHORT, VARIANTS, NetworkConfig, TrainConfig, get_config
from deeptree.io import InputError
from deeptree.metrics import DICE_CLASSES, airway_metrics, class_dice, prepare_ground_truth
from deeptree.networks import init_foreground_prior, stage1_network
from deeptree.phantom import generate_cohort
from deeptree.report import results_dir
from deeptree.resample import training_record
from deeptree.stage1.cache import load_cohort
from deeptree.stage1.data import Stage1PatchDataset, split_cases
from deeptree.stage1.losses import DiceCEClDiceLoss, Stage1Loss, check_variant
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.train import LOG_NAME, TrainingTask, read_log, train

#: A stage-1 model whose class-1 Dice on validation stays below this has failed (issue 18):
#: the trachea and main bronchi are the easiest class; see :func:`class1_dice_failure`.
CLASS1_DICE_FLOOR = 0.3


def stage1_task(
    train_cases: list,
    val_cases: list,
    variant: str,
    net,
    cfg: TrainConfig,
    *,
    profile: str | None = None,
    device: str | torch.device | None = None,
) -> TrainingTask:
    """Assemble the stage-1 :class:`TrainingTask`.

    Parameters
    ----------
    train_cases, val_cases : list of deeptree.stage1.data.Stage1Case
        Prepared cases (``deeptree.stage1.cache.load_cohort`` + ``split_cases``); validation cases
        are predicted whole by sliding-window inference and scored with
        ``deeptree.metrics.airway_metrics`` (paper protocol: BD, TLD, precision, DSC) and
        ``deeptree.metrics.class_dice`` (``dice_1``, ``dice_2``, ``dice_3``: Dice per anatomy
        class, None for a class the validation cases lack), averaged over the cases. No
        validation if empty.
    variant : str
        ``"plain"``, ``"amc"``, ``"gul"`` or ``"amc+gul"`` (``deeptree.stage1.losses``).
    net : NetworkConfig
    cfg : TrainConfig
        Seeds the weights (``cfg.seed``: the same for every variant but the output heads,
        ``deeptree.networks.stage1_network``) and the patch stream (nnU-Net's sampler,
        ``cfg.oversample_foreground``, on the variant's own labels);
        ``foreground_prior`` sets the starting airway probability 1 - p(background), split
        equally over the airway classes; ``warmup_iterations`` the learning-rate warm-up.
    profile : str, optional
        Recorded in the checkpoint.
    device : optional
        Where validation inference runs (default: CUDA if available).
    """

    check_variant(variant)
    torch.manual_seed(cfg.seed)
    model = stage1_network(net, variant)
    apply_start_up(model, cfg)
    criterion = Stage1Loss(variant)
    # nnU-Net's sampler for the network's own labels: anatomy classes with AMC, the binary
    # airway without (deeptree.stage1.data); the same seed gives the same patch stream
    by_class = VARIANTS[variant].amc
    dataset = Stage1PatchDataset(
        train_cases,
        net.patch_size,
        seed=cfg.seed,
        length=cfg.iterations * cfg.batch_size,
        oversample=cfg.oversample_foreground,
        batch_size=cfg.batch_size,
        by_class=by_class,
    )

    def loss_fn(outputs, batch):
        return criterion(outputs, batch["label"], batch["distance"])

    meta = {
        "stage": 1,
        "variant": variant,
        "filters": list(net.filters),
        "patch_size": list(net.patch_size),
        "overlap": net.inference_overlap,
        "profile": profile,
        "name": f"stage 1, {variant}",
        # the voxel size and HU window predict/segment resample and normalise to
        **training_record([c.spacing for c in train_cases], "stage-1 training cases"),
        "sampler": f"nnU-Net, {'anatomy classes' if by_class else 'binary airway'}, "
        f"oversample {cfg.oversample_foreground}",
    }
    validate = _stage1_validator(val_cases, net, device) if val_cases else None
    return TrainingTask(model=model, loss_fn=loss_fn, dataset=dataset, validate=validate, meta=meta)


def apply_start_up(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """The start of every stage-1 variant's training (in place): with
    ``cfg.foreground_prior = p`` every output head starts at airway probability
    ``1 - p(background) = p``, split equally over the airway classes (p / 3 each with AMC,
    p with 2 channels), so that all variants start alike; None leaves nnU-Net's random heads.

    Parameters
    ----------
    model : AirwayUNet
        A stage-1 network (``deeptree.networks.stage1_network``).
    cfg : TrainConfig

    Returns
    -------
    torch.nn.Module
        ``model`` itself.
    """
    if cfg.foreground_prior is not None:
        n_airway_classes = model.output_block.conv.conv.out_channels - 1
        init_foreground_prior(model, cfg.foreground_prior / n_airway_classes)
    return model


def _stage1_validator(val_cases: list, net, device) -> Callable[[torch.nn.Module], dict]:

    references = [
        prepare_ground_truth(
            np.asarray(c.label) > 0, c.spacing, affine=c.affine, name=f"{c.id} label"
        )
        for c in val_cases
    ]

    def validate(model: torch.nn.Module) -> dict:
        rows = []
        for case, reference in zip(val_cases, references, strict=True):
            pred = predict_stage1(
                model,
                np.asarray(case.image),
                net.patch_size,
                overlap=net.inference_overlap,
                device=next(model.parameters()).device if device is None else device,
                normalized=True,
                name=case.id,
            )
            row = airway_metrics(pred.mask, reference, case.spacing)
            dice = class_dice(pred.mask, np.asarray(case.label), case.spacing)
            rows.append(row | {f"dice_{c}": dice[c] for c in DICE_CLASSES})
        out = {k: float(np.mean([r[k] for r in rows])) for k in ("BD", "TLD", "precision", "DSC")}
        for c in DICE_CLASSES:
            values = [r[f"dice_{c}"] for r in rows if r[f"dice_{c}"] is not None]
            out[f"dice_{c}"] = float(np.mean(values)) if values else None
        return out

    return validate


def class1_dice_failure(run, threshold: float = CLASS1_DICE_FLOOR) -> str | None:
    """Flag a stage-1 run whose class-1 Dice on validation stays below ``threshold``.

    The run's validations log ``dice_1`` (:func:`stage1_task`; ``deeptree.metrics.class_dice``
    of class 1, the trachea and main bronchi, averaged over the validation cases). The run
    is flagged when its last validation (the model ``last.pt`` holds) is below the
    threshold.

    Parameters
    ----------
    run : path-like or list of dict
        A training run's folder, its ``log.jsonl``, or the entries of
        ``deeptree.train.read_log``.
    threshold : float
        Class-1 Dice (fraction) below which the model failed (default 0.3).

    Returns
    -------
    str or None
        None when the last validated class-1 Dice reaches ``threshold``; else one line
        saying so, with the last and the best value and their iterations.

    Raises
    ------
    InputError
        The run logged no validation with a class-1 Dice (no validation cases, a run from
        before issue 18, or a missing log).
    """
    if isinstance(run, (str, Path)):
        path = Path(run)
        path = path / LOG_NAME if path.is_dir() else path
        entries, where = read_log(path), str(path)
    else:
        entries, where = list(run), "stage-1 run"
    validated = [
        (e["iteration"], float(e["val"]["dice_1"]))
        for e in entries
        if "val" in e and e["val"].get("dice_1") is not None
    ]
    if not validated:
        raise InputError(f"{where}: no validation with a class-1 Dice (dice_1) was logged")
    last_it, last = validated[-1]
    if last >= threshold:
        return None
    best_it, best = max(validated, key=lambda v: v[1])
    return (
        f"{where}: class-1 Dice on validation {last:.3f} at iteration {last_it} is below "
        f"{threshold:g} (best {best:.3f} at iteration {best_it}): the model misses the "
        "trachea and main bronchi"
    )


def stage1_checkpoint_of_notebook05(run_dir) -> Path:
    """Where notebook 05 writes its stage-1 model: ``<run_dir>/05_stage1/run/last.pt``
    (``run_dir`` as resolved by ``deeptree.report.results_dir``)."""

    return results_dir(run_dir) / "05_stage1" / "run" / "last.pt"


def ensure_stage1_model(
    run_dir,
    profile: str,
    out_dir,
    *,
    checkpoint=None,
    variant: str = "amc+gul",
    seed: int = 0,
    device="cpu",
) -> tuple[LoadedModel, str]:
    """The stage-1 model for notebook 06: ``checkpoint`` if given, else notebook 05's if it
    ran in the same ``run_dir`` with the same profile, else one trained here on 05's cohort
    (same phantoms, same seeds).

    Parameters
    ----------
    run_dir : path-like or None
    profile : str
    out_dir : path-like
        Where an inline run goes (``out_dir/stage1_cohort``, ``out_dir/stage1``); resumed if
        it exists.
    checkpoint : path-like, optional
        A stage-1 ``last.pt`` to use as is.
    variant, seed
        As notebook 05's parameters.

    Returns
    -------
    model : LoadedModel
        The network (eval mode) and its checkpoint metadata.
    origin : str
        Which checkpoint was used.
    """

    if checkpoint is not None:
        return load_stage1_model(checkpoint, device), f"given: {checkpoint}"
    path = stage1_checkpoint_of_notebook05(run_dir)
    if path.is_file():
        loaded = load_stage1_model(path, device)
        if loaded.meta.get("profile") == profile:
            return loaded, f"notebook 05: {path}"
    out_dir = Path(out_dir)
    config = get_config(profile)
    n_train, _ = NOTEBOOK_COHORT[profile]
    generate_cohort(
        out_dir / "stage1_cohort",
        "gpu" if profile == "gpu" else profile,
        n_train,
        seed=seed,
        progress=False,
    )
    cases = load_cohort(out_dir / "stage1_cohort", out_dir / "stage1_cache")
    train_cases, val_cases = split_cases(cases, config.stage1_train.val_cases)
    task = stage1_task(
        train_cases, [], variant, config.stage1_net, config.stage1_train, profile=profile
    )
    result = train(
        task, config.stage1_train, out_dir / "stage1", resume=True, device=device
    )  # a progress bar unless under the notebook runner (deeptree/progress.py)
    return load_stage1_model(result.checkpoint, device), f"trained here: {result.checkpoint}"


def cldice_task(
    train_cases,
    val_cases,
    net: NetworkConfig,
    cfg: TrainConfig,
    *,
    weight=0.5,
    iterations=3,
    profile=None,
):
    """The :class:`deeptree.train.TrainingTask` of the clDice comparison model.

    Assembled as ``deeptree.stage1.task.stage1_task`` does for ``"plain"`` (same 2-channel network,
    patch dataset and validation), with :class:`DiceCEClDiceLoss` as the loss. The metadata
    keep ``variant="plain"`` (the network, so that ``load_stage1_model`` rebuilds it) and add
    ``loss="dice-ce+cldice"``.

    Parameters
    ----------
    train_cases, val_cases : list of deeptree.stage1.data.Stage1Case
    net : NetworkConfig
    cfg : TrainConfig
    weight, iterations : float, int
        :class:`DiceCEClDiceLoss` settings.
    profile : str, optional
    """

    base = stage1_task(train_cases, val_cases, "plain", net, cfg, profile=profile)
    criterion = DiceCEClDiceLoss(weight, iterations)

    def loss_fn(outputs, batch):
        return criterion(outputs, batch["label"], None)

    meta = {
        **base.meta,
        "loss": "dice-ce+cldice",
        "cldice_weight": float(weight),
        "cldice_iterations": int(iterations),
        "name": "stage 1, clDice",
    }
    return TrainingTask(
        model=base.model, loss_fn=loss_fn, dataset=base.dataset, validate=base.validate, meta=meta
    )
