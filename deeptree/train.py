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

The stages build their tasks: :func:`deeptree.stage1.task.stage1_task` (patches of
``deeptree.stage1.data``, the loss of ``deeptree.stage1.losses``, validation on held-out cases)
and :func:`deeptree.stage2.task.stage2_task` (crops of (CT, attention) around simulated
breakages, the plain 2-class loss, validation by repaired gaps). Checkpoints are written and
read by :mod:`deeptree.checkpoints`.

Optimisation follows nnU-Net (Isensee et al., Nature Methods 2021; nnU-Net v2
``nnUNetTrainer``): SGD, Nesterov momentum 0.99, weight decay 3e-5, initial learning rate 0.01
with polynomial decay ``lr = lr0 (1 - it / iterations)^0.9`` (per iteration here), gradient
norm clipped at 12; bf16 autocast on CUDA (no loss scaling needed for bf16).

Files in ``out_dir``:

* ``last.pt``: the resume checkpoint (weights, optimiser, iteration, random states, meta),
  written atomically every ``checkpoint_every`` iterations, at the end, and on Ctrl-C;
* ``best.pt``: with ``select``, the model at the validation with the best value (ties keep
  the earlier one), same format as ``last.pt``; :func:`deeptree.checkpoints.selected_checkpoint`
  picks it;
* ``log.jsonl``: one JSON object per training iteration (``loss``, its parts, ``lr``,
  ``seconds`` since the start of the call) and one per validation (``"val": {...}``);
* ``loss_curves.png``: :func:`plot_log` of the log, written at the end.

Ctrl-C (SIGINT) and SIGTERM (``kill``, a batch scheduler) are deferred to the end of the
running iteration: the checkpoint is written and ``KeyboardInterrupt`` is raised
(:class:`deeptree.signals.Terminated` for SIGTERM); a second signal interrupts at once.

