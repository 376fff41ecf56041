"""Trained models shipped with their results: a reproduction a reader can re-score in minutes.

A reproduction's models (``<run>/models/seed<s>/<name>/last.pt``, and the paper's stage 2's
``best.pt``) are written into a results folder, weights only, by :func:`ship_models`
(``deeptree ship RUN DEST``)::

    DEST/models/manifest.json                 what was trained, how, and each file's SHA-256
    DEST/models/seed0/stage1_plain/last.pt    weights (float16 by default), metadata, schedule
    DEST/models/seed0/stage1_plain/log.jsonl.gz   its training log (validations, thinned steps)
    ...

``deeptree reproduce --models DEST`` (``reproduce(..., models=DEST)``) then rebuilds the run's
settings from the manifest, regenerates the phantoms from their seeds, checks every file
against its checksum, loads the models (never trains) and writes the same tables. Like
nnU-Net's pretrained models and MONAI's bundles, the weights travel with the numbers, so a
reader can check a table without hours of training.

Half precision: a float32 weight rounded to float16 (10-bit mantissa, relative error at most
2^-11, about 0.05%) and loaded back into the float32 network. Whether that changes a figure is
measured, not assumed (``benchmarks/RESULTS.md``, "Reference run").

A shipped log keeps every validation and at most :data:`SHIPPED_STEP_LINES` of the step lines
(:func:`thinned_log`): a model trained 24000 iterations logs 1.6 MB gzipped, more than its
float16 weights, and the 40 MB a results folder may hold would not carry 19 of them. The loss
curve is drawn as well from every 24th step; the training seconds come out the same.

The output rule of a shipped run is the one chosen on its validation phantoms when it was
trained (``manifest["rule"]``, with the validation figures); re-scoring takes it from the
manifest rather than running every model on the validation phantoms again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from deeptree.checkpoints import BEST_NAME, CHECKPOINT_FORMAT, CHECKPOINT_NAME, load_checkpoint
from deeptree.config import ReproduceSettings, settings_from_record
from deeptree.evaluation.convergence import training_seconds
from deeptree.evaluation.curves import model_key
from deeptree.evaluation.scoring import rule_figures
from deeptree.io import InputError, atomic_write
from deeptree.locations import clone_root
from deeptree.train import read_log

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "read_manifest",
    "reference_models",
    "ship_models",
    "shipped_rule",
    "shipped_logs",
    "shipped_settings",
    "thinned_log",
    "verify_shipped",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "deeptree-shipped-models-1"
SHIPPED_STEP_LINES = 1000  # step lines a shipped log keeps at most (a curve's worth)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _slim(checkpoint: Path, half: bool) -> dict:
    """Weights (float16 when ``half``), iteration, schedule and metadata of a checkpoint:
    what loads and identifies the model, without the optimiser and random states."""
    state = load_checkpoint(checkpoint)

    def weight(value: torch.Tensor) -> torch.Tensor:
        value = value.detach().clone().contiguous()
        return value.half() if half and value.is_floating_point() else value

    return {
        "format": CHECKPOINT_FORMAT,
        "iteration": state["iteration"],
        "model": {k: weight(v) for k, v in state["model"].items()},
        "train_config": state.get("train_config", {}),
        "meta": state.get("meta", {}),
        "torch_threads": state.get("torch_threads"),
    }


def _training_record(folder: Path) -> dict:
    """Iterations, wall seconds of the training (from its log, across resumes) and torch
    threads of one model folder of a run."""
    state = load_checkpoint(folder / CHECKPOINT_NAME)
    return {
        "iterations": int(state["iteration"]),
        "seconds": round(training_seconds(read_log(folder / "log.jsonl")), 1),
        "torch_threads": state.get("torch_threads"),
    }


def ship_models(
    run: str | os.PathLike, dest: str | os.PathLike, *, half: bool = True
) -> Path:
    """Write every trained model of a reproduction run into ``dest/models`` (weights only).

    Parameters
    ----------
    run : path-like
        A ``deeptree reproduce`` run folder: ``models/seed<s>/<name>/last.pt`` (and
        ``best.pt`` of stage 2), their ``log.jsonl``, and ``results.json`` (settings, rule).
    dest : path-like
        A results folder; ``dest/models`` must not exist yet (never overwritten).
    half : bool
        Store floating-point weights as float16 (half the bytes; loaded back into float32).

    Returns
    -------
    Path
        ``dest/models/manifest.json``: format, settings, output rule (with its validation
        figures), per model its iterations, training seconds and torch threads, per file its
        bytes and SHA-256.

    Raises
    ------
    InputError
        ``run`` has no models or no ``results.json``, a model is unfinished, or
        ``dest/models`` exists.
    """
    run, dest = Path(run), Path(dest)
    results_json = run / "results.json"
    if not results_json.is_file():
        raise InputError(f"{results_json}: not found (ship a finished `deeptree reproduce` run)")
    results = json.loads(results_json.read_text())
    if "settings" not in results:
        raise InputError(
            f"{results_json}: records no settings (written by an older deeptree); run "
            "`deeptree reproduce` on the run folder again: it reuses the models and rewrites it"
        )
    settings = settings_from_record(results["settings"])  # else InputError
    # best.pt is used only as the paper's stage-2 run's option "best" (the first seeds)
    best_folders = {
        f"seed{s}/stage2" for s in settings.seeds[: settings.extra_seeds]
    } if "best" in settings.stage2_options else set()
    folders = sorted(p.parent for p in (run / "models").glob(f"seed*/*/{CHECKPOINT_NAME}"))
    if not folders:
        raise InputError(f"{run / 'models'}: no trained model (seed*/*/{CHECKPOINT_NAME})")
    target = dest / "models"
    if target.exists():
        raise InputError(f"{target}: exists; ship into a new results folder")
    training = {}
    for folder in folders:  # every model checked before anything is written
        name = folder.relative_to(run / "models").as_posix()
        record = _training_record(folder)
        schedule = load_checkpoint(folder / CHECKPOINT_NAME).get("train_config", {})
        if record["iterations"] < int(schedule.get("iterations", 0)):
            raise InputError(
                f"{folder / CHECKPOINT_NAME}: unfinished ({record['iterations']} of "
                f"{schedule.get('iterations')} iterations); finish the run before shipping it"
            )
        training[name] = record
    staging = dest / ".models.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_models(run, staging, folders, best_folders, half)
        files = {
            path.relative_to(staging).as_posix(): {"bytes": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(p for p in staging.rglob("*") if p.is_file())
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "settings": results["settings"],
            "data": results.get("data"),
            "rule": results.get("output rule choice")
            or {"rule": results.get("output rule"),
                "validation": results.get("output rule validation", {})},  # fmt: skip
            "half": bool(half),
            "log_step_lines": SHIPPED_STEP_LINES,
            "training": training,
            "files": files,
        }
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        atomic_write(staging / MANIFEST_NAME, lambda tmp: Path(tmp).write_text(text))
        staging.rename(target)  # all or nothing: a half-written folder never looks shipped
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / MANIFEST_NAME


def _write_models(run: Path, staging: Path, folders, best_folders: set, half: bool) -> None:
    """The weights (:func:`_slim`) and gzipped log of every model folder into ``staging``."""
    for folder in folders:
        name = folder.relative_to(run / "models").as_posix()
        (staging / name).mkdir(parents=True)
        for file in (CHECKPOINT_NAME, BEST_NAME):
            if (folder / file).is_file() and (file == CHECKPOINT_NAME or name in best_folders):
                torch.save(_slim(folder / file, half), staging / name / file)
        gzip_log(folder / "log.jsonl", staging / name / "log.jsonl.gz")


def thinned_log(entries: list[dict], max_steps: int = SHIPPED_STEP_LINES) -> list[dict]:
    """The entries a shipped model's log keeps: every entry that is not a training step
    (validations, notes), and of the step entries (those with a ``loss``) every k-th, the
    first and last one, and the last and first one around each resume.

    Parameters
    ----------
    entries : list of dict
        :func:`deeptree.train.read_log` entries, in file order.
    max_steps : int
        The number of step entries to keep, about (the stride is ``ceil(n / max_steps)``;
        the entries around resumes come on top).

    Returns
    -------
    list of dict
        A subsequence of ``entries`` (the same dicts, in order); all of them when there are
        at most ``max_steps`` steps. :func:`deeptree.evaluation.convergence.training_seconds`
        gives the same figure for it as for ``entries``: the last ``seconds`` of every call is
        kept, and so is the first of the next one, whose fall marks the resume.
    """
    steps = [i for i, e in enumerate(entries) if "loss" in e]
    if len(steps) <= max_steps:
        return list(entries)
    stride = -(-len(steps) // max_steps)
    keep = set(steps[::stride]) | {steps[-1]}
    for before, after in zip(steps[:-1], steps[1:], strict=True):
        if float(entries[after].get("seconds", 0)) < float(entries[before].get("seconds", 0)):
            keep |= {before, after}  # a resume: its clock started again
    return [e for i, e in enumerate(entries) if "loss" not in e or i in keep]


def gzip_log(log: Path, target: Path) -> None:
    """A training log, thinned (:func:`thinned_log`) and gzipped to ``target`` (mtime 0 in
    the header: the same log gives the same bytes), as shipped models carry it
    (:func:`deeptree.train.read_log` reads it)."""
    text = "".join(json.dumps(e) + "\n" for e in thinned_log(read_log(log)))
    with gzip.GzipFile(target, "wb", mtime=0) as dst:
        dst.write(text.encode())


def read_manifest(dest: str | os.PathLike) -> dict:
    """The manifest of a shipped results folder (``dest/models/manifest.json``).

    Raises
    ------
    InputError
        Missing, not JSON, or not a DeepTree manifest.
    """
    path = Path(dest) / "models" / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found (not a results folder with shipped models)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from err
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a {MANIFEST_FORMAT} manifest ({manifest.get('format')!r})")
    return manifest


def verify_shipped(dest: str | os.PathLike) -> dict:
    """Check every file of the manifest against its size and SHA-256.

    Returns
    -------
    dict
        The manifest (:func:`read_manifest`).

    Raises
    ------
    InputError
        Naming the first file that is missing or whose bytes differ (damaged, or replaced).
    """
    manifest = read_manifest(dest)
    root = Path(dest) / "models"
    for name, record in sorted(manifest["files"].items()):
        path = root / name
        if not path.is_file():
            raise InputError(f"{path}: listed in {MANIFEST_NAME} but missing")
        if path.stat().st_size != record["bytes"] or _sha256(path) != record["sha256"]:
            raise InputError(
                f"{path}: its bytes differ from {MANIFEST_NAME} (SHA-256 {record['sha256'][:12]}...): "
                "damaged or replaced; fetch the results folder again"
            )
    return manifest


def shipped_settings(manifest: dict, **overrides) -> ReproduceSettings:
    """The :class:`~deeptree.config.ReproduceSettings` of the run a manifest describes
    (:func:`deeptree.config.settings_from_record`).

    ``overrides`` (``n_test``, ``seeds``: a reduced check) change what is *scored*; the
    schedule stays the shipped one.
    """
    return settings_from_record(manifest["settings"], **overrides)


def shipped_rule(manifest: dict) -> dict:
    """The output-rule choice of a shipped run (as
    :func:`deeptree.evaluation.scoring.choose_output_rule` returns it), made on its
    validation phantoms when the models were trained; its ``text`` says so."""
    choice = dict(manifest["rule"])
    if not choice.get("rule"):
        raise InputError(f"{MANIFEST_NAME}: records no output rule")
    text = choice.get("text") or (
        f"{choice['rule']}, chosen on validation (validation figures, percent: "
        f"{rule_figures(choice.get('validation', {}))})"
    )
    choice["text"] = text + "; recorded in the shipped models' manifest, not recomputed"
    return choice


def reference_models(profile: str = "cpu", root: str | os.PathLike | None = None) -> Path | None:
    """The newest reference run with shipped models of a profile, or None.

    Parameters
    ----------
    profile : str
    root : path-like, optional
        The repository root (default: the clone this package is imported from; an installed
        package has none: None is returned).

    Returns
    -------
    Path or None
        The newest ``results/<date>-<profile>-reference`` folder that holds
        ``models/manifest.json``.
    """
    root = Path(root) if root is not None else clone_root()
    if root is None:
        return None
    found = sorted(
        p.parent.parent for p in (root / "results").glob(f"*-{profile}-reference/models/{MANIFEST_NAME}")
    )
    return found[-1] if found else None


def shipped_logs(dest: str | os.PathLike, method: str | None = None) -> dict[str, Path]:
    """``seed<s>/<method>`` -> the training log of each shipped model (its ``log.jsonl``
    path, read from ``log.jsonl.gz`` by :func:`deeptree.train.read_log`).

    Parameters
    ----------
    dest : path-like
        A results folder with shipped models.
    method : str, optional
        Only this model (``plain``, ``amc+gul``, ``stage2``, ``cldice`` ...), every seed.
    """
    manifest = read_manifest(dest)
    logs = {}
    for folder in sorted(manifest["training"]):
        seed, name = model_key(folder)
        # the names reproduce gives: stage1_amc_gul -> amc+gul, stage2_negatives -> negatives
        if name.startswith("stage1_"):
            key = name.removeprefix("stage1_").replace("_", "+")
        else:
            key = name.removeprefix("stage2_")
        if method is None or key == method:
            logs[f"seed{seed}/{key}"] = Path(dest) / "models" / folder / "log.jsonl"
    return logs
