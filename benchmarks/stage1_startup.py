"""Does a stage-1 model survive its first iterations? The start-up of the training, compared
on the cpu reproduction's training phantoms (issue 30).

A four-channel softmax with random weights starts with most of its probability on the three
airway classes (airway probability 1 - p(background) of 0.65-0.91 everywhere); nnU-Net's SGD
(lr 0.01, Nesterov momentum 0.99, no warm-up) can then drive it to "no airway anywhere" within
50 iterations, where the soft Dice has no gradient left and the model never recovers (the
cpu reproduction's seed-1 AMC models). For each start-up candidate, every variant and every
training seed, this script runs the first ``--steps`` iterations of the cpu reproduction's
stage-1 training (its cohort, sampler, network and the learning rate of its whole schedule,
``--schedule`` iterations long) and records the mean airway probability of each training batch
(the loss part ``airway_p``) and the Dice part of the loss.

A run counts as collapsed when the batch airway probability averages below ``COLLAPSED_P`` over
the last 20 of its steps (the airway fills 3-10 % of a batch of nnU-Net's sampler, so a
learning model sits well above it).

Candidates (``--candidate NAME``, repeatable; default all):

* ``nnunet``: random heads, no warm-up (the cpu reproduction of 2026-12-02);
* ``prior``: the output heads start at airway probability 0.01 in total, split over the
  airway classes (Lin et al., ICCV 2017; ``deeptree.networks.init_foreground_prior``);
* ``warmup``: the learning rate rises linearly over the first 50 iterations
  (``TrainConfig.warmup_iterations``);
* ``prior+warmup``: both.

    .venv/bin/python benchmarks/stage1_startup.py --steps 120 --seed 0 --seed 1 --seed 2 \\
        --seed 3 --seed 4 --out benchmarks/records/stage1_startup.json --work /tmp/stage1_startup

Writes every run's curves to ``--out`` (JSON) and prints one table row per candidate and
variant: collapsed runs of the seeds, the median final airway probability and Dice part.
Training phantoms only: nothing here reads a validation or test phantom.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

#: below this batch-mean airway probability a model predicts no airway anywhere
COLLAPSED_P = 0.005

CANDIDATES = {
    "nnunet": {"foreground_prior": None, "warmup_iterations": 0},
    "prior": {"foreground_prior": 0.01, "warmup_iterations": 0},
    "warmup": {"foreground_prior": None, "warmup_iterations": 50},
    "prior+warmup": {"foreground_prior": 0.01, "warmup_iterations": 50},
}


def run_one(train_cases, settings, variant: str, seed: int, candidate: dict, steps: int) -> dict:
    """The first ``steps`` iterations of one stage-1 training; its per-step loss parts."""
    import torch

    from deeptree.stage1.task import stage1_task
    from deeptree.train import make_optimizer, poly_lr

    cfg = replace(settings.stage1_train, seed=seed, **candidate)
    task = stage1_task(train_cases, [], variant, settings.stage1_net, cfg, profile="cpu")
    model = task.model
    optimizer = make_optimizer(model, cfg)
    loader = torch.utils.data.DataLoader(task.dataset, batch_size=cfg.batch_size, num_workers=0)
    curve = []
    for it, batch in enumerate(loader):
        if it >= steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(it, cfg)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, parts = task.loss_fn(model(batch["image"]), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        curve.append({"iteration": it, "loss": float(loss.detach()), **parts})
    return {"variant": variant, "seed": seed, "curve": curve}


def collapsed(curve: list[dict]) -> bool:
    """True when the batch airway probability averaged below COLLAPSED_P over the last 20 steps."""
    return sum(step["airway_p"] for step in curve[-20:]) / len(curve[-20:]) < COLLAPSED_P


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--schedule", type=int, default=2000, help="length of the whole run")
    parser.add_argument("--seed", type=int, action="append", help="training seed (repeatable)")
    parser.add_argument("--variant", action="append", help="stage-1 variant (repeatable)")
    parser.add_argument("--candidate", action="append", choices=sorted(CANDIDATES))
    parser.add_argument("--work", default="/tmp/stage1_startup", help="cohort and cache")
    parser.add_argument("--out", default="benchmarks/records/stage1_startup.json")
    args = parser.parse_args()

    from deeptree.config import LOSS_VARIANTS, reproduce_settings
    from deeptree.io import list_cases
    from deeptree.phantom import generate_cohort
    from deeptree.stage1.cache import load_cohort

    settings = reproduce_settings("cpu", stage1_iterations=args.schedule)
    work = Path(args.work)
    generate_cohort(work / "cohort", settings.phantom, settings.n_cases, seed=settings.seed)
    cases = list_cases(work / "cohort")
    train_ids = [c.id for c in cases[: len(cases) - settings.n_val]]  # never the validation ones
    prepared = {c.id: c for c in load_cohort(work / "cohort", work / "cache")}
    train_cases = [prepared[i] for i in train_ids]

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    done = {(r["candidate"], r["variant"], r["seed"]) for r in results["runs"]}
    results["settings"] = {
        "steps": args.steps, "schedule": args.schedule, "train_cases": train_ids,
        "threads": os.environ.get("OMP_NUM_THREADS"), "collapsed_p": COLLAPSED_P,
    }  # fmt: skip
    for name in args.candidate or list(CANDIDATES):
        for variant in args.variant or list(LOSS_VARIANTS):
            for seed in args.seed or [0, 1, 2, 3, 4]:
                if (name, variant, seed) in done:
                    continue
                start = time.perf_counter()
                run = run_one(train_cases, settings, variant, seed, CANDIDATES[name], args.steps)
                run.update(candidate=name, seconds=round(time.perf_counter() - start, 1))
                results["runs"].append(run)
                tmp = out.with_name(f".{out.name}.tmp")
                tmp.write_text(json.dumps(results))
                os.replace(tmp, out)  # resumable: what is done survives a kill
                last = run["curve"][-1]
                print(f"{name:13s} {variant:8s} seed {seed}: airway_p {last['airway_p']:.4f}, "
                      f"dice {last['dice']:.3f}, collapsed {collapsed(run['curve'])}, "
                      f"{run['seconds']} s", flush=True)  # fmt: skip
    print_table(results)


def print_table(results: dict) -> None:
    """One row per candidate and variant: collapsed runs, median final airway_p and Dice."""
    import numpy as np

    rows: dict = {}
    for run in results["runs"]:
        rows.setdefault((run["candidate"], run["variant"]), []).append(run)
    print("| start-up | variant | collapsed / seeds | min airway_p, steps 30-60 (median) "
          "| final airway_p (median) | final Dice part (median) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for (name, variant), runs in rows.items():
        n_bad = sum(collapsed(r["curve"]) for r in runs)
        dip = np.median([min(s["airway_p"] for s in r["curve"][30:60]) for r in runs])
        final_p = np.median([np.mean([s["airway_p"] for s in r["curve"][-20:]]) for r in runs])
        final_d = np.median([np.mean([s["dice"] for s in r["curve"][-20:]]) for r in runs])
        print(f"| {name} | {variant} | {n_bad} / {len(runs)} | {dip:.4f} | {final_p:.4f} "
              f"| {final_d:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
