"""Per-step costs of a ``cpu``-profile reproduction (``deeptree.evaluation.reproduce``), to estimate the
whole run without running it: phantom generation and preparation, one training iteration of
each kind of model (nnU-Net's sampler included; stage 2 with its breakage simulations), one
sliding-window prediction of a cpu phantom, one stage-2 repair, one scoring of a mask, the
region-growing baseline and one stage-2 validation. The figures are the keys of
``deeptree.evaluation.budget.CPU_STEP_SECONDS``; the script prints
``estimate_seconds(reproduce_settings("cpu"), measured)``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_reproduce.py --json /tmp/bench/reproduce.json

Run it on a quiet machine: with other processes on the cores every figure grows alike (the
load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def _step_seconds(model, criterion, dataset, n: int, batch: int) -> float:
    """Median wall time of one SGD step (data included) over ``n`` steps, the first dropped."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    times = []
    for k in range(n + 1):
        start = time.perf_counter()
        items = [dataset[k * batch + j] for j in range(batch)]
        x = torch.stack([i["image"] for i in items])
        y = torch.stack([i["label"] for i in items])
        d = torch.stack([i["distance"] for i in items])
        model.train()
        loss, _ = criterion(model(x), y, d)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _timed(fn, repeat: int = 1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    from deeptree.breakage import simulate_breakage
    from deeptree.config import get_config, reproduce_settings
    from deeptree.evaluation.baselines import region_growing
    from deeptree.evaluation.budget import estimate_seconds
    from deeptree.io import list_cases, load_case
    from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth
    from deeptree.networks import stage1_network
    from deeptree.phantom import generate_cohort
    from deeptree.pipeline import repair
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.data import Stage1PatchDataset
    from deeptree.stage1.losses import DiceCEClDiceLoss, Stage1Loss
    from deeptree.stage1.predict import predict_stage1
    from deeptree.stage2.predict import load_stage2_model
    from deeptree.stage2.task import case_sources, stage2_task
    from deeptree.train import train
    from deeptree.tree import parse_tree

    s = reproduce_settings("cpu")
    run = get_config("cpu")
    load_before = os.getloadavg()
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _, t = _timed(lambda: generate_cohort(root / "cohort", "cpu", 2, seed=0, progress=False))
        rates["phantom"] = t / 2
        cases, t = _timed(lambda: load_cohort(root / "cohort", root / "cache"))
        rates["prepare"] = t / 2
        batch = s.stage1_train.batch_size
        data1 = Stage1PatchDataset(
            cases, s.stage1_net.patch_size, oversample=0.33, batch_size=batch, by_class=True
        )
        torch.manual_seed(0)
        rates["stage1_it"] = _step_seconds(
            stage1_network(s.stage1_net, "amc+gul"), Stage1Loss("amc+gul"), data1, args.steps, batch
        )
        torch.manual_seed(0)
        rates["cldice_it"] = _step_seconds(
            stage1_network(s.stage1_net, "plain"),
            DiceCEClDiceLoss(s.cldice_weight, s.cldice_iterations),
            Stage1PatchDataset(cases, s.stage1_net.patch_size, oversample=0.33, by_class=False),
            args.steps,
            batch,
        )
        # stage 2 through the real task: crops, breakage simulations and attention included
        paths = list_cases(root / "cohort")
        sources = case_sources(paths[:1])
        val_sources = case_sources(paths[1:])
        n2 = 3 * args.steps
        cfg = replace(s.stage2_train, iterations=n2, validate_every=10**9, checkpoint_every=n2)
        task = stage2_task(
            sources, val_sources, s.stage2_net, cfg, data=s.stage2_data, breakage=run.breakage,
            attention=run.attention, profile="cpu",
        )  # fmt: skip
        result = train(task, cfg, root / "stage2", progress=False, device="cpu")
        rates["stage2_it"] = result.seconds / n2
        _, rates["stage2_validation"] = _timed(lambda: task.validate(task.model))
        case = load_case(paths[1].image, paths[1].label)
        model = stage1_network(s.stage1_net, "amc+gul")
        _, rates["predict"] = _timed(
            lambda: predict_stage1(
                model, case.ct, s.stage1_net.patch_size, overlap=s.stage1_net.inference_overlap,
                device="cpu",
            )
        )  # fmt: skip
        # a stage-1-like mask: the ground truth with simulated breakages (a trained stage 1
        # leaves a few components, as this)
        gt = case.label > 0
        broken = simulate_breakage(
            gt, parse_tree(gt, case.spacing), np.random.default_rng(0)
        ).broken.astype(np.uint8)
        stage2 = load_stage2_model(result.checkpoint)
        _, rates["repair"] = _timed(lambda: repair(broken, case.ct, stage2, device="cpu"))
        reference = prepare_ground_truth(gt, case.spacing)
        _, rates["metrics"] = _timed(
            lambda: (
                airway_metrics(broken, reference, case.spacing),
                generation_metrics(broken, reference, case.spacing),
            )
        )
        _, rates["baseline"] = _timed(lambda: region_growing(case.ct, case.spacing))
    figures = {
        "threads": args.threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rates_s": {k: round(v, 3) for k, v in rates.items()},
        "estimate_cpu_s": estimate_seconds(s, rates),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
