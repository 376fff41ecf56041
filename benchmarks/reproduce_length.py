"""How long the cpu reproduction's stage-1 models must train, judged on its validation phantoms
only (never on the test phantoms).

Trains stage-1 variants of ``deeptree reproduce``'s cpu design (same cohort, split, network,
sampler and schedule as ``deeptree.evaluation.reproduce``; the cohort is generated in
``--work`` unless already there) for ``--iterations`` iterations with one training seed, and
validates every ``--every`` iterations (paper-protocol BD / TLD / precision and the per-class
Dice of the two validation phantoms, ``deeptree.stage1.task``). The learning rate follows the
poly schedule of the whole run, so an intermediate validation is not the end of a shorter run.

    .venv/bin/python benchmarks/reproduce_length.py --iterations 1500 --seed 1 \\
        --variant plain --variant amc+gul --work /tmp/reproduce_length

About 0.1 s per iteration and 10 s per validation on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--every", type=int, default=300, help="validate every N iterations")
    parser.add_argument("--seed", type=int, default=1, help="training seed")
    parser.add_argument("--variant", action="append", help="stage-1 loss variant (repeatable)")
    parser.add_argument("--work", default="/tmp/reproduce_length", help="cohort and models")
    args = parser.parse_args()

    from deeptree.config import reproduce_settings
    from deeptree.evaluation import training
    from deeptree.networks import choose_device

    s = reproduce_settings("cpu", stage1_iterations=args.iterations)
    s = replace(
        s,
        stage1_train=replace(s.stage1_train, validate_every=args.every, checkpoint_every=args.every),
    )
    work = Path(args.work)
    start = time.perf_counter()
    _, split, train, val = training.prepare_data(s, work, None, False)
    print(f"data {time.perf_counter() - start:.0f} s; train {[c.id for c in split.train]}, "
          f"validation {[c.id for c in split.val]}")  # fmt: skip
    seconds: dict = {}
    paths, _ = training.train_stage1_models(
        s, args.seed, False, split, train, val, work / "models" / f"seed{args.seed}", seconds,
        {"device": choose_device("cpu"), "progress": False, "workers": 0},
        keys=args.variant or ["plain"],
    )  # fmt: skip
    print("training seconds:", {k: round(v) for k, v in seconds.items()})
    for key, path in paths.items():
        for line in (path.parent / "log.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if "val" in entry:
                val_row = {k: None if v is None else round(100 * v, 1) for k, v in entry["val"].items()}
                print(f"{key} iteration {entry['iteration']}: {val_row}")


if __name__ == "__main__":
    main()
