"""``benchmarks/synth_ablation.py``: the randomisation ablation's effects are paired by training
seed and check CT, and only models whose validation curve flattened enter a verdict."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its neighbour demo_weights
    try:
        spec = importlib.util.spec_from_file_location(
            "synth_ablation", BENCHMARKS / "synth_ablation.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _report(cip: list[float], simulated: list[float]) -> dict:
    """A hand-built transfer report: cip_ct64 as is and edited, one simulated set."""
    names = ["as is"] + [f"edit {i}" for i in range(1, len(cip))]
    return {
        "totalseg_chest": {
            "as is": {"trachea_found": True, "generations_reached": 3, "volume_ml": 41.23}
        },
        "cip_ct64": {
            **{n: {"metrics": {"TLD": t}} for n, t in zip(names, cip, strict=True)},
            "unchanged edit": {"metrics": {"TLD": 0.0}, "unchanged": True},
        },
        "simulated": {"held-out": {"cases": [{"TLD": t} for t in simulated]}},
    }


def _write_log(path: Path, tlds: list[float], every: int = 500) -> None:
    """A stage-1 log: a step entry and a validation entry every ``every`` iterations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, tld in enumerate(tlds, start=1):
        entries.append({"iteration": i * every, "loss": 0.5, "seconds": 10.0 * i})
        entries.append({"iteration": i * every, "val": {"TLD": tld, "BD": tld}})
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_check_tlds_orders_the_cts_and_drops_unchanged_edits(script):
    report = _report([0.8, 0.6, 0.7], [0.5, 0.4])
    got = script.check_tlds(report)
    assert got["cip_ct64"] == [0.8, 0.6, 0.7]  # "as is", "edit 1", "edit 2": sorted names
    assert got["simulated"] == [0.5, 0.4]


def test_the_effect_is_the_paired_difference_of_the_arms(script):
    reports = {
        "all": {0: _report([0.9, 0.8], [0.7, 0.6]), 1: _report([0.85, 0.8], [0.65, 0.6])},
        "no noise": {0: _report([0.6, 0.5], [0.7, 0.6]), 1: _report([0.55, 0.5], [0.65, 0.6])},
    }
    rows = {(r["family"], r["kind"]): r for r in script.effects(reports)}
    cip = rows[("noise", "cip_ct64")]
    assert cip["seeds"] == 2 and cip["cases"] == 2 and cip["left out"] == 0
    assert cip["mean"] == pytest.approx(30.0)
    assert cip["verdict"] != "not resolved" and cip["low"] > 0
    # identical simulated TLDs: a zero effect
    assert rows[("noise", "simulated")]["mean"] == pytest.approx(0.0)
    # families without their "no <family>" arm are not compared
    assert {f for f, _ in rows} == {"noise"}


def test_a_model_that_did_not_converge_leaves_its_seed_out_of_the_verdict(script):
    reports = {
        "all": {0: _report([0.9], [0.7]), 1: _report([0.2], [0.2])},
        "no kernel": {0: _report([0.6], [0.5]), 1: _report([0.8], [0.9])},
    }
    both = {("all", 0), ("no kernel", 0), ("all", 1), ("no kernel", 1)}
    everything = {(r["family"], r["kind"]): r for r in script.effects(reports, both)}
    assert everything[("kernel", "cip_ct64")]["seeds"] == 2
    one = {(r["family"], r["kind"]): r for r in script.effects(reports, both - {("all", 1)})}
    row = one[("kernel", "cip_ct64")]
    assert row["seeds"] == 1 and row["left out"] == 1
    assert row["mean"] == pytest.approx(30.0)  # seed 0 only
    none = {(r["family"], r["kind"]): r for r in script.effects(reports, set())}
    assert none[("kernel", "simulated")]["verdict"] == "not converged"
    assert none[("kernel", "simulated")]["mean"] is None


def test_arm_convergence_applies_the_flattening_rule_to_each_model(script, tmp_path):
    # 3000 iterations, checks every 500: the last quarter starts after 2250
    _write_log(tmp_path / "all" / "seed0" / "log.jsonl", [0.3, 0.5, 0.6, 0.7, 0.7, 0.705])
    _write_log(tmp_path / "no-noise" / "seed0" / "log.jsonl", [0.3, 0.4, 0.5, 0.55, 0.6, 0.7])
    _write_log(tmp_path / "none" / "seed1" / "log.jsonl", [0.3, 0.4])  # stopped at 1000
    rows = script.arm_convergence(tmp_path, ["all", "no noise", "none"], [0, 1], 3000)
    got = {(r["arm"], r["seed"]): r for r in rows}
    assert set(got) == {("all", 0), ("no noise", 0), ("none", 1)}  # no log: left out
    assert got[("all", 0)]["flat"] == "yes" and got[("all", 0)]["gain"] == pytest.approx(0.5)
    assert got[("no noise", 0)]["flat"] == "no" and got[("no noise", 0)]["gain"] == 15.0
    assert got[("none", 1)]["flat"] == "unfinished"


def test_the_markdown_shows_every_figure_of_the_record(script):
    effects = script.effects(
        {"all": {0: _report([0.9], [0.7])}, "no body": {0: _report([0.7], [0.7])}}, set()
    )
    record = {
        "command": "python benchmarks/synth_ablation.py",
        "written": "2026-12-08 00:00 UTC",
        "settings": {"iterations1": 3000, "n_train": 12, "spacing_mm": 1.0},
        "stage2": "runs/x/best.pt",
        "arms": script.arm_rows({"all": {0: _report([0.9], [0.7])}}),
        "effects": effects,
        "convergence": [
            {
                "model": "all/seed0",
                "iterations": 1000,
                "best before last quarter": 40.0,
                "end": 40.0,
                "gain": None,
                "flat": "unfinished",
            }
        ],  # fmt: skip
    }
    text = script.markdown(record)
    assert "| all | 0 | yes | 3 | 41.2 | 90.0 | 70.0 |" in text
    assert "| body | cip_ct64 | 0 x 0 (1 left out: not converged) | - | not converged |" in text
    assert "| all/seed0 | 1000 | 40.0 | 40.0 | None | unfinished |" in text
    assert np.isfinite(record["arms"][0]["simulated TLD"])
