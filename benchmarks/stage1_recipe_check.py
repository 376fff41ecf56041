"""Does every stage-1 variant learn with the recipe? Five training seeds on the cpu
reproduction's validation phantoms only (issue 30, "Done when").

Trains the four stage-1 variants of the cpu reproduction (its cohort, split, network, sampler,
start-up and schedule: ``deeptree.config.reproduce_settings("cpu")``) for each ``--seed``,
validating every quarter of the run (paper-protocol TLD and the per-class Dice of the
validation phantoms, ``deeptree.stage1.task``), then reads the training logs and writes one
table: per variant and seed the class-1 Dice at the end, the validation TLD at each quarter,
and two checks,

* **learned**: the class-1 validation Dice at the end is at least 0.5 (the trachea and main
  bronchi, the easiest class; a collapsed model scores 0);
* **rises**: the validation TLD rises over the first half of the run (0 at the start <
  quarter 1 < quarter 2).

Trainings are resumable (``train_or_load``: a finished model is loaded, an interrupted one
goes on from ``last.pt``). On the 2-core machine run two one-thread processes side by side::

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/stage1_recipe_check.py \\
        --seed 0 --seed 2 --seed 4 --work /tmp/recipe_check &
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/stage1_recipe_check.py \\
        --seed 1 --seed 3 --work /tmp/recipe_check &
    wait; .venv/bin/python benchmarks/stage1_recipe_check.py --table --work /tmp/recipe_check \\
        --seed 0 --seed 1 --seed 2 --seed 3 --seed 4 > benchmarks/records/stage1_recipe_check.md
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

CLASS1_DICE_LEARNED = 0.5


def settings_for(iterations: int | None):
    """The cpu reproduction's settings, validating every quarter of the run."""
    from deeptree.config import reproduce_settings

    s = reproduce_settings("cpu", stage1_iterations=iterations)
    quarter = max(1, s.stage1_train.iterations // 4)
    return replace(
        s, stage1_train=replace(s.stage1_train, validate_every=quarter, checkpoint_every=quarter)
    )


def train_seeds(seeds, iterations: int | None, work: Path, variants=None) -> None:
    """Train the four variants (or ``variants``) of each seed (resumable)."""
    from deeptree.config import LOSS_VARIANTS
    from deeptree.evaluation import training
    from deeptree.networks import choose_device

    s = settings_for(iterations)
    _, split, train, val = training.prepare_data(s, work, None, False)
    for seed in seeds:
        seconds: dict = {}
        training.train_stage1_models(
            s, seed, False, split, train, val, work / "models" / f"seed{seed}", seconds,
            {"device": choose_device("cpu"), "progress": False, "workers": 0},
            keys=list(variants or LOSS_VARIANTS),
        )  # fmt: skip
        print(f"seed {seed}: {({k: round(v) for k, v in seconds.items()})}", flush=True)


def table(seeds, work: Path) -> str:
    """The Markdown table of the logs under ``work/models``."""
    from deeptree.config import LOSS_VARIANTS
    from deeptree.evaluation.training import model_dir

    lines = [
        "| variant | seed | TLD % at each quarter | class-1 Dice at the end | learned | rises |",
        "|---|---|---|---|---|---|",
    ]
    failures = unfinished = variant_failures = 0
    for variant in LOSS_VARIANTS:
        finished = []  # the quarters' TLD of each finished model of this variant
        for seed in seeds:
            log = model_dir(work / "models" / f"seed{seed}", variant) / "log.jsonl"
            if not log.is_file():
                lines.append(f"| {variant} | {seed} | not trained | | | |")
                unfinished += 1
                continue
            vals = [json.loads(x)["val"] for x in log.read_text().splitlines() if '"val"' in x]
            if len(vals) < 4:  # still training (or interrupted): no verdict yet
                tld_text = ", ".join(f"{100 * v['TLD']:.1f}" for v in vals)
                lines.append(f"| {variant} | {seed} | {tld_text} (unfinished) | | | |")
                unfinished += 1
                continue
            tld = [v.get("TLD") for v in vals]
            dice_1 = vals[-1].get("dice_1") if vals else None
            learned = dice_1 is not None and dice_1 >= CLASS1_DICE_LEARNED
            # from 0 (an untrained model) to quarter 1 to quarter 2
            rises = len(tld) >= 2 and None not in tld[:2] and 0 < tld[0] < tld[1]
            failures += (not learned) + (not rises)
            if None not in tld:
                finished.append(tld)
            tld_text = ", ".join("-" if t is None else f"{100 * t:.1f}" for t in tld)
            dice_text = "-" if dice_1 is None else f"{dice_1:.2f}"
            lines.append(
                f"| {variant} | {seed} | {tld_text} | {dice_text} | {'yes' if learned else 'NO'} "
                f"| {'yes' if rises else 'NO'} |"
            )
        if len(finished) > 1:
            # "every variant's validation TLD rises" read per variant: the mean over its seeds
            mean = [sum(q) / len(finished) for q in zip(*finished, strict=False)]
            mean_rises = 0 < mean[0] < mean[1]
            variant_failures += not mean_rises
            lines.append(
                f"| **{variant}, mean of {len(finished)} seeds** | | "
                f"{', '.join(f'{100 * t:.1f}' for t in mean)} | | | "
                f"{'yes' if mean_rises else 'NO'} |"
            )
    lines.append("")
    lines.append(
        f"Checks failed: {failures} (per model); variants whose mean TLD does not rise over "
        f"the first half: {variant_failures}; models not (yet) trained to the end: {unfinished}."
    )
    return "\n".join(lines)


def write_curves(seeds, work: Path, out: Path) -> None:
    """Every model's training curve (``deeptree.evaluation.curves``: loss and airway_p per
    twentieth of the run, every validation) as ``out/curves.csv`` and ``out/curves.png``."""
    from deeptree.config import LOSS_VARIANTS
    from deeptree.evaluation.curves import curve_rows, plot_training_curves
    from deeptree.evaluation.outputs import write_csv
    from deeptree.evaluation.training import model_dir
    from deeptree.files import atomic_write

    logs = {
        f"seed{seed}/{variant}": model_dir(work / "models" / f"seed{seed}", variant) / "log.jsonl"
        for seed in seeds
        for variant in LOSS_VARIANTS
    }
    rows = curve_rows({k: v for k, v in logs.items() if v.is_file()})
    write_csv(out / "curves.csv", rows)
    fig = plot_training_curves(rows, title="stage-1 recipe over seeds", offscreen=True)
    atomic_write(out / "curves.png", lambda tmp: fig.savefig(tmp, dpi=90, format="png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", required=True)
    parser.add_argument("--iterations", type=int, help="stage-1 iterations (default: the cpu run's)")
    parser.add_argument("--work", default="/tmp/recipe_check")
    parser.add_argument("--table", action="store_true", help="only write the table of the logs")
    parser.add_argument("--curves", help="also write curves.csv and curves.png of the logs here")
    parser.add_argument(
        "--variant", action="append", help="train only these variants (two processes can share a seed)"
    )
    args = parser.parse_args()
    work = Path(args.work)
    if not args.table:
        start = time.perf_counter()
        train_seeds(args.seed, args.iterations, work, args.variant)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    print(table(args.seed, work))
    if args.curves:
        write_curves(args.seed, work, Path(args.curves))


if __name__ == "__main__":
    main()
