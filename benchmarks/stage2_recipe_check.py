"""Does the paper's stage 2 learn at the cpu budget, and which start-up makes it? Five training
seeds on the cpu reproduction's validation phantoms only (issue 30: a stage-2 start that
cannot fail, chosen on validation).

Trains the cpu reproduction's stage 2 (its cohort split, network, crops and schedule:
``deeptree.config.reproduce_settings("cpu")``) for each ``--seed`` and each start-up,

* ``paper``: nnU-Net's output initialisation, no warm-up (the paper's);
* ``prior``: every output head starts at breakage probability 0.01
  (``deeptree.networks.init_foreground_prior``; Lin et al., ICCV 2017);
* ``start``: the prior and a 50-iteration linear learning-rate warm-up, stage 1's start-up
  (``deeptree.config.STAGE1_START``),

validating as the reproduction does (every 100 iterations: the share of the validation
phantoms' simulated gaps reconnected and the Dice of the predicted breakage voxels,
``deeptree.stage2.task.evaluate_gap_repair``). Then it reads the logs and writes one table, per
start-up and seed: the validation gap Dice at each check and two checks,

* **learned**: the validation gap Dice at the end is at least 0.1 (a silent network scores 0);
* **early**: the gap Dice is above 0 by the second check (iteration 200).

The rule, fixed before the runs: the start-up with the fewest seeds that did not learn; among
equals, the higher mean gap Dice at the end; among equals, the fewer changes to the paper.

Trainings are resumable (``train_or_load``). On the 2-core machine run two one-thread
processes side by side::

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/stage2_recipe_check.py \\
        --cohort runs/RUN/07_evaluation/cohort --seed 0 --seed 2 --seed 4 --work /tmp/s2check &
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/stage2_recipe_check.py \\
        --cohort runs/RUN/07_evaluation/cohort --seed 1 --seed 3 --work /tmp/s2check &
    wait; .venv/bin/python benchmarks/stage2_recipe_check.py --table --work /tmp/s2check \\
        --seed 0 --seed 1 --seed 2 --seed 3 --seed 4 > benchmarks/records/stage2_recipe_check.md

``--cohort`` is a reproduction's training + validation cohort (ATM'22 layout; the last
``n_val`` cases validate, as in the reproduction); without it the cohort is generated into
``<work>/cohort`` from the reproduction's seed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

GAP_DICE_LEARNED = 0.1

#: Start-ups compared, each as the TrainConfig fields it changes (see the module notes).
STARTS: dict[str, dict] = {
    "paper": {},
    "prior": {"foreground_prior": 0.01},
    "start": {"foreground_prior": 0.01, "warmup_iterations": 50},
    "start, momentum 0.9": {"foreground_prior": 0.01, "warmup_iterations": 50, "momentum": 0.9},
}


def _folder(name: str) -> str:
    """A start-up's folder name (``"start, momentum 0.9"`` -> ``"start_momentum_0.9"``)."""
    return name.replace(", ", "_").replace(" ", "_")


def _split(settings, cohort: Path):
    from deeptree.evaluation.paper import Split
    from deeptree.io import list_cases

    cases = list_cases(cohort)
    n_train = len(cases) - settings.n_val
    return Split(cases[:n_train], cases[n_train:], [])


