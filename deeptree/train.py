"""One training loop for both stages: SGD with polynomial decay, bf16 autocast, progress bar,
JSON-lines log, validation, atomic checkpoints and an exact ``resume``.

The loop (:func:`train`) knows nothing about airways. A stage hands it a
:class:`TrainingTask`:

* ``model``: a ``torch.nn.Module`` taking ``batch["image"]`` (B, C_in, X, Y, Z);
* ``loss_fn(outputs, batch) -> (loss, parts)``: a scalar tensor and a dict of floats to log;
* ``dataset``: a map-style dataset whose item ``index`` is a dict of tensors that depends only
  on ``index`` (each item seeds its own ``numpy.random.Generator`` from ``(seed, index)``).
  The loop reads items ``iteration * batch_size ... + batch_size - 1`` at each iteration, so
  the data stream after a resume is exactly the one an uninterrupted run would have seen;
  the "sampler state" is the iteration counter;
* ``validate(model) -> dict``: optional, called every ``validate_every`` iterations and at the
  end (e.g. sliding-window inference on held-out cases + ``deeptree.metrics``);
* ``select``: optional, the name of a ``validate`` figure (higher is better); the model with
  its best value so far is kept in ``best.pt`` (as nnU-Net keeps ``checkpoint_best``);
* ``meta``: what is needed to rebuild the model from the checkpoint (stage, variant, network
  config); stored in every checkpoint.

Stage 1 is assembled by :func:`stage1_task` (``deeptree.data.Stage1PatchDataset`` +
``deeptree.losses.Stage1Loss`` + validation on held-out cases). **Stage 2 plugs in the same
way**: its dataset yields ``{"image": (2, 64, 64, 64) CT + attention, "label": (1, 64, 64, 64)
breakage}`` crops drawn from ``(seed, index)``, its ``loss_fn`` is a 2-class DiceCE
(``deeptree.losses.DiceCELoss``) on ``batch["label"]``, its model is
``deeptree.networks.stage2_network``; a ``stage2_task`` function next to :func:`stage1_task`
builds the :class:`TrainingTask` and :func:`train` does the rest unchanged.

Optimisation follows nnU-Net (Isensee et al., Nature Methods 2021; nnU-Net v2
``nnUNetTrainer``): SGD, Nesterov momentum 0.99, weight decay 3e-5, initial learning rate 0.01
with polynomial decay ``lr = lr0 (1 - it / iterations)^0.9`` (per iteration here), gradient
norm clipped at 12; bf16 autocast on CUDA (no loss scaling needed for bf16).

Files in ``out_dir``:

* ``last.pt``: the resume checkpoint (weights, optimiser, iteration, random states, meta),
  written atomically every ``checkpoint_every`` iterations, at the end, and on Ctrl-C;
* ``best.pt``: with ``select``, the model at the validation with the best value (ties keep
  the earlier one), same format as ``last.pt``; :func:`selected_checkpoint` picks it;
* ``log.jsonl``: one JSON object per training iteration (``loss``, its parts, ``lr``,
  ``seconds`` since the start of the call) and one per validation (``"val": {...}``);
* ``loss_curves.png``: :func:`plot_log` of the log, written at the end.

Ctrl-C (SIGINT) is deferred to the end of the running iteration: the checkpoint is written and
``KeyboardInterrupt`` is raised; a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deeptree.config import TrainConfig
from deeptree.io import InputError, atomic_write

CHECKPOINT_FORMAT = "deeptree-checkpoint-1"
CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
LOG_NAME = "log.jsonl"
PLOT_NAME = "loss_curves.png"


@dataclass
class TrainingTask:
    """What :func:`train` needs from one stage (see the module docstring)."""

    model: torch.nn.Module
    loss_fn: Callable[[object, dict], tuple[torch.Tensor, dict]]
    dataset: Dataset
    validate: Callable[[torch.nn.Module], dict] | None = None
    meta: dict = field(default_factory=dict)
    select: str | None = None


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    iteration : int
        Iterations done in total (including those before a resume).
    checkpoint : Path
        The final ``last.pt``.
    log : Path
        ``log.jsonl``.
    history : list of dict
        The log entries of the whole run (after a resume: of all runs).
    seconds : float
        Wall time of this call.
    best : Path or None
        ``best.pt`` when the task selects a model by validation and one was validated.
    """

    iteration: int
    checkpoint: Path
    log: Path
    history: list[dict]
    seconds: float
    best: Path | None = None


