"""The flattening rule on the models of a run folder, finished or still training.

    python benchmarks/convergence_check.py RUN [--json OUT] [--figure OUT.png]

Reads every ``RUN/models/seed*/*/log.jsonl`` (with its ``last.pt`` for the schedule's length)
and prints, per model, its validation checks and the rule of
``deeptree.evaluation.convergence`` (validation TLD, or gap Dice for stage 2, gained over the
last 25% of its schedule: less than 1 point is flat; a model still training is "unfinished").
Used to watch a long run (the reference run of issue 32) and to choose its length on
validation only.
NOT package code: a benchmark script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import finish_report  # noqa: E402

from deeptree.checkpoints import load_checkpoint  # noqa: E402
from deeptree.evaluation.convergence import convergence_rows, plot_convergence  # noqa: E402
from deeptree.train import read_log  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    logs = {p.parent.relative_to(args.run / "models").as_posix(): p
            for p in sorted((args.run / "models").glob("seed*/*/log.jsonl"))}  # fmt: skip
    schedules = {
        name: load_checkpoint(log.parent / "last.pt")["train_config"]["iterations"]
        for name, log in logs.items() if (log.parent / "last.pt").is_file()
    }  # fmt: skip
    rows = convergence_rows(logs, schedules=schedules)
    for row in rows:
        checks = [(e["iteration"], e["val"].get(row["score"]))
                  for e in read_log(logs[row["model"]]) if "val" in e]  # fmt: skip
        row["checks"] = ", ".join(f"{i}: {100 * (s or 0):.1f}" for i, s in checks)
        print(f"{row['model']:24} {row['iterations']:>6} of {schedules.get(row['model'], '?')} it, "
              f"gain {row['gain']}, flat {row['flat']}, wall h {row['wall hours']} | {row['checks']}")  # fmt: skip
    if args.figure:
        plot_convergence(rows, logs, title=args.run.name).savefig(args.figure, dpi=90)
    finish_report({"run": str(args.run), "models": rows}, args.json)


if __name__ == "__main__":
    main()
