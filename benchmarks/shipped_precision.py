"""Does shipping the weights in float16 change a figure? Two re-scorings of the same models.

    deeptree ship RUN /tmp/ship32 --float32 && deeptree ship RUN /tmp/ship16
    deeptree reproduce --models /tmp/ship32 --out /tmp/rescore32 [--test-cases N --seeds S]
    deeptree reproduce --models /tmp/ship16 --out /tmp/rescore16 [same]
    python benchmarks/shipped_precision.py /tmp/rescore32 /tmp/rescore16 [--json OUT]
    python benchmarks/shipped_precision.py /tmp/rescore32 results/<committed run> --rows-only

Compares the two runs' ``tables/per_case.csv`` row by row (BD, TLD, precision, DSC, in
percentage points) and the cells of every table CSV (``table2_ablation``, ``table1_comparison``,
``stage2_options``: the printed mean before its interval; ``component_effects``: the paired
effects), and prints the largest difference of each and how many rows or cells differ. A
figure "changes" when its printed value (one decimal) differs.
NOT package code: a benchmark script.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from _common import finish_report

METRICS = ("BD", "TLD", "precision", "DSC")
TABLES = ("table2_ablation", "table1_comparison", "stage2_options")
EFFECTS = ("dBD", "dTLD", "dprecision")


def tables(run: Path) -> Path:
    """A run folder's ``tables/`` (a committed ``results/...`` folder holds them at its top)."""
    return run / "tables" if (run / "tables").is_dir() else run


def read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float | None:
    """The leading number of a cell ("72.0 [66.3, 76.5]" -> 72.0); None if there is none."""
    try:
        value = float(str(text).split(" ")[0])
    except ValueError:
        return None
    return None if math.isnan(value) else value


def per_case(a: Path, b: Path) -> dict:
    key = ("case", "method", "rule", "seed")
    rows_b = {tuple(r[k] for k in key): r for r in read(tables(b) / "per_case.csv")}
    out = {}
    for metric in METRICS:
        diffs = []
        for row in read(tables(a) / "per_case.csv"):
            x, y = number(row[metric]), number(rows_b[tuple(row[k] for k in key)][metric])
            if x is not None and y is not None:
                diffs.append(100 * abs(x - y))
        out[metric] = {
            "rows": len(diffs),
            "rows differing": sum(d > 0 for d in diffs),
            "max difference (points)": round(max(diffs, default=0.0), 3),
        }
    return out


def cells(a: Path, b: Path) -> dict:
    out = {}
    for table in TABLES:
        path_a, path_b = tables(a) / f"{table}.csv", tables(b) / f"{table}.csv"
        if not path_a.is_file():
            continue
        diffs, printed = [], 0
        for row_a, row_b in zip(read(path_a), read(path_b), strict=True):
            for metric in ("BD", "TLD", "precision"):
                x, y = number(row_a[metric]), number(row_b[metric])
                if x is not None and y is not None:
                    diffs.append(abs(x - y))
                    printed += row_a[metric].split(" ")[0] != row_b[metric].split(" ")[0]
        out[table] = {"cells": len(diffs), "cells printed differently": printed,
                      "max difference (points)": round(max(diffs, default=0.0), 3)}  # fmt: skip
    effects_a = read(tables(a) / "component_effects.csv")
    effects_b = read(tables(b) / "component_effects.csv")
    diffs = [abs(float(x[k]) - float(y[k])) for x, y in zip(effects_a, effects_b, strict=True)
             for k in EFFECTS]  # fmt: skip
    verdicts = sum(x[f"{m} verdict"] != y[f"{m} verdict"] for x, y in zip(effects_a, effects_b, strict=True)
                   for m in ("BD", "TLD", "precision"))  # fmt: skip
    out["component_effects"] = {"effects": len(diffs), "verdicts differing": verdicts,
                                "max difference (points)": round(max(diffs, default=0.0), 3)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="the re-scoring of the float32 models")
    parser.add_argument("other", type=Path, help="the re-scoring of the float16 models")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--rows-only", action="store_true",
        help="compare the per-case rows of the first run only (the second may hold more: a "
        "reduced re-scoring against the whole run)",
    )  # fmt: skip
    args = parser.parse_args()
    report = {"reference": str(args.reference), "other": str(args.other),
              "per_case": per_case(args.reference, args.other),
              "tables": {} if args.rows_only else cells(args.reference, args.other)}  # fmt: skip
    for part in ("per_case", "tables"):
        for name, figures in report[part].items():
            print(f"{part:9} {name:18} {json.dumps(figures)}")
    finish_report(report, args.json)


if __name__ == "__main__":
    main()
