"""The demo weights shipped inside the package: a two-stage model for a first real CT.

``deeptree/weights/`` (package data, in the wheel too) holds a stage-1 and a stage-2
checkpoint trained on varied phantoms by ``benchmarks/demo_weights.py`` (``make
demo-weights``), and ``MODEL_CARD.md``, which that script writes with every figure it
measured. ``deeptree predict CT OUT`` and ``deeptree segment CT OUT`` use them when no
``--checkpoint`` is given, and print :func:`describe` to say so.

The shipped files are weights-only checkpoints (:func:`export_weights`: no optimiser state
and no random states, which a resume needs but inference does not), in the format
:func:`deeptree.checkpoints.load_model` reads; their ``meta["demo"]`` records what they were
trained on.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import numpy as np
import torch

from deeptree.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from deeptree.files import atomic_write
from deeptree.io import InputError
from deeptree.resample import anatomical_spacing

#: File names inside ``deeptree/weights``: the checkpoints, the model card and its figures.
STAGE1_NAME, STAGE2_NAME, CARD_NAME = "stage1.pt", "stage2.pt", "MODEL_CARD.md"
CARD_JSON = "card.json"


def weights_dir() -> Path:
    """The folder of the shipped weights (``deeptree/weights``, found with importlib.resources).

    Returns
    -------
    Path
        May be missing in a broken install; :func:`demo_checkpoints` says so.
    """
    found = importlib.resources.files("deeptree") / "weights"
    return Path(str(found))


def demo_checkpoints() -> tuple[Path, Path]:
    """Paths of the shipped stage-1 and stage-2 checkpoints.

    Returns
    -------
    (Path, Path)
        ``stage1.pt`` and ``stage2.pt`` in :func:`weights_dir`.

    Raises
    ------
    InputError
        A file is missing (an install without package data, or a clone whose weights were
        deleted): the message names it and how to rebuild (``make demo-weights``) or to give
        ``--checkpoint``.
    """
    folder = weights_dir()
    paths = (folder / STAGE1_NAME, folder / STAGE2_NAME)
    for path in paths:
        if not path.is_file():
            raise InputError(
                f"{path}: the demo weights are missing from this install; give --checkpoint "
                "(and --stage2-checkpoint), or rebuild them in a clone with `make demo-weights`"
            )
    return paths


def model_card() -> dict:
    """The figures of the model card (``card.json`` beside the weights).

    Returns
    -------
    dict
        As ``benchmarks/demo_weights.py`` wrote it: ``settings``, ``training``, ``synthetic``
        (per case and ``mean``), ``real``, ...

    Raises
    ------
    InputError
        The file is missing or unreadable.
    """
    import json

    path = weights_dir() / CARD_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: the demo model card's figures cannot be read ({err})") from err


def describe(stage1_path: str | os.PathLike | None = None, stage2: bool = True) -> str:
    """One line saying which weights are used, what they were trained on and at what voxel size.

    Parameters
    ----------
    stage1_path : path-like, optional
        Default: the shipped ``stage1.pt``.
    stage2 : bool
        The shipped stage 2 is used too (said in the line).

    Returns
    -------
    str
    """
    path = Path(stage1_path) if stage1_path is not None else demo_checkpoints()[0]
    meta = load_checkpoint(path).get("meta", {})
    demo = meta.get("demo", {})
    spacing = meta.get("spacing")

    def mm(values):
        return "x".join(f"{float(v):.3g}" for v in values) + " mm" if values else "unknown"

    run_at = ""
    if spacing and meta.get("anatomical_scale") is not None:
        real = anatomical_spacing(spacing, meta, str(path))
        run_at = (
            f" (anatomical scale {float(meta['anatomical_scale']):.3g}: a CT is resampled to "
            f"{mm(real)})"
        )
    return (
        f"no --checkpoint: using the demo weights in {path.parent} (stage 1 {meta.get('variant')}"
        f"{' + stage 2' if stage2 else ''}), trained on {demo.get('trained_on', 'phantoms')}, at voxel size "
        f"{mm(spacing)}{run_at}; see {path.parent / CARD_NAME}"
    )


def record_anatomical_scale(
    checkpoint: str | os.PathLike, scale: float, validation: dict
) -> Path:
    """Record in a shipped checkpoint the anatomical scale real CT is run at (in place, atomic).

    Parameters
    ----------
    checkpoint : path-like
        A weights-only checkpoint of :func:`export_weights`.
    scale : float
        ``meta["anatomical_scale"]``: real CT is resampled to the training spacing divided by
        it (:func:`deeptree.resample.real_ct_spacing`); chosen by :mod:`deeptree.real_scale`.
    validation : dict
        How it was chosen (JSON-able): stored as ``meta["demo"]["scale_validation"]``.

    Returns
    -------
    Path
    """
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"{checkpoint}: anatomical scale must be a positive number, got {scale}")
    state = load_checkpoint(checkpoint)
    meta = dict(state.get("meta", {}))
    meta["anatomical_scale"] = scale
    meta["demo"] = {**meta.get("demo", {}), "scale_validation": dict(validation)}
    state = {**state, "meta": meta}

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return atomic_write(checkpoint, write)


def export_weights(
    checkpoint: str | os.PathLike, out: str | os.PathLike, demo: dict
) -> Path:
    """Write a weights-only copy of a training checkpoint (for shipping).

    Parameters
    ----------
    checkpoint : path-like
        ``last.pt`` or ``best.pt`` of :func:`deeptree.train.train`.
    out : path-like
        The file to write (atomically).
    demo : dict
        What it was trained on (JSON-able): stored as ``meta["demo"]``; ``trained_on`` (str)
        is shown by :func:`describe`.

    Returns
    -------
    Path
    """
    state = load_checkpoint(checkpoint)
    slim = {
        "format": CHECKPOINT_FORMAT,
        "iteration": state["iteration"],
        "model": {k: v.detach().clone().contiguous() for k, v in state["model"].items()},
        "train_config": state.get("train_config", {}),
        "meta": {**state.get("meta", {}), "demo": dict(demo)},
    }

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(slim, f)

    return atomic_write(out, write)
