"""Checkpoints: saving and loading trained networks, random states, best/last selection.

A checkpoint (``last.pt`` or ``best.pt``, written by :func:`deeptree.train.train`) holds the
weights, the optimiser state, the iteration, the random states of torch, numpy and python, the
training configuration and ``meta`` (stage, variant, network filters and patch size, ...): what
rebuilds the network (:func:`load_model`, returning a :class:`LoadedModel`) and what a resume
must match (:func:`check_compatible`).
"""

from __future__ import annotations

import errno
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from deeptree.config import NetworkConfig, TrainConfig
from deeptree.io import InputError, atomic_write
from deeptree.orientation import check_orientation
from deeptree.report import jsonable

CHECKPOINT_FORMAT = "deeptree-checkpoint-1"


CHECKPOINT_NAME = "last.pt"


BEST_NAME = "best.pt"


@dataclass(frozen=True)
class LoadedModel:
    """A trained network with the metadata of its checkpoint.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode, on the device it was loaded to.
    meta : dict
        The checkpoint's metadata: ``stage``, ``variant``, ``filters``, ``patch_size``,
        ``overlap`` (stage 1), ``alpha`` and ``centre_threshold`` (stage 2), ...

    Unpacks as ``model, meta = loaded``.
    """

    model: torch.nn.Module
    meta: dict

    def __iter__(self):
        return iter((self.model, self.meta))


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

    The checkpoint also records the process's torch CPU threads (``"torch_threads"``).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "iteration": int(iteration),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": get_rng_state(),
        "train_config": jsonable(asdict(cfg)),
        "meta": jsonable(meta),
        # the CPU threads change the order of floating-point sums: part of how it was trained
        "torch_threads": torch.get_num_threads(),
    }
    return atomic_write(path, lambda tmp: _save(_canonical(state), tmp))


def _canonical(obj):
    """A copy of nested dicts, lists and tuples with every string interned (tensors and
    numbers as they are). pickle writes a second reference to one object as a back-reference:
    without this, a string shared by the optimiser state and the configuration in one run but
    not in a resumed one (whose optimiser keys were read from a file) changes the bytes."""
    import sys

    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    return obj


def _save(state: dict, tmp) -> None:
    """``torch.save`` through a file object: the archive inside then has a fixed name, not
    one taken from the (random) temporary file name, so the same state gives the same bytes
    (a resumed run's checkpoint equals an uninterrupted run's byte for byte).

    A write that fails (a full disk) makes torch raise ``RuntimeError: [enforce fail at
    inline_container.cc...]``; it is raised as the ``OSError`` the file gave (``ENOSPC``...),
    which :func:`~deeptree.files.atomic_write` makes name the checkpoint."""
    with open(tmp, "wb") as f:
        writer = _RecordingWriter(f)
        try:
            torch.save(state, writer)
        except RuntimeError as err:
            if writer.error is not None:
                raise writer.error from err
            raise OSError(errno.EIO, f"torch.save failed ({str(err).splitlines()[0]})") from err


class _RecordingWriter:
    """A file object that keeps the ``OSError`` of a failed write (torch hides it behind a
    ``RuntimeError``)."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self._f.flush()


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


def load_model(checkpoint: str | Path, stage: int, build, device="cpu") -> LoadedModel:
    """Rebuild a trained network of one stage from its checkpoint.

    Parameters
    ----------
    checkpoint : path-like
        ``last.pt`` written by :func:`~deeptree.train.train`.
    stage : int
        1 or 2: the stage the checkpoint must belong to.
    build : callable
        ``build(net_config, meta) -> torch.nn.Module`` makes the untrained network from the
        :class:`~deeptree.config.NetworkConfig` (filters, patch size) stored in the metadata.
    device : str or torch.device

    Returns
    -------
    LoadedModel
        The network in eval mode on ``device`` and the checkpoint's metadata (stage,
        variant, filters, patch_size, ...).

    Raises
    ------
    InputError
        Missing, unreadable or non-DeepTree checkpoint, one of another stage, one trained in
        another voxel orientation than RAS (``deeptree.orientation.check_orientation``; no
        record: RAS), metadata without ``filters``, ``patch_size`` (or, stage 1, ``variant``),
        or weights that do not fit the network the metadata describes.
    """

    state = load_checkpoint(checkpoint, map_location=device)
    meta = state.get("meta", {})
    for key in ("filters", "patch_size") + (("variant",) if stage == 1 else ()):
        # a damaged or hand-made checkpoint of this stage: not a KeyError traceback (one of
        # another stage is refused below as such)
        if meta.get("stage") == stage and key not in meta:
            raise InputError(f"{checkpoint}: its metadata has no {key!r}, needed to rebuild the network")
    if meta.get("stage") != stage:
        raise InputError(
            f"{checkpoint}: not a stage-{stage} checkpoint (stage {meta.get('stage')!r})"
        )
    check_orientation(meta, str(checkpoint))  # trained in a voxel order this code can run
    net = NetworkConfig(filters=tuple(meta["filters"]), patch_size=tuple(meta["patch_size"]))
    model = build(net, meta)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(
            f"{checkpoint}: weights do not fit the network in its metadata ({err})"
        ) from err
    return LoadedModel(model.to(device).eval(), meta)


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


def check_compatible(state: dict, meta: dict, cfg: TrainConfig, path: Path) -> None:
    """Resuming with another stage/variant/network or another schedule would silently train
    something else: refuse with a message naming what differs."""
    saved = state.get("meta", {})
    for key, value in jsonable(meta).items():
        if key in saved and saved[key] != value:
            raise InputError(
                f"{path}: checkpoint has {key}={saved[key]!r}, this run {key}={value!r}; use another --out"
            )
    saved_cfg = state.get("train_config", {})
    for key in ("iterations", "batch_size", "learning_rate", "seed", "warmup_iterations"):
        if key in saved_cfg and saved_cfg[key] != getattr(cfg, key):
            raise InputError(
                f"{path}: checkpoint was trained with {key}={saved_cfg[key]!r}, this run has "
                f"{getattr(cfg, key)!r}; resume needs the same schedule"
            )
