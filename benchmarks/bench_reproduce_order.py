"""Notebook 07's reproduction in both training orders, in one command (issue 30): the models one
after the other in this process with torch's default threads (the order before issue 30,
``devices=["cpu"]``) against two trainings side by side (the cpu default,
``ReproduceSettings.cpu_trainings = 2``). Same settings, separate run folders, nothing reused;
prints the seconds of each phase (``ReproduceResult.seconds``) and the ratio of the totals.

    .venv/bin/python benchmarks/bench_reproduce_order.py --work /tmp/order \\
        --json benchmarks/records/parallel_cpu/<date>-reproduce-order.json                # the cpu design
    .venv/bin/python benchmarks/bench_reproduce_order.py --work /tmp/order \\
        --stage1-iterations 400 --stage2-iterations 100                          # a shorter run

Run it on a quiet machine (the load average before and after is recorded); ``--profile smoke``
is a dry run of the script (its seconds measure nothing). The side-by-side
order runs first, so that a machine growing busier during the command favours the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path


def run(order: str, work: Path, profile: str, stage1_iterations, stage2_iterations) -> dict:
    """One reproduction in ``order`` ("side by side" or "one after the other")."""
    from deeptree.config import reproduce_settings
    from deeptree.evaluation.reproduce import reproduce

    settings = reproduce_settings(
        profile, stage1_iterations=stage1_iterations, stage2_iterations=stage2_iterations,
        cpu_trainings=2,
    )  # fmt: skip
    devices = None if order == "side by side" else ["cpu"]
    start = time.perf_counter()
    result = reproduce(
        profile, work / order.replace(" ", "_"), settings=settings, device="cpu", progress=False,
        devices=devices,
    )  # fmt: skip
    wall = time.perf_counter() - start
    trained = result.seconds
    return {
        "wall_s": round(wall, 1),
        "training_s": round(sum(v for k, v in trained.items() if k.startswith("train ")), 1),
        "phases_s": {k: round(v, 1) for k, v in trained.items() if not k.startswith("train ")},
        "stage1_iterations": settings.stage1_train.iterations,
        "stage2_iterations": settings.stage2_train.iterations,
        "profile": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="run folders (must not hold models)")
    parser.add_argument("--profile", default="cpu", help="cpu (the measurement) or smoke (a dry run)")
    parser.add_argument("--stage1-iterations", type=int)
    parser.add_argument("--stage2-iterations", type=int)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = Path(args.work)
    if (work / "side_by_side" / "models").exists() or (work / "one_after_the_other" / "models").exists():
        raise SystemExit(f"{work}: holds models of an earlier run; give an empty --work")
    load_before = os.getloadavg()
    out = {
        order: run(order, work, args.profile, args.stage1_iterations, args.stage2_iterations)
        for order in ("side by side", "one after the other")
    }
    out["speed_up_wall"] = round(out["one after the other"]["wall_s"] / out["side by side"]["wall_s"], 3)
    out.update(load_before=load_before, load_after=os.getloadavg(), cpus=os.cpu_count(),
               date=time.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
