"""How stage-2 training starts, with and without the foreground prior (issue 8).

Trains notebook 06's cpu stage 2 (``deeptree.config.stage2_settings("cpu")``) on the 6
training phantoms of a run's notebook-05 cohort and, every ``--every`` iterations, prints on
a fixed probe batch of 16 training crops: the mean breakage probability on the target voxels
``Y^B`` and elsewhere, the share of ``Y^B`` voxels above 0.5, and the output bias
(breakage - background) of the full-resolution head. ``--no-prior`` starts the heads at
nnU-Net's zero bias instead of ``TrainConfig.foreground_prior``.

    .venv/bin/python benchmarks/stage2_start.py --cohort runs/RUN/05_stage1/cohort --seed 2 \\
        --stop 300 [--no-prior]

About 0.1-0.2 s per iteration on 2 cores. The schedule is the profile's (1000 iterations of
polynomial decay) even when ``--stop`` ends the run earlier.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeptree.config import (
    get_config,  # noqa: E402
    stage2_settings,
)
from deeptree.stage1.data import split_cases
from deeptree.stage2.data import Stage2CropDataset
from deeptree.stage2.task import load_sources, stage2_task
from deeptree.train import train


class _Stop(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", required=True, help="notebook 05's cohort (ATM'22 layout)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--stop", type=int, default=300, help="last iteration to run")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--no-prior", action="store_true", help="nnU-Net's zero output bias")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = get_config("cpu")
    net, cfg, data = stage2_settings("cpu")
    prior = None if args.no_prior else cfg.foreground_prior
    cfg = replace(cfg, seed=args.seed, foreground_prior=prior, validate_every=10**9)
    train_sources, _ = split_cases(load_sources(Path(args.cohort)), 1)
    task = stage2_task(
        train_sources, [], net, cfg, data=data, breakage=run.breakage, attention=run.attention
    )
    probe = Stage2CropDataset(
        train_sources, net.patch_size, data, run.breakage, run.attention, seed=123
    )
    items = [probe[i] for i in range(16)]
    x = torch.stack([it["image"] for it in items])
    target = torch.stack([it["label"] for it in items])[:, 0] > 0
    print(f"seed {args.seed}, foreground prior {prior}; probe: {int(target.sum())} Y^B voxels")

    def report(iteration: int, entry: dict) -> None:
        if iteration % args.every and iteration != 1:
            return
        model = task.model
        with torch.no_grad():
            model.eval()
            p = torch.softmax(model(x), dim=1)[:, 1]
            model.train()
        bias = model.output_block.conv.conv.bias.detach()
        print(
            f"iteration {iteration:5d}: p(Y^B) {float(p[target].mean()):.4f}  "
            f"p(elsewhere) {float(p[~target].mean()):.2e}  "
            f"share of Y^B > 0.5 {float((p[target] > 0.5).float().mean()):.3f}  "
            f"bias {float(bias[1] - bias[0]):+.2f}",
            flush=True,
        )
        if iteration >= args.stop:
            raise _Stop

    with tempfile.TemporaryDirectory() as out:
        try:
            train(task, cfg, out, progress=False, device="cpu", callback=report)
        except _Stop:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
