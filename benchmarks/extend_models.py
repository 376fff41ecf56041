"""Retrain the models of a reproduction run that missed the flattening rule, with a longer schedule.

The reference run (issue 32) trains every stage-1 model 24000 iterations and every stage-2 model
32000; a model whose validation score still gained 1 point or more over its last quarter
(:mod:`deeptree.evaluation.convergence`) has not converged. This script retrains such a model
from scratch with the same recipe (same data, seed, batch, learning rate, validation cases) and a
schedule ``--factor`` times longer (the poly learning rate follows the new length), into
``RUN/extended/seed<s>/<model>`` (resumable: rerun the same command after an interruption).
With ``--swap``, once every named model is finished, each one replaces its model in
``RUN/models`` and the old one moves to ``RUN/superseded`` (kept, with its curve, for the
record) and its folder gets an ``extended.json`` (both schedules and why), with which the run's
own command (``deeptree reproduce``, which then re-scores the run), ``deeptree ship`` and the
re-scoring of shipped models load it at its own schedule.

Run from the repository root::

    python benchmarks/extend_models.py RUN seed1/stage2 seed2/stage1_gul [--factor 1.5] [--swap]

NOT package code: a benchmark script (the reference run's one-off repair).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)

from deeptree.checkpoints import CHECKPOINT_NAME, load_checkpoint  # noqa: E402
from deeptree.config import reproduce_settings  # noqa: E402
from deeptree.evaluation.training import (  # noqa: E402
    EXTENDED_MARK,
    prepare_data,
    train_stage1_models,
    train_stage2_models,
)
from deeptree.io import InputError  # noqa: E402
from deeptree.stage2.task import case_sources  # noqa: E402

#: The only keys of the training configuration a longer training may change (stage 1 keeps its
#: number of validation checks, so their spacing grows with the schedule).
LENGTH_KEYS = ("iterations", "validate_every")


def longer_settings(run: Path, factor: float, validations: int = 8):
    """The run's settings with every schedule ``factor`` times longer.

    The run's own lengths are read from a stage-1 and a stage-2 checkpoint of ``run/models``.
    """
    s1 = next((run / "models").glob("seed*/stage1_plain/" + CHECKPOINT_NAME))
    s2 = next((run / "models").glob("seed*/stage2/" + CHECKPOINT_NAME))
    it1 = int(load_checkpoint(s1)["train_config"]["iterations"])
    it2 = int(load_checkpoint(s2)["train_config"]["iterations"])
    return reproduce_settings(
        "cpu", stage1_iterations=round(it1 * factor), stage2_iterations=round(it2 * factor),
        validations=validations,
    )  # fmt: skip


def check_same_recipe(original: Path, cfg) -> None:
    """Refuse a longer training whose recipe differs from the original's beyond its length."""
    saved = load_checkpoint(original)["train_config"]
    new = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    for key in sorted(set(saved) | set(new)):
        if key not in LENGTH_KEYS and saved.get(key) != new.get(key):
            raise InputError(
                f"{original}: was trained with {key}={saved[key]!r}, the longer training "
                f"would use {new.get(key)!r}"
            )


def extend(run: Path, model: str, factor: float) -> Path:
    """Train ``model`` (``seed<s>/stage1_<key>`` or ``seed<s>/stage2``) of ``run`` longer."""
    seed_name, folder = model.split("/")
    seed = int(seed_name.removeprefix("seed"))
    original = run / "models" / model / CHECKPOINT_NAME
    if not original.is_file():
        raise InputError(f"{original}: no such model in the run")
    settings = longer_settings(run, factor)
    _, split, train_cases, val_cases = prepare_data(settings, run, None, progress=False)
    root = run / "extended" / seed_name
    options = {"device": "cpu", "progress": False, "workers": 0}
    seconds: dict = {}
    if folder == "stage2":
        check_same_recipe(original, replace(settings.stage2_train, seed=seed))
        prepared = (case_sources(split.train), case_sources(split.val))
        train_stage2_models(settings, seed, (), prepared, split, root, seconds, options)
    else:
        key = folder.removeprefix("stage1_").replace("amc_gul", "amc+gul")
        check_same_recipe(original, replace(settings.stage1_train, seed=seed))
        train_stage1_models(
            settings, seed, False, split, train_cases, val_cases, root, seconds, options,
            keys=(key,),
        )  # fmt: skip
    print(f"{model}: {seconds}", flush=True)
    return root / folder


def swap(run: Path, model: str) -> None:
    """Put the longer model in place of the original; keep the original in RUN/superseded."""
    longer, current = run / "extended" / model, run / "models" / model
    state = load_checkpoint(longer / CHECKPOINT_NAME)
    if int(state["iteration"]) < int(state["train_config"]["iterations"]):
        raise InputError(f"{longer}: unfinished; rerun without --swap first")
    kept = run / "superseded" / model
    record = {
        "iterations": int(state["train_config"]["iterations"]),
        "original_iterations": int(
            load_checkpoint(current / CHECKPOINT_NAME)["train_config"]["iterations"]
        ),
        "why": "the original missed the flattening rule (deeptree.evaluation.convergence); "
        "retrained from scratch with the same recipe and a longer schedule",
        "original": str(kept.relative_to(run)),
    }
    (longer / EXTENDED_MARK).write_text(json.dumps(record, indent=1) + "\n")
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(current, kept)
    shutil.move(longer, current)
    print(f"{model}: the longer model is in place; the original is in {kept}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("models", nargs="+", help="seed<s>/stage1_<key> or seed<s>/stage2")
    parser.add_argument("--factor", type=float, default=1.5, help="schedule length factor")
    parser.add_argument("--swap", action="store_true", help="put the finished models in place")
    args = parser.parse_args(argv)
    for model in args.models:
        if args.swap:
            swap(args.run, model)
        else:
            extend(args.run, model, args.factor)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