def train_seeds(seeds, starts, work: Path, cohort: Path | None, iterations=None) -> None:
    """Train the stage-2 model of each seed and start-up (resumable); ``iterations``: the
    stage-2 length (default: the reproduction's)."""
    from deeptree.config import get_config, reproduce_settings
    from deeptree.evaluation.training import train_or_load
    from deeptree.networks import choose_device
    from deeptree.phantom import generate_cohort
    from deeptree.stage2.task import case_sources, stage2_task

    s = reproduce_settings("cpu", stage2_iterations=iterations)
    if cohort is None:
        cohort = work / "cohort"
        generate_cohort(cohort, s.phantom, s.n_cases, seed=s.seed, progress=False)
    split = _split(s, cohort)
    sources, val_sources = case_sources(split.train), case_sources(split.val)
    run = get_config("cpu")
    for seed in seeds:
        for name in starts:
            cfg = replace(s.stage2_train, seed=seed, **STARTS[name])
            task = stage2_task(
                sources, val_sources, s.stage2_net, cfg, data=s.stage2_data,
                breakage=run.breakage, attention=run.attention, profile="cpu",
            )  # fmt: skip
            task.meta["start"] = name
            start = time.perf_counter()
            train_or_load(
                task, cfg, work / f"seed{seed}" / _folder(name),
                device=choose_device("cpu"), progress=False, workers=0,
            )  # fmt: skip
            print(f"seed {seed} {name}: {time.perf_counter() - start:.0f} s", flush=True)


def table(seeds, starts, work: Path, iterations=None) -> str:
    """The Markdown table of the logs under ``work`` (models of ``iterations``, default the
    reproduction's, validated every 100)."""
    from deeptree.config import reproduce_settings

    s2 = reproduce_settings("cpu", stage2_iterations=iterations).stage2_train
    checks = s2.iterations // s2.validate_every
    lines = [
        "| start-up | seed | validation gap Dice at each check | repair rate at the end "
        "| learned | early |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    for name in starts:
        finals, failed, missing = [], 0, 0
        for seed in seeds:
            log = work / f"seed{seed}" / _folder(name) / "log.jsonl"
            vals = (
                [json.loads(x)["val"] for x in log.read_text().splitlines() if '"val"' in x]
                if log.is_file() else []
            )  # fmt: skip
            if len(vals) < checks:
                lines.append(f"| {name} | {seed} | not trained to the end | | | |")
                missing += 1
                continue
            dice = [v["gap_dice"] for v in vals]
            learned = dice[-1] >= GAP_DICE_LEARNED
            early = dice[1] > 0
            failed += not learned
            finals.append(dice[-1])
            lines.append(
                f"| {name} | {seed} | {', '.join(f'{d:.2f}' for d in dice)} "
                f"| {vals[-1]['repair_rate']:.2f} | {'yes' if learned else 'NO'} "
                f"| {'yes' if early else 'no'} |"
            )
        mean = sum(finals) / len(finals) if finals else float("nan")
        summary.append((failed, -mean, len(STARTS[name]), name, missing))
        lines.append(
            f"| **{name}, {len(finals)} seeds** | | | | {len(finals) - failed} of "
            f"{len(finals)} | mean gap Dice at the end {mean:.3f} |"
        )
    lines.append("")
    complete = [row for row in summary if row[4] == 0]
    if len(complete) == len(summary):
        failed, neg_mean, _, name, _ = min(summary)
        lines.append(
            f"Chosen by the rule (fewest seeds that did not learn, then the higher mean gap "
            f"Dice at the end, then the fewer changes): **{name}** ({failed} of {len(seeds)} "
            f"seeds did not learn, mean gap Dice at the end {-neg_mean:.3f})."
        )
    else:
        lines.append("Not every model is trained to the end: no choice yet.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", required=True)
    parser.add_argument("--start", action="append", choices=list(STARTS))
    parser.add_argument("--cohort", help="a reproduction's cohort (default: generate it)")
    parser.add_argument("--work", default="/tmp/s2check")
    parser.add_argument(
        "--iterations", type=int, help="stage-2 iterations (default: the cpu run's)"
    )
    parser.add_argument("--table", action="store_true", help="only write the table of the logs")
    args = parser.parse_args()
    work, starts = Path(args.work), args.start or list(STARTS)
    if not args.table:
        begin = time.perf_counter()
        cohort = Path(args.cohort) if args.cohort else None
        train_seeds(args.seed, starts, work, cohort, args.iterations)
        print(f"trained in {time.perf_counter() - begin:.0f} s", flush=True)
    print(table(args.seed, starts, work, args.iterations))


if __name__ == "__main__":
    main()