# --------------------------------------------------------------------------------------------
# schedule, optimiser, random state
# --------------------------------------------------------------------------------------------
def poly_lr(iteration: int, cfg: TrainConfig) -> float:
    """nnU-Net's polynomial decay: ``lr0 (1 - iteration / iterations)^exponent``."""
    return (
        cfg.learning_rate
        * (1.0 - min(iteration, cfg.iterations) / cfg.iterations) ** cfg.poly_exponent
    )


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """nnU-Net's SGD (Nesterov momentum, weight decay) on all trainable parameters."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=True,
    )


def get_rng_state() -> dict:
    """torch (CPU and CUDA), numpy-global and python random states, as plain containers that
    ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global generator and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def save_checkpoint(
    path: str | Path, model, optimizer, iteration: int, cfg: TrainConfig, meta: dict
) -> Path:
    """Write a resume checkpoint atomically (temporary name, then rename).

    Parameters
    ----------
    path : path-like
    model, optimizer
        Their ``state_dict`` is saved.
    iteration : int
        Iterations completed.
    cfg : TrainConfig
        Saved as a dict (the schedule depends on it).
    meta : dict
        Stage, variant, network config, ...: what rebuilds the model.
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "iteration": int(iteration),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": get_rng_state(),
        "train_config": _plain(asdict(cfg)),
        "meta": _plain(meta),
    }
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    InputError
        If the file is missing, unreadable, or not a DeepTree checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise InputError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path}: not a DeepTree checkpoint (format {CHECKPOINT_FORMAT!r} expected)"
        )
    return state


def load_model(checkpoint: str | Path, stage: int, build, device="cpu"):
    """Rebuild a trained network of one stage from its checkpoint.

    Parameters
    ----------
    checkpoint : path-like
        ``last.pt`` written by :func:`train`.
    stage : int
        1 or 2: the stage the checkpoint must belong to.
    build : callable
        ``build(net_config, meta) -> torch.nn.Module`` makes the untrained network from the
        :class:`~deeptree.config.NetworkConfig` (filters, patch size) stored in the metadata.
    device : str or torch.device

    Returns
    -------
    model : torch.nn.Module in eval mode on ``device``
    meta : dict
        The checkpoint's metadata (stage, variant, filters, patch_size, ...).

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, one of another stage, or weights that
        do not fit the network the metadata describes.
    """
    from deeptree.config import NetworkConfig

    state = load_checkpoint(checkpoint, map_location=device)
    meta = state.get("meta", {})
    if meta.get("stage") != stage:
        raise InputError(
            f"{checkpoint}: not a stage-{stage} checkpoint (stage {meta.get('stage')!r})"
        )
    net = NetworkConfig(filters=tuple(meta["filters"]), patch_size=tuple(meta["patch_size"]))
    model = build(net, meta)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(
            f"{checkpoint}: weights do not fit the network in its metadata ({err})"
        ) from err
    return model.to(device).eval(), meta


def _plain(value):
    """Tuples -> lists recursively, so that metadata round-trips through JSON and torch.load."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# log
