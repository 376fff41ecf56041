"""Benchmark: fast breakage attention against the naive definition, on atm_001.

Usage::

    .venv/bin/python benchmarks/bench_attention.py [--seed 0] [--repeats 3]
        [--naive-components 3] [--full-naive] [--json runs/bench/attention.json]

What it measures (one process, same machine, same input):

1. atm_001 (512 x 512 x 679) is parsed and broken by ``simulate_breakage`` (seed ``--seed``);
   the broken mask must have at least 40 components (26-connectivity).
2. ``breakage_attention`` (fast): best and median of ``--repeats`` runs.
3. The naive definition runs one full-volume distance transform per component, whatever the
   component, so its time is (number of components) x (one step). By default the script times
   ``--naive-components`` of these steps (the very code of ``breakage_attention_naive``) and
   reports ``n_components x mean step`` as the naive time: a lower bound, since it leaves out
   the labelling and the final sigmoid. ``--full-naive`` runs the whole naive function
   instead (about 20 s per component here: many minutes) and also checks that both maps
   agree to 1e-6.
4. On a real region of atm_001 (116 x 137 x 202, broken the same way) both versions run in
   full: measured speed-up and the largest difference of H_bar over the whole volume.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
from _common import finish_report  # benchmarks/_common.py: the script's folder is on sys.path

from deeptree.attention import _fold_component, breakage_attention, breakage_attention_naive
from deeptree.breakage import simulate_breakage
from deeptree.io import SAMPLES_DIR, read_nifti
from deeptree.masks import label_components
from deeptree.tree import parse_tree

REGION = (slice(250, 366), slice(197, 334), slice(218, 420))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def broken_case(mask, spacing, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stray voxel groups dropped by the parser
        tree, t_parse = timed(parse_tree, mask, spacing)
    result, t_simulate = timed(simulate_breakage, mask, tree, np.random.default_rng(seed))
    return result, t_parse, t_simulate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-components", type=int, default=3)
    parser.add_argument("--full-naive", action="store_true")
    parser.add_argument("--json", default=None, help="write the figures here too")
    args = parser.parse_args(argv)

    volume = read_nifti(SAMPLES_DIR / "atm_001" / "airway.nii.gz")
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_start": os.getloadavg(),
        "seed": args.seed,
    }
    result, t_parse, t_simulate = broken_case(volume.array, volume.spacing, args.seed)
    broken = result.broken
    n = result.n_components
    report.update(shape=list(broken.shape), n_components=n, n_gaps=len(result.gaps))
    print(f"atm_001 {broken.shape}: {len(result.gaps)} gaps, {n} components (26-conn.)")
    if n < 40:
        print(f"fewer than 40 components ({n}): choose another --seed", file=sys.stderr)
        return 1

    fast_times = []
    for _ in range(args.repeats):
        h_bar, seconds = timed(breakage_attention, broken)
        fast_times.append(seconds)
    report["fast_s_best"] = min(fast_times)
    report["fast_s_median"] = statistics.median(fast_times)
    print(f"fast: best {min(fast_times):.2f} s, median {statistics.median(fast_times):.2f} s")

    if args.full_naive:
        naive, t_naive = timed(breakage_attention_naive, broken)
        report["naive_s"] = t_naive
        report["naive_kind"] = "measured in full"
        report["max_abs_diff_h_bar"] = float(np.abs(naive.astype(np.float64) - h_bar).max())
        del naive
    else:
        labels, _ = label_components(broken)
        smallest = np.full(broken.shape, np.inf)
        second = np.full(broken.shape, np.inf)
        steps = []
        for k in range(1, min(args.naive_components, n) + 1):
            _, seconds = timed(_fold_component, labels, k, smallest, second)
            steps.append(seconds)
        del labels, smallest, second
        report["naive_step_s"] = steps
        report["naive_s"] = n * statistics.mean(steps)
        report["naive_kind"] = (
            f"{n} components x mean of {len(steps)} timed per-component steps (lower bound)"
        )
    report["speedup"] = report["naive_s"] / report["fast_s_best"]
    print(f"naive: {report['naive_s']:.0f} s ({report['naive_kind']})")
    print(f"speed-up: {report['speedup']:.0f}x")

    # a real region where the naive version runs in full
    region = np.ascontiguousarray(volume.array[REGION])
    small, _, _ = broken_case(region, volume.spacing, args.seed)
    fast_region = [timed(breakage_attention, small.broken) for _ in range(args.repeats)]
    naive_region, t_naive_region = timed(breakage_attention_naive, small.broken)
    t_fast_region = min(t for _, t in fast_region)
    diff = float(np.abs(naive_region.astype(np.float64) - fast_region[0][0]).max())
    report["region"] = {
        "shape": list(region.shape),
        "n_components": small.n_components,
        "fast_s_best": t_fast_region,
        "naive_s": t_naive_region,
        "speedup": t_naive_region / t_fast_region,
        "max_abs_diff_h_bar": diff,
    }
    print(
        f"region {region.shape}, {small.n_components} components: fast {t_fast_region:.2f} s, "
        f"naive {t_naive_region:.1f} s, speed-up {t_naive_region / t_fast_region:.0f}x, "
        f"max |diff| {diff:.2e}"
    )
    finish_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