Several processes (``torchrun``, :mod:`deeptree.distributed`): when a process group is
initialised, the model is wrapped in ``DistributedDataParallel``, ``cfg.batch_size`` is the
global batch (each rank trains on its share, items ``it * B + rank * b ...``), the loss and its
parts are logged as their mean over the ranks, and rank 0 alone writes ``last.pt``, ``best.pt``,
``log.jsonl`` and the plot and runs ``validate`` (once, not once per rank). Every rank resumes
from the same ``last.pt``; a stop request (Ctrl-C) or a non-finite loss is agreed on by all
ranks at the same iteration.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deeptree import distributed
from deeptree.checkpoints import (
    BEST_NAME,
    CHECKPOINT_NAME,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from deeptree.config import TrainConfig
from deeptree.io import InputError, atomic_write
from deeptree.networks import choose_device
from deeptree.progress import progress_bar
from deeptree.report import jsonable
from deeptree.signals import Terminated

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
        The log entries of the whole run (after a resume: of all runs); empty on the ranks
        other than 0 of a run on several processes (rank 0 keeps the log).
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
    """The learning rate of ``iteration`` (0-based): nnU-Net's polynomial decay
    ``lr0 (1 - iteration / iterations)^exponent``, after an optional linear warm-up.

    With ``cfg.warmup_iterations = W > 0`` the first W iterations rise linearly,
    ``lr0 (iteration + 1) / W``, towards the poly curve, and follow it from iteration W on (the
    decay counts from iteration 0, so the warm-up does not lengthen the run). Why a warm-up:
    a four-channel softmax starts with most of its probability on the airway classes, and
    nnU-Net's full step with momentum 0.99 can push it to "no airway" within 50 iterations
    (issue 30; ``benchmarks/stage1_startup.py``).
    """
    decay = (
        cfg.learning_rate
        * (1.0 - min(iteration, cfg.iterations) / cfg.iterations) ** cfg.poly_exponent
    )
    if iteration < cfg.warmup_iterations:
        return min(decay, cfg.learning_rate * (iteration + 1) / cfg.warmup_iterations)
    return decay


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """nnU-Net's SGD (Nesterov momentum, weight decay) on all trainable parameters."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=True,
    )


# --------------------------------------------------------------------------------------------
# log
# --------------------------------------------------------------------------------------------
def read_log(path: str | Path) -> list[dict]:
    """The entries of a ``log.jsonl`` (empty list if the file does not exist).

    A torn last line (a run killed while appending it) is dropped with a ``UserWarning``
    that names the file; the entry it held is logged again when the run resumes.

    Parameters
    ----------
    path : path-like
        The ``log.jsonl`` of a training run (read from ``log.jsonl.gz`` beside it when only
        that exists: a shipped model, ``deeptree.evaluation.shipped``).

    Returns
    -------
    list of dict
        One dict per whole line, in file order.

    Raises
    ------
    InputError
        A line other than the last is not JSON (the file was damaged, not just cut short).
    """
    path = Path(path)
    packed = path.with_name(path.name + ".gz")  # a shipped model's log (deeptree ship)
    if not path.is_file() and packed.is_file():
        import gzip

        path, text = packed, gzip.decompress(packed.read_bytes()).decode()
    elif not path.is_file():
        return []
    else:
        text = path.read_text()
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    entries = []
    for position, (number, line) in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as err:
            if position < len(lines) - 1:
                raise InputError(f"{path}: line {number} is not JSON ({err.msg})") from err
            warnings.warn(
                f"{path}: the last line (line {number}) is cut short, probably by a run that "
                "was killed while writing it; it is dropped",
                stacklevel=2,
            )
    return entries


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
    """Deferred SIGINT and SIGTERM: the first sets the flag, a second one interrupts at once
    (:class:`~deeptree.signals.Terminated` for SIGTERM)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise self.exception("interrupted again")
        self.requested, self.signum = True, signum

    def exception(self, text: str) -> KeyboardInterrupt:
        """What to raise: ``KeyboardInterrupt`` after Ctrl-C, ``Terminated`` after SIGTERM."""
        if self.signum == signal.SIGTERM:
            return Terminated(f"terminated (SIGTERM): {text}")
        return KeyboardInterrupt(text)

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
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
    progress: bool | None = None,
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
    progress : bool or None
        Show a tqdm progress bar (loss, it/s); None: unless under the notebook runner
        (:func:`deeptree.progress.enabled`).
    callback : callable, optional
        ``callback(iteration, entry)`` after each iteration (``iteration`` = completed count);
        on rank 0 only when several processes train.

    Returns
    -------
    TrainResult

    Notes
    -----
    Under ``torchrun`` (a process group initialised, e.g. by
    :func:`deeptree.distributed.init_from_env`), pass each rank's own ``device``;
    ``cfg.batch_size`` must be a multiple of the number of processes
    (:func:`deeptree.distributed.local_batch_size`). See the module docstring.

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C or SIGTERM (then :class:`deeptree.signals.Terminated`), once the
        checkpoint of the completed iterations is written.
    InputError
        Unreadable or incompatible checkpoint on resume; a batch size that the processes
        cannot share.
    """
    start_time = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out_dir / CHECKPOINT_NAME, out_dir / LOG_NAME
    device = choose_device(device)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    distributed.local_batch_size(cfg.batch_size, world)  # refuse a batch the ranks cannot share
    model = task.model.to(device)
    optimizer = make_optimizer(model, cfg)
    use_amp = bool(cfg.amp and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    iteration, history = _restore_or_start(
        task, cfg, model, optimizer, out_dir, resume, device, main
    )
    distributed.same_on_all_ranks(iteration, device, f"{ckpt_path}: iteration to resume from")
    best_value = _best_value(history, task.select)
    # the wrapped model trains; the bare one is validated (on rank 0 alone) and saved
    trained = model
    if distributed.active():
        # every parameter gets a gradient each step (the lowest deep-supervision head, weight
        # 0 as in nnU-Net, a gradient of zeros: deeptree.stage1.losses.Stage1Loss), so DDP
        # skips the extra graph traversal that looks for unused parameters
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    loader = _loader(task.dataset, cfg, iteration, num_workers, device, rank, world)
    bar = progress_bar(
        total=cfg.iterations, initial=iteration, progress=progress if main else False,
        desc="train", unit="it"
    )
    running = None
    with _StopFlag() as stop, _open_log(log_path, main) as log:
        batches = iter(loader)
        while iteration < cfg.iterations:
            batch = _to_device(next(batches), device)
            loss, parts, lr, stop_now = _step(
                task, cfg, trained, optimizer, batch, iteration, use_amp, ckpt_path,
                stop.requested, main,
            )  # fmt: skip
            iteration += 1
            entry = {
                "iteration": iteration,
                "loss": loss,
                **parts,
                "lr": lr,
                "seconds": round(time.perf_counter() - start_time, 4),  # since this call began
            }
            running = entry["loss"] if running is None else 0.95 * running + 0.05 * entry["loss"]
            if main:
                _append(log, history, entry)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2e}")
            if (
                main
                and task.validate is not None
                and (iteration % cfg.validate_every == 0 or iteration == cfg.iterations)
            ):
                metrics, best_value = _validate_and_keep_best(
                    task,
                    cfg,
                    model,
                    optimizer,
                    iteration,
                    use_amp,
                    best_value,
                    out_dir,
                    log,
                    history,
                )
                bar.write(
                    f"iteration {iteration}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                )
            if callback is not None and main:
                callback(iteration, entry)
            if not distributed.active():
                stop_now = stop.requested  # one process: a Ctrl-C up to now stops here
            if main and (
                iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations or stop_now
            ):
                save_checkpoint(ckpt_path, model, optimizer, iteration, cfg, task.meta)
            if stop_now:
                distributed.barrier()  # no rank exits before rank 0 has written the checkpoint
                bar.close()
                raise stop.exception(
                    f"training interrupted after iteration {iteration}; resume from {ckpt_path}"
                )
    bar.close()
    if not main:
        return TrainResult(iteration, ckpt_path, log_path, [], time.perf_counter() - start_time)
    _save_plot(out_dir / PLOT_NAME, history, task.meta)
    best = out_dir / BEST_NAME if task.select is not None and best_value is not None else None
    if best is not None and best_value <= 0.0:
        warnings.warn(
            f"{out_dir}: validation {task.select} never rose above 0 in {iteration} iterations; "
            "the network may predict no foreground at all. Train again with another --seed "
            "or more iterations.",
            stacklevel=2,
        )
    return TrainResult(
        iteration, ckpt_path, log_path, history, time.perf_counter() - start_time, best
    )


def _restore_or_start(
    task: TrainingTask, cfg: TrainConfig, model, optimizer, out_dir: Path, resume: bool, device,
    main: bool = True,
) -> tuple[int, list[dict]]:  # fmt: skip
    """Restore weights, optimiser, iteration, random states and log from ``last.pt`` (with
    ``resume`` and a checkpoint there), else seed everything and start an empty log (with
    ``resume``, a ``UserWarning`` when a log but no checkpoint is there). Only the ``main``
    rank touches the log and ``best.pt``; every rank restores the same checkpoint.

    Returns the iteration to start from and the log entries so far (empty unless ``main``)."""
    ckpt_path, log_path = out_dir / CHECKPOINT_NAME, out_dir / LOG_NAME
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device)
        check_compatible(state, task.meta, cfg, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        iteration = state["iteration"]
        set_rng_state(state["rng"])
        if not main:
            return iteration, []
        # entries logged after the checkpoint (a run killed hard) are replayed: drop them
        history = [e for e in read_log(log_path) if e["iteration"] <= iteration]
        _write_log(log_path, history)
        return iteration, history
    seed_everything(cfg.seed)
    if not main:
        return 0, []
    if resume and log_path.is_file() and log_path.stat().st_size > 0:
        # an earlier run logged iterations but left no checkpoint (killed during its first
        # checkpoint write): say that its work is not resumed; a fresh folder needs no notice
        warnings.warn(
            f"{ckpt_path}: no checkpoint to resume from (the earlier run in {out_dir} was "
            "stopped before its first checkpoint); training starts from scratch",
            stacklevel=3,
        )
    _write_log(log_path, [])
    (out_dir / BEST_NAME).unlink(missing_ok=True)  # an earlier run's best is not this one's
    return 0, []


def _step(
    task: TrainingTask, cfg: TrainConfig, model, optimizer, batch: dict, iteration: int,
    use_amp: bool, ckpt_path: Path, stop_requested: bool = False, main: bool = True,
) -> tuple[float, dict, float, bool]:  # fmt: skip
    """One optimisation step at the learning rate of ``iteration``; returns the loss, its
    parts (means over the ranks), the learning rate and whether any rank asked to stop. A
    non-finite loss (on any rank) keeps the last good state in ``ckpt_path`` and raises
    ``FloatingPointError``."""
    device = next(model.parameters()).device
    lr = poly_lr(iteration, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with (
        distributed.global_batch(),
        torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
    ):
        outputs = model(batch["image"])
        loss, parts = task.loss_fn(outputs, batch)
    # one small collective agrees on the logged figures, finiteness and a stop request
    names = list(parts)
    values = distributed.mean_over_ranks(
        [float(loss.detach()), *(float(parts[k]) for k in names), float(stop_requested)], device
    )
    mean_loss, stop = values[0], values[-1] > 0
    if not np.isfinite(mean_loss):
        if main:
            bare = model.module if hasattr(model, "module") else model
            save_checkpoint(ckpt_path, bare, optimizer, iteration, cfg, task.meta)
        raise FloatingPointError(
            f"loss is {mean_loss} at iteration {iteration}; checkpoint of the last good state kept"
        )
    with distributed.global_batch():
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return mean_loss, dict(zip(names, values[1:-1], strict=True)), lr, stop


def _validate_and_keep_best(
    task: TrainingTask, cfg: TrainConfig, model, optimizer, iteration: int, use_amp: bool,
    best_value: float | None, out_dir: Path, log, history: list,
) -> tuple[dict, float | None]:  # fmt: skip
    """Run ``task.validate``, log its figures, and write ``best.pt`` when the selection figure
    beats ``best_value``; returns the figures and the best value so far."""
    device = next(model.parameters()).device
    model.eval()
    with (
        torch.no_grad(),
        torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
    ):
        metrics = task.validate(model)
    _append(log, history, {"iteration": iteration, "val": jsonable(metrics)})
    value = _selection_value(metrics, task.select)
    if value is not None and (best_value is None or value > best_value):
        best_value = value
        save_checkpoint(out_dir / BEST_NAME, model, optimizer, iteration, cfg, task.meta)
    return metrics, best_value


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


def _open_log(path: Path, main: bool):
    """The log opened for appending on rank 0; a do-nothing context elsewhere."""
    return open(path, "a") if main else contextlib.nullcontext()


def _append(log, history: list, entry: dict) -> None:
    history.append(entry)
    try:
        log.write(json.dumps(entry) + "\n")
        log.flush()
    except OSError as err:  # a full disk: the message names the log
        raise OSError(err.errno, err.strerror or str(err), log.name) from err


def _save_plot(path: Path, history: list[dict], meta: dict) -> None:
    fig = plot_log(history, title=meta.get("name"), offscreen=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


class _IndexRange(torch.utils.data.Sampler):
    """Yields the items of one rank for iterations ``start ... stop - 1``: item ``index`` of
    iteration ``it`` is ``it * batch_size + rank * local + position``
    (:func:`deeptree.distributed.rank_items`; one process: ``it * batch_size + position``),
    so the stream restarts exactly where it stopped."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.stop = start, stop
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.local = distributed.local_batch_size(batch_size, world)

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield from distributed.rank_items(it, self.batch_size, self.rank, self.world)

    def __len__(self):
        return (self.stop - self.start) * self.local


def _loader(
    dataset, cfg: TrainConfig, iteration: int, num_workers: int, device, rank: int = 0,
    world: int = 1,
) -> DataLoader:  # fmt: skip
    sampler = _IndexRange(iteration, cfg.iterations, cfg.batch_size, rank, world)
    return DataLoader(
        dataset,
        batch_size=sampler.local,
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
