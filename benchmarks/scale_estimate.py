"""Wall time of the full ATM'22 reproduction on 1, 8 and 32 GPUs, on paper, from the measured
H200 rate (docs/training-at-scale.md; issue 21).

    python benchmarks/scale_estimate.py                 # the table of docs/training-at-scale.md
    python benchmarks/scale_estimate.py --gpus 1 2 4 8 16 32 --json scale.json

Assumptions (each one a parameter; printed with the table):

* a training step of stage 1 at the gpu profile (batch 2 x 128^3, bf16) runs at 12.8 it/s on
  one H200: the *bare* step measured in benchmarks/RESULTS.md ("GPU: NVIDIA H200", 12.76
  it/s). The real loop with 12 DataLoader workers on that machine's 16 cores ran at 7.99
  it/s (0.63 x bare, data-limited); ``--rate 7.99`` gives that scenario;
* every model trains ``--iterations`` (125,000) iterations; validation, checkpoints and the
  evaluation of the test cases are not counted;
* the reproduction trains 5 stage-1 variants x 3 seeds and one stage-2 model per seed (18
  trainings). Stage 2 is assumed to step as fast as stage 1 (its network sees 64^3 crops, 8x
  fewer voxels; its data side, one breakage simulation per batch, measured ~1 it/s on the
  H200 and must be brought up to that rate, see benchmarks/RESULTS.md, or ``--stage2-rate``);
* the trainings are independent: they are spread one per GPU (``deeptree reproduce
  --devices``; across nodes, one job per training from the cluster's scheduler), rounds of G
  trainings at a time. A GPU left idle in the last round lends itself to a 2-process
  ``torchrun`` (DistributedDataParallel) of a training of that round: at most 2 processes,
  because the profile's global batch of 2 patches splits at most 1 + 1. Such a training runs
  at ``2 x efficiency`` the one-GPU rate; ``--ddp-efficiency`` (0.9) is *not measured* (it
  folds DDP's overhead, target <= 5%, with the lower GPU use of a batch of 1 per GPU;
  benchmarks/gpu_session.sh step 4 measures the first part).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Assumptions:
    rate: float = 12.8  # stage-1 it/s on one H200 (bare step, benchmarks/RESULTS.md)
    stage2_rate: float = 12.8
    iterations: int = 125_000
    variants: int = 5
    seeds: int = 3
    ddp_efficiency: float = 0.9  # per-GPU efficiency of a 2-process DDP training (assumed)
    max_ranks: int = 2  # global batch 2 -> at most 2 processes per training


def trainings(a: Assumptions) -> list[float]:
    """Hours of each training on one GPU (stage-1 runs, then stage-2 runs)."""
    s1 = a.iterations / a.rate / 3600
    s2 = a.iterations / a.stage2_rate / 3600
    return [s1] * (a.variants * a.seeds) + [s2] * a.seeds


def schedule(hours: list[float], gpus: int, a: Assumptions) -> dict:
    """Makespan of rounds of ``gpus`` one-GPU trainings (longest first); in the last round
    the idle GPUs pair up with trainings as 2-process DDP runs."""
    jobs = sorted(hours, reverse=True)
    total, rounds = 0.0, 0
    while len(jobs) > gpus:
        total += max(jobs[:gpus])
        jobs = jobs[gpus:]
        rounds += 1
    spare = gpus - len(jobs)
    doubled = min(len(jobs), spare // (a.max_ranks - 1)) if a.max_ranks > 1 else 0
    speedup = a.max_ranks * a.ddp_efficiency
    last = [h / speedup for h in jobs[:doubled]] + jobs[doubled:]
    total += max(last) if last else 0.0
    return {
        "gpus": gpus,
        "trainings": len(hours),
        "rounds": rounds + (1 if last else 0),
        "ddp_trainings": doubled,
        "hours": total,
        "gpu_hours": sum(hours),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rate", type=float, default=Assumptions.rate)
    parser.add_argument("--stage2-rate", type=float)
    parser.add_argument("--iterations", type=int, default=Assumptions.iterations)
    parser.add_argument("--seeds", type=int, default=Assumptions.seeds)
    parser.add_argument("--variants", type=int, default=Assumptions.variants)
    parser.add_argument("--ddp-efficiency", type=float, default=Assumptions.ddp_efficiency)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    a = Assumptions(
        rate=args.rate,
        stage2_rate=args.stage2_rate or args.rate,
        iterations=args.iterations,
        variants=args.variants,
        seeds=args.seeds,
        ddp_efficiency=args.ddp_efficiency,
    )
    hours = trainings(a)
    print(
        f"assumptions: stage 1 {a.rate} it/s, stage 2 {a.stage2_rate} it/s per GPU; "
        f"{a.iterations:,} iterations per model; {a.variants} variants x {a.seeds} seeds "
        f"+ {a.seeds} stage-2 models = {len(hours)} trainings; "
        f"2-process DDP at {a.ddp_efficiency:.0%} per-GPU efficiency (assumed)"
    )
    print(f"one training: {hours[0]:.2f} h (stage 1), {hours[-1]:.2f} h (stage 2)")
    print(f"{'GPUs':>5} {'rounds':>7} {'DDP runs':>9} {'wall time':>17} {'GPU use':>8}")
    rows = []
    for g in args.gpus:
        row = schedule(hours, g, a)
        use = row["gpu_hours"] / (g * row["hours"])
        days = row["hours"] / 24
        print(
            f"{g:>5} {row['rounds']:>7} {row['ddp_trainings']:>9} "
            f"{row['hours']:>7.1f} h ({days:4.1f} d) {use:>8.0%}"
        )
        rows.append({**row, "gpu_use": use})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"assumptions": asdict(a), "rows": rows}, f, indent=1)
    assert all(math.isfinite(r["hours"]) for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