# --------------------------------------------------------------------------------------------
def read_log(path: str | Path) -> list[dict]:
    """The entries of a ``log.jsonl`` (empty list if the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_log(path: Path, entries: list[dict]) -> None:
    text = "".join(json.dumps(e) + "\n" for e in entries)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def plot_log(entries: list[dict], title: str | None = None, *, offscreen: bool = False):
    """Loss curves (per-iteration loss, its moving average, and the parts) and validation
    metrics of a training log.

    Parameters
    ----------
    entries : list of dict
        :func:`read_log` output.
    offscreen : bool
        Draw on a bare Agg figure, outside pyplot (for writing a file from a script or a
        test: no GUI backend, no figure left open); default: a pyplot figure for notebooks.

    Returns
    -------
    matplotlib Figure with two panels: training losses vs iteration, validation metrics vs
    iteration (fractions; empty if no validation ran).
    """
    train_rows = [e for e in entries if "loss" in e]
    val_rows = [e for e in entries if "val" in e]
    if offscreen:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 3.6))
        ax_loss, ax_val = fig.subplots(1, 2)
    else:
        import matplotlib.pyplot as plt

        fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train_rows:
        it = np.array([e["iteration"] for e in train_rows])
        loss = np.array([e["loss"] for e in train_rows])
        ax_loss.plot(it, loss, color="0.75", lw=0.8, label="loss")
        window = max(1, len(loss) // 20)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax_loss.plot(it[window - 1 :], smooth, color="k", lw=1.5, label=f"loss (mean of {window})")
        for key in ("dice", "ce", "gul"):
            if key in train_rows[0]:
                values = np.array([e.get(key, np.nan) for e in train_rows])
                ax_loss.plot(
                    it[window - 1 :],
                    np.convolve(values, np.ones(window) / window, "valid"),
                    lw=1,
                    label=key,
                )
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training loss")
    ax_loss.legend(fontsize=8)
    if val_rows:
        it = [e["iteration"] for e in val_rows]
        for key in sorted({k for e in val_rows for k in e["val"]}):
            values = [e["val"].get(key, np.nan) for e in val_rows]
            if all(isinstance(v, (int, float)) for v in values):
                ax_val.plot(it, values, marker="o", label=key)
        ax_val.legend(fontsize=8)
    ax_val.set(xlabel="iteration", ylabel="value", title="validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
class _StopFlag:
    """Deferred SIGINT: the first Ctrl-C sets the flag, a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def train(
    task: TrainingTask,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``task.model`` for ``cfg.iterations`` iterations (or the rest of them).

    Parameters
    ----------
    task : TrainingTask
    cfg : TrainConfig
        Iterations, batch size, learning rate and schedule, validation and checkpoint
        intervals, seed, ``amp`` (bf16 autocast, CUDA only).
    out_dir : path-like
        Receives ``last.pt``, ``log.jsonl``, ``loss_curves.png`` (and ``best.pt`` with
        ``task.select``).
    resume : bool
        Continue from ``out_dir/last.pt``: weights, optimiser state, iteration (hence the
        learning-rate schedule and the data stream) and random states are restored, so the
        result equals an uninterrupted run (bit for bit on CPU with deterministic algorithms).
        A missing checkpoint starts from scratch; one of another stage or variant is an error.
    device : str or torch.device, optional
        Default: CUDA if available, else CPU.
    num_workers : int
        DataLoader worker processes (0: load in the main process).
    progress : bool
        Show a tqdm progress bar (loss, it/s).
    callback : callable, optional
        ``callback(iteration, entry)`` after each iteration (``iteration`` = completed count).

    Returns
    -------
    TrainResult

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C, once the checkpoint of the completed iterations is written.
    InputError
        Unreadable or incompatible checkpoint on resume.
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out_dir / CHECKPOINT_NAME, out_dir / LOG_NAME
    device = torch.device(device) if device is not None else _default_device()
    model = task.model.to(device)
    optimizer = make_optimizer(model, cfg)
    use_amp = bool(cfg.amp and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    iteration = 0
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device)
        _check_compatible(state, task.meta, cfg, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = state["iteration"]
        set_rng_state(state["rng"])
        # entries logged after the checkpoint (a run killed hard) are replayed: drop them
        history = [e for e in read_log(log_path) if e["iteration"] <= iteration]
        _write_log(log_path, history)
    else:
        seed_everything(cfg.seed)
        history = []
        _write_log(log_path, history)
        (out_dir / BEST_NAME).unlink(missing_ok=True)  # an earlier run's best is not this one's
    best_value = _best_value(history, task.select)

    loader = _loader(task.dataset, cfg, iteration, num_workers, device)
    bar = tqdm(
        total=cfg.iterations, initial=iteration, disable=not progress, desc="train", unit="it"
    )
    running = None
    with _StopFlag() as stop, open(log_path, "a") as log:
        batches = iter(loader)
        while iteration < cfg.iterations:
            batch = _to_device(next(batches), device)
            lr = poly_lr(iteration, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                outputs = model(batch["image"])
                loss, parts = task.loss_fn(outputs, batch)
            if not torch.isfinite(loss):
                _save(ckpt_path, model, optimizer, iteration, cfg, task.meta)
                raise FloatingPointError(
                    f"loss is {float(loss)} at iteration {iteration}; checkpoint of the last good state kept"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            iteration += 1

            entry = {
                "iteration": iteration,
                "loss": float(loss.detach()),
                **parts,
                "lr": lr,
                "seconds": round(time.perf_counter() - start_time, 4),  # since this call began
            }
            running = entry["loss"] if running is None else 0.95 * running + 0.05 * entry["loss"]
            _append(log, history, entry)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}")
            if task.validate is not None and (
                iteration % cfg.validate_every == 0 or iteration == cfg.iterations
            ):
                model.eval()
                with (
                    torch.no_grad(),
                    torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
                ):
                    metrics = task.validate(model)
                _append(log, history, {"iteration": iteration, "val": _plain(metrics)})
                value = _selection_value(metrics, task.select)
                if value is not None and (best_value is None or value > best_value):
                    best_value = value
                    _save(out_dir / BEST_NAME, model, optimizer, iteration, cfg, task.meta)
                bar.write(
                    f"iteration {iteration}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                )
            if callback is not None:
                callback(iteration, entry)
            if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
                _save(ckpt_path, model, optimizer, iteration, cfg, task.meta)
            if stop.requested:
                _save(ckpt_path, model, optimizer, iteration, cfg, task.meta)
                bar.close()
                raise KeyboardInterrupt(
                    f"training interrupted after iteration {iteration}; resume from {ckpt_path}"
                )
    bar.close()
    _save_plot(out_dir / PLOT_NAME, history, task.meta)
    best = out_dir / BEST_NAME if task.select is not None and best_value is not None else None
    if best is not None and best_value <= 0.0:
        warnings.warn(
            f"{out_dir}: validation {task.select} never rose above 0 in {iteration} iterations; "
            "the network may predict no foreground at all (stage 2 at the cpu budget: one "
            "training seed in five, benchmarks/RESULTS.md). Train again with another --seed "
            "or more iterations.",
            stacklevel=2,
        )
    return TrainResult(
        iteration, ckpt_path, log_path, history, time.perf_counter() - start_time, best
    )


def _selection_value(metrics: dict, select: str | None) -> float | None:
    """The figure a task selects its model by, or None (no selection, missing or NaN)."""
    if select is None or select not in metrics:
        return None
    value = float(metrics[select])
    return value if np.isfinite(value) else None


def _best_value(history: list[dict], select: str | None) -> float | None:
    """Best selection figure among the validations of ``history`` (what ``best.pt`` holds
    after a resume)."""
    values = [_selection_value(e["val"], select) for e in history if "val" in e]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def selected_checkpoint(out_dir: str | Path) -> Path:
    """The checkpoint to use from a training folder: ``best.pt`` when the task selected a
    model by validation (stage 2), else ``last.pt``.

    Raises
    ------
    InputError
        If the folder holds neither.
    """
    out_dir = Path(out_dir)
    for name in (BEST_NAME, CHECKPOINT_NAME):
        if (out_dir / name).is_file():
            return out_dir / name
    raise InputError(f"{out_dir}: no {BEST_NAME} or {CHECKPOINT_NAME} (not a training folder?)")


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _save(path, model, optimizer, iteration, cfg, meta):
    save_checkpoint(path, model, optimizer, iteration, cfg, meta)


def _append(log, history: list, entry: dict) -> None:
    history.append(entry)
    log.write(json.dumps(entry) + "\n")
    log.flush()


def _save_plot(path: Path, history: list[dict], meta: dict) -> None:
    fig = plot_log(history, title=meta.get("name"), offscreen=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def _check_compatible(state: dict, meta: dict, cfg: TrainConfig, path: Path) -> None:
    """Resuming with another stage/variant/network or another schedule would silently train
    something else: refuse with a message naming what differs."""
    saved = state.get("meta", {})
    for key, value in _plain(meta).items():
        if key in saved and saved[key] != value:
            raise InputError(
                f"{path}: checkpoint has {key}={saved[key]!r}, this run {key}={value!r}; use another --out"
            )
    saved_cfg = state.get("train_config", {})
    for key in ("iterations", "batch_size", "learning_rate", "seed"):
        if key in saved_cfg and saved_cfg[key] != getattr(cfg, key):
            raise InputError(
                f"{path}: checkpoint was trained with {key}={saved_cfg[key]!r}, this run has "
                f"{getattr(cfg, key)!r}; resume needs the same schedule"
            )


class _IndexRange(torch.utils.data.Sampler):
    """Yields ``start, start + 1, ..., stop - 1``: item ``index`` of iteration ``it`` is
    ``it * batch_size + position``, so the stream restarts exactly where it stopped."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self):
        return self.stop - self.start


def _loader(dataset, cfg: TrainConfig, iteration: int, num_workers: int, device) -> DataLoader:
    sampler = _IndexRange(iteration * cfg.batch_size, cfg.iterations * cfg.batch_size)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        drop_last=False,
        # its own generator: creating the iterator must not draw from torch's global RNG,
        # or a resumed run (a second iterator) would drift from an uninterrupted one
        generator=torch.Generator().manual_seed(cfg.seed),
    )


# --------------------------------------------------------------------------------------------
# stage 1
# --------------------------------------------------------------------------------------------
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
    train_cases, val_cases : list of deeptree.data.Stage1Case
        Prepared cases (``deeptree.data.load_cohort`` + ``split_cases``); validation cases
        are predicted whole by sliding-window inference and scored with
        ``deeptree.metrics.airway_metrics`` (paper protocol: BD, TLD, precision, DSC,
        averaged over the cases). No validation if empty.
    variant : str
        ``"plain"``, ``"amc"``, ``"gul"`` or ``"amc+gul"`` (``deeptree.losses``).
    net : NetworkConfig
    cfg : TrainConfig
        Seeds the weights (``cfg.seed``), the patch stream and its class ratios;
        ``foreground_prior`` (None in every profile for stage 1) sets the starting output.
    profile : str, optional
        Recorded in the checkpoint.
    device : optional
        Where validation inference runs (default: CUDA if available).
    """
    from deeptree.data import Stage1PatchDataset
    from deeptree.losses import Stage1Loss, check_variant
    from deeptree.networks import init_foreground_prior, stage1_network

    check_variant(variant)
    torch.manual_seed(cfg.seed)
    model = stage1_network(net, variant)
    if cfg.foreground_prior is not None:
        init_foreground_prior(model, cfg.foreground_prior)
    criterion = Stage1Loss(variant)
    dataset = Stage1PatchDataset(
        train_cases,
        net.patch_size,
        ratios=cfg.patch_class_ratios,
        seed=cfg.seed,
        length=cfg.iterations * cfg.batch_size,
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
    }
    validate = _stage1_validator(val_cases, net, device) if val_cases else None
    return TrainingTask(model=model, loss_fn=loss_fn, dataset=dataset, validate=validate, meta=meta)


def _stage1_validator(val_cases: list, net, device) -> Callable[[torch.nn.Module], dict]:
    from deeptree.inference import predict_stage1
    from deeptree.metrics import airway_metrics, prepare_ground_truth

    references = [
        prepare_ground_truth(np.asarray(c.label) > 0, c.spacing, name=f"{c.id} label")
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
            rows.append(airway_metrics(pred.mask, reference, case.spacing))
        return {k: float(np.mean([r[k] for r in rows])) for k in ("BD", "TLD", "precision", "DSC")}

    return validate
