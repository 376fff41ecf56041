"""``benchmarks/reference_section.py``: the reference run's RESULTS.md section is written from
its records (no figure typed by hand) and replaces its earlier version in place."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_section.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("reference_section", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(name, gain, flat, hours, best=80.0, end=None):
    return {
        "model": name, "score": "TLD", "iterations": 24000, "best before last quarter": best,
        "end": end if end is not None else round(best + gain, 1), "gain": gain, "flat": flat,
        "wall hours": hours, "CPU hours": hours,
    }  # fmt: skip


def _records(folder: Path, rescore_s: float = 412.3) -> Path:
    folder.mkdir(parents=True)
    models = [
        _model("seed0/stage1_plain", -0.5, "yes", 0.61),
        _model("seed0/stage2", 1.7, "no", 2.25),
    ]
    (folder / "convergence.json").write_text(json.dumps({"run": "r", "models": models}))
    (folder / "shipped_size.txt").write_text("23M\tresults/x/models\n")
    (folder / "rescore_time.txt").write_text(
        f"rescoring {rescore_s} s\nmodel name\t: AMD EPYC 9B14\n"
        " 21:30:00 up 6:41,  0 user,  load average: 1.02, 0.90, 0.80\n"
    )
    metric = {"rows": 30, "rows differing": 2, "max difference (points)": 0.31}
    precision = {
        "per_case": {"TLD": metric},
        "tables": {
            "table2_ablation": {"cells": 24, "cells printed differently": 1},
            "component_effects": {"effects": 33, "verdicts differing": 0},
        },
    }
    (folder / "shipped_precision.json").write_text(json.dumps(precision))
    return folder


def _dest(folder: Path) -> Path:
    folder.mkdir()
    header = (
        "component,without,with,seeds,failed,cases,dBD,dBD low,dBD high,BD verdict,paper dBD,"
        "dTLD,dTLD low,dTLD high,TLD verdict,paper dTLD,dprecision,dprecision low,"
        "dprecision high,precision verdict,paper dprecision\n"
    )
    row = (
        "AMC,plain,amc,3,0,10,10.03,1.75,17.1,improves,1.6,11.25,-0.81,21.02,not resolved,2.9,"
        "-3.7,-7.26,0.14,not resolved,-0.4\n"
        "stage-2 option best,amc+gul+stage2,amc+gul+stage2+best,1,0,10,0,0,0,not resolved,,"
        "0,0,0,not resolved,,0,0,0,not resolved,\n"
    )
    (folder / "component_effects.csv").write_text(header + row)
    return folder


def test_the_section_carries_every_recorded_figure(script, tmp_path):
    text = script.section(_dest(tmp_path / "dest"), _records(tmp_path / "rec"))
    assert text.startswith(script.BEGIN) and text.rstrip().endswith(script.END)
    assert "**1 of 2 validated models meet the flattening rule**" in text
    assert "not: seed0/stage2 (no)" in text
    assert "2.9 CPU hours" in text  # 0.61 + 2.25, summed from the records
    assert "| seed0/stage2 | 24000 | TLD | 80.0 | 81.7 | 1.7 | no | 2.25 |" in text
    assert "23M" in text and "**412 s** on AMD EPYC 9B14" in text and "within" in text
    assert "TLD 2 of 30 rows (up to 0.31 points)" in text
    assert "table2_ablation 1 of 24 cells" in text and "component_effects 0 of 33" in text
    assert "| AMC | plain → amc | 3 | +10.0 [+1.8, +17.1] improves |" in text
    assert "| 1.6 / 2.9 / -0.4 |" in text and "| — / — / — |" in text


def test_a_rescoring_over_the_bar_is_said(script, tmp_path):
    text = script.rescore_part(_records(tmp_path / "rec", rescore_s=655.0))
    assert "**655 s**" in text and "**over** the issue's 10 minutes" in text


def test_the_section_goes_under_its_heading_once_and_is_replaced_in_place(script, tmp_path):
    results = (
        "## Evaluation\n\n### Shipped models and the reference run (issue 32, 2026-12-07)\n\n"
        "in progress\n\n### The cpu reproduction\n\nother\n"
    )
    first = script.insert(results, script.BEGIN + "\n\nfirst\n\n" + script.END + "\n")
    assert first.index("in progress") < first.index("first") < first.index("### The cpu")
    second = script.insert(first, script.BEGIN + "\n\nsecond\n\n" + script.END + "\n")
    assert "first" not in second and second.count(script.BEGIN) == 1
    assert second.replace("second", "first") == first
    with pytest.raises(SystemExit, match="no heading"):
        script.insert("## Other\n", "x")


def test_a_missing_record_names_the_file(script, tmp_path):
    records = _records(tmp_path / "rec")
    (records / "shipped_size.txt").unlink()
    with pytest.raises(SystemExit, match="shipped_size.txt: missing"):
        script.section(_dest(tmp_path / "dest"), records)
