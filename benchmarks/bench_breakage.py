"""Benchmark: breakage simulation on atm_001.

Usage::

    .venv/bin/python benchmarks/bench_breakage.py [--seeds 0 1 2] [--json runs/bench/breakage.json]

Parses atm_001 once (timed apart: parsing belongs to deeptree.tree), then times
``simulate_breakage`` for each seed and reports the counts of each run: peripheral branches,
gaps, rejected branches, gaps that needed widening, components of the broken mask, and the
shares of removed skeleton.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
from _common import finish_report  # benchmarks/_common.py: the script's folder is on sys.path

from deeptree.breakage import simulate_breakage
from deeptree.io import SAMPLES_DIR, read_nifti
from deeptree.tree import parse_tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    volume = read_nifti(SAMPLES_DIR / "atm_001" / "airway.nii.gz")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = parse_tree(volume.array, volume.spacing)
    t_parse = time.perf_counter() - start
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_start": os.getloadavg(),
        "parse_s": t_parse,
        "runs": [],
    }
    print(f"parse_tree atm_001: {t_parse:.1f} s, {tree.n_branches} branches")
    for seed in args.seeds:
        start = time.perf_counter()
        result = simulate_breakage(volume.array, tree, np.random.default_rng(seed))
        seconds = time.perf_counter() - start
        fractions = [g.run_fraction for g in result.gaps]
        run = {
            "seed": seed,
            "simulate_s": seconds,
            "n_peripheral": result.n_peripheral,
            "n_gaps": len(result.gaps),
            "n_rejected": result.n_rejected,
            "n_widened": sum(g.n_widened > 0 for g in result.gaps),
            "n_components": result.n_components,
            "breakage_voxels": int(result.label.sum()),
            "run_fraction_min": min(fractions),
            "run_fraction_max": max(fractions),
        }
        report["runs"].append(run)
        print(
            f"seed {seed}: {seconds:.2f} s, {run['n_gaps']} gaps of {run['n_peripheral']} "
            f"peripheral branches ({run['n_rejected']} rejected, {run['n_widened']} widened), "
            f"{run['n_components']} components, {run['breakage_voxels']} voxels of Y^B"
        )
    finish_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
