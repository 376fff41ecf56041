"""``benchmarks/extend_models.py``: a model that missed the flattening rule is retrained with
the same recipe and only a longer schedule, and replaces the original only when finished."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from deeptree.checkpoints import CHECKPOINT_FORMAT
from deeptree.config import reproduce_settings
from deeptree.io import InputError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "extend_models.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("extend_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(path: Path, cfg, iteration: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    torch.save({"format": CHECKPOINT_FORMAT, "train_config": config, "iteration": iteration}, path)
    return path


def test_only_the_length_of_the_recipe_may_change(script, tmp_path):
    short = reproduce_settings("cpu", stage1_iterations=2000, validations=8).stage1_train
    longer = reproduce_settings("cpu", stage1_iterations=3000, validations=8).stage1_train
    original = _checkpoint(tmp_path / "a" / "last.pt", replace(short, seed=2), 2000)
    script.check_same_recipe(original, replace(longer, seed=2))  # length and checks: fine
    with pytest.raises(InputError, match="seed=2"):
        script.check_same_recipe(original, replace(longer, seed=1))
    with pytest.raises(InputError, match="momentum"):
        script.check_same_recipe(original, replace(longer, seed=2, momentum=0.9))


def test_the_longer_model_replaces_the_original_only_when_finished(script, tmp_path):
    cfg = reproduce_settings("cpu", stage2_iterations=300).stage2_train
    run = tmp_path / "run"
    _checkpoint(run / "models" / "seed1" / "stage2" / "last.pt", replace(cfg, iterations=200), 200)
    longer = _checkpoint(run / "extended" / "seed1" / "stage2" / "last.pt", cfg, 250)
    with pytest.raises(InputError, match="unfinished"):
        script.swap(run, "seed1/stage2")
    _checkpoint(longer, cfg, 300)
    script.swap(run, "seed1/stage2")
    in_place = torch.load(run / "models" / "seed1" / "stage2" / "last.pt", weights_only=True)
    kept = torch.load(run / "superseded" / "seed1" / "stage2" / "last.pt", weights_only=True)
    assert (in_place["iteration"], kept["iteration"]) == (300, 200)
    assert not (run / "extended" / "seed1" / "stage2").exists()
    mark = json.loads((run / "models" / "seed1" / "stage2" / "extended.json").read_text())
    assert (mark["iterations"], mark["original_iterations"]) == (300, 200)


def test_shipped_models_may_carry_their_own_longer_schedule(tmp_path):
    """Re-scoring shipped models (``load_only``) accepts a model trained longer than the run's
    schedule, finished at its own; training keeps the run's schedule exact."""
    from types import SimpleNamespace

    from deeptree.evaluation.training import train_or_load

    cfg = reproduce_settings("cpu", stage2_iterations=200).stage2_train
    task = SimpleNamespace(meta={"stage": 2})

    def saved(iterations: int, iteration: int) -> Path:
        path = tmp_path / f"{iterations}-{iteration}" / "last.pt"
        _checkpoint(path, replace(cfg, iterations=iterations), iteration)
        state = torch.load(path, weights_only=True) | {"meta": {"stage": 2}}
        torch.save(state, path)
        return path.parent

    longer = saved(300, 300)
    assert train_or_load(task, cfg, longer, load_only=True)[1] is False  # loaded, not trained
    with pytest.raises(InputError, match="iterations=300"):
        train_or_load(task, cfg, longer)  # a training run needs its own schedule exactly
    with pytest.raises(InputError, match="unfinished"):
        train_or_load(task, cfg, saved(300, 250), load_only=True)
    with pytest.raises(InputError, match="iterations=100"):
        train_or_load(task, cfg, saved(100, 100), load_only=True)  # shorter: refused
    # a model put in place by extend_models (its mark) is loaded by the run's own command too
    (longer / "extended.json").write_text("{}")
    assert train_or_load(task, cfg, longer)[1] is False
