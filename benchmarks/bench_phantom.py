"""Realism, speed and the classical baseline on the synthetic cohort (issue 3).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_phantom.py                  # 10 cpu + 3 standard cases
    .venv/bin/python benchmarks/bench_phantom.py --n-cpu 2 --n-standard 0   # quick look

For each case: generation time; HU of parenchyma / lumen / wall
(:func:`deeptree.phantom.stats.tissue_samples`); the classical baseline
(:func:`deeptree.evaluation.baselines.region_growing`) evaluated with
:func:`deeptree.metrics.airway_metrics` under the paper's protocol (trachea and main
bronchi excluded) and whether it found the trachea and both main bronchi (>= 95 % of the
centreline voxels of each of the generation 0-1 branches of the phantom's own tree). The
real reference is the lung of ``data/samples/cip_ct64`` (same tissue sampling). Writes
``runs/bench_phantom.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from deeptree.evaluation.baselines import region_growing
from deeptree.io import SAMPLES_DIR, read_nifti
from deeptree.metrics import airway_metrics
from deeptree.phantom import generate_case
from deeptree.phantom.stats import branch_detection, hu_summary, tissue_samples


def one_case(profile: str, seed: int) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    case = generate_case(profile, seed)
    t_gen, c_gen = time.perf_counter() - t0, time.process_time() - c0
    tissues = {
        k: hu_summary(v)
        for k, v in tissue_samples(case.ct, case.airway, case.lung, case.spacing).items()
    }
    t0 = time.perf_counter()
    pred, info = region_growing(case.ct, case.spacing, return_info=True)
    t_rg = time.perf_counter() - t0
    metrics = airway_metrics(pred, case.airway, case.spacing, protocol="paper")
    detected = branch_detection(pred, case.tree, case.affine)
    central = [b.id for b in case.tree.branches if b.generation <= 1]
    return {
        "profile": profile,
        "seed": seed,
        "shape": list(case.ct.shape),
        "spacing_mm": list(case.spacing),
        "n_branches": len(case.tree.branches),
        "max_generation": int(max(b.generation for b in case.tree.branches)),
        "generate_s": t_gen,
        "generate_cpu_s": c_gen,
        "load_average_1min": os.getloadavg()[0],
        "tissues": tissues,
        "baseline": {
            "threshold_hu": info["threshold_hu"],
            "time_s": t_rg,
            "TLD": metrics["TLD"],
            "BD": metrics["BD"],
            "precision": metrics["precision"],
            "central_found": bool(np.all(detected[central] >= 0.95)),
        },
    }


def real_reference() -> dict:
    d = SAMPLES_DIR / "cip_ct64"
    ct, airway, lung = (read_nifti(d / f"{n}.nii.gz") for n in ("ct", "airway", "lung"))
    tissues = tissue_samples(ct.array, airway.array, lung.array, ct.spacing)
    return {k: hu_summary(v) for k, v in tissues.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cpu", type=int, default=10)
    parser.add_argument("--n-standard", type=int, default=3)
    parser.add_argument("--out", default="runs/bench_phantom.json")
    args = parser.parse_args()
    rows = []
    for profile, n in (("cpu", args.n_cpu), ("standard", args.n_standard)):
        for seed in range(n):
            row = one_case(profile, seed)
            rows.append(row)
            b = row["baseline"]
            print(
                f"{profile} seed {seed}: {row['generate_s']:.1f} s ({row['generate_cpu_s']:.1f} s CPU), "
                f"{row['n_branches']} branches, "
                f"parenchyma {row['tissues']['parenchyma']['median']:.0f} HU, baseline TLD {b['TLD']:.3f} "
                f"BD {b['BD']:.3f} prec {b['precision']:.3f} central {b['central_found']} "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    real = real_reference()
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cases": rows,
        "cip_ct64": real,
    }
    for profile in ("cpu", "standard"):
        sel = [r for r in rows if r["profile"] == profile]
        if not sel:
            continue
        summary[profile] = {
            "n": len(sel),
            "generate_s_median": statistics.median(r["generate_s"] for r in sel),
            "generate_s_max": max(r["generate_s"] for r in sel),
            "generate_cpu_s_median": statistics.median(r["generate_cpu_s"] for r in sel),
            "generate_cpu_s_max": max(r["generate_cpu_s"] for r in sel),
            "branches_median": statistics.median(r["n_branches"] for r in sel),
            "parenchyma_median_hu": statistics.median(
                r["tissues"]["parenchyma"]["median"] for r in sel
            ),
            "parenchyma_iqr_hu": statistics.median(r["tissues"]["parenchyma"]["iqr"] for r in sel),
            "lumen_median_hu": statistics.median(r["tissues"]["lumen"]["median"] for r in sel),
            "wall_median_hu": statistics.median(r["tissues"]["wall"]["median"] for r in sel),
            "baseline_TLD_mean": statistics.mean(r["baseline"]["TLD"] for r in sel),
            "baseline_BD_mean": statistics.mean(r["baseline"]["BD"] for r in sel),
            "baseline_precision_mean": statistics.mean(r["baseline"]["precision"] for r in sel),
            "baseline_central_found": f"{sum(r['baseline']['central_found'] for r in sel)}/{len(sel)}",
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1))
    print(
        "\n| | n | generate s wall (median / max) | CPU s (median / max) | branches | parenchyma HU median (IQR) | lumen HU | wall HU "
        "| baseline TLD | BD | precision | trachea + main bronchi found |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for profile in ("cpu", "standard"):
        s = summary.get(profile)
        if s:
            print(
                f"| {profile} | {s['n']} | {s['generate_s_median']:.1f} / {s['generate_s_max']:.1f} | "
                f"{s['generate_cpu_s_median']:.1f} / {s['generate_cpu_s_max']:.1f} | "
                f"{s['branches_median']:.0f} | {s['parenchyma_median_hu']:.0f} ({s['parenchyma_iqr_hu']:.0f}) | "
                f"{s['lumen_median_hu']:.0f} | {s['wall_median_hu']:.0f} | {100 * s['baseline_TLD_mean']:.1f}% | "
                f"{100 * s['baseline_BD_mean']:.1f}% | {100 * s['baseline_precision_mean']:.1f}% | "
                f"{s['baseline_central_found']} |"
            )
    p, lu, w = real["parenchyma"], real["lumen"], real["wall"]
    print(
        f"| cip_ct64 (real, 4 mm) | 1 | | | | {p['median']:.0f} ({p['iqr']:.0f}) | {lu['median']:.0f} | {w['median']:.0f} | | | | |"
    )


if __name__ == "__main__":
    main()
