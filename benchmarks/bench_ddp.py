"""DistributedDataParallel's overhead: the same `deeptree train` run as one plain process and as
a one-process ``torchrun`` (DDP wrapping, the per-step collectives, rank logic), compared by
their training rates (issue 21; target: DDP at most 5% slower).

    python benchmarks/bench_ddp.py --data COHORT --cache CACHE --out OUT --profile gpu \
        --iterations 300 --workers 12 --json ddp.json
    python benchmarks/bench_ddp.py --data COHORT --out OUT --profile smoke --device cpu \
        --iterations 20                                       # CPU dry run

The rate of a run is read from its ``log.jsonl`` (``seconds`` of each iteration): iterations
after the first fifth (warm-up: cuDNN autotuning, DataLoader start) to the last. No
validation (``--val 0``). ``--repeats`` alternates the two modes to average out drift.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rate_from_log(path: Path) -> float:
    """Iterations per second after the first fifth of the run (from ``seconds``)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    if len(rows) < 5:
        raise SystemExit(f"{path}: only {len(rows)} iterations logged; give more --iterations")
    start = rows[len(rows) // 5]
    end = rows[-1]
    return (end["iteration"] - start["iteration"]) / (end["seconds"] - start["seconds"])


def run_once(mode: str, args, out: Path) -> dict:
    train = [
        "-m", "deeptree", "train", "--stage", "1", "--profile", args.profile,
        "--data", str(args.data), "--out", str(out), "--iterations", str(args.iterations),
        "--val", "0", "--no-progress", "--overwrite", "--workers", str(args.workers),
    ]  # fmt: skip
    if args.cache:
        train += ["--cache", str(args.cache)]
    if args.device:
        train += ["--device", args.device]
    if mode == "ddp":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "1", *train]  # fmt: skip
    else:
        cmd = [sys.executable, *train]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return {"mode": mode, "it_per_s": rate_from_log(out / "log.jsonl"), "wall_s": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ATM'22-layout cohort")
    parser.add_argument("--cache", type=Path, help="stage-1 cache (default <data>/.cache_stage1)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", help="cpu for a dry run (default: cuda if available)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = []
    for r in range(args.repeats):
        for mode in ("plain", "ddp"):
            row = run_once(mode, args, args.out / f"{mode}{r}")
            print(f"{mode:>5} run {r}: {row['it_per_s']:.3f} it/s (wall {row['wall_s']:.1f} s)")
            runs.append(row)
    plain = sum(r["it_per_s"] for r in runs if r["mode"] == "plain") / args.repeats
    ddp = sum(r["it_per_s"] for r in runs if r["mode"] == "ddp") / args.repeats
    overhead = plain / ddp - 1.0
    verdict = "meets" if overhead <= 0.05 else "misses"
    print(
        f"plain {plain:.3f} it/s, torchrun + DDP (1 process) {ddp:.3f} it/s: "
        f"DDP costs {overhead:+.1%} per iteration ({verdict} the <= 5% target; "
        f"profile {args.profile}, {args.iterations} iterations, {args.workers} workers)"
    )
    if args.json:
        result = {"runs": runs, "plain_it_per_s": plain, "ddp_it_per_s": ddp,
                  "overhead": overhead, "profile": args.profile, "iterations": args.iterations,
                  "workers": args.workers, "device": args.device}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
