"""Per-step costs of a ``cpu``-profile reproduction (``deeptree.evaluation.reproduce``), to estimate the
whole run without running it: one training iteration of each kind of stage-1 model, of stage 2
(with its breakage simulations), and one sliding-window prediction of a cpu phantom.

    .venv/bin/python benchmarks/bench_reproduce.py --threads 1 --json /tmp/bench/reproduce.json

The estimate multiplies the medians by the profile's iteration counts (see
``benchmarks/RESULTS.md``, "Evaluation and reproduction").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def _step_seconds(model, criterion, dataset, n: int, batch: int, channels: int = 1) -> float:
    """Median wall time of one SGD step (data included) over ``n`` steps, the first dropped."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    times = []
    for k in range(n + 1):
        start = time.perf_counter()
        items = [dataset[k * batch + j] for j in range(batch)]
        x = torch.stack([i["image"] for i in items]).repeat(1, channels, 1, 1, 1)
        y = torch.stack([i["label"] for i in items])
        d = torch.stack([i["distance"] for i in items])
        model.train()
        loss, _ = criterion(model(x), y, d)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    from deeptree.config import get_config
    from deeptree.evaluation import reproduce as rp
    from deeptree.io import list_cases, load_case
    from deeptree.networks import stage1_network
    from deeptree.phantom import generate_cohort
    from deeptree.stage1.data import Stage1PatchDataset, load_cohort
    from deeptree.stage1.losses import DiceCEClDiceLoss, Stage1Loss
    from deeptree.stage1.predict import predict_stage1
    from deeptree.stage2.task import stage2_task
    from deeptree.train import train

    s = rp.reproduce_settings("cpu")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        generate_cohort(root / "cohort", "cpu", 2, seed=0, progress=False)
        figures["phantom_s_per_case"] = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        cases = load_cohort(root / "cohort", root / "cache")
        figures["prepare_s_per_case"] = (time.perf_counter() - start) / 2
        batch = s.stage1_train.batch_size
        data1 = Stage1PatchDataset(cases, s.stage1_net.patch_size, seed=0)
        for variant in ("plain", "amc+gul"):
            torch.manual_seed(0)
            figures[f"stage1_{variant}_s_per_it"] = _step_seconds(
                stage1_network(s.stage1_net, variant), Stage1Loss(variant), data1, args.steps, batch
            )
        torch.manual_seed(0)
        figures["stage1_cldice_s_per_it"] = _step_seconds(
            stage1_network(s.stage1_net, "plain"),
            DiceCEClDiceLoss(s.cldice_weight, s.cldice_iterations),
            data1,
            args.steps,
            batch,
        )
        # stage 2 through the real task: crops, breakage simulations and attention included
        sources = rp._stage2_sources(list_cases(root / "cohort"))
        n2 = 4 * args.steps
        cfg = replace(s.stage2_train, iterations=n2, validate_every=n2, checkpoint_every=n2)
        run = get_config("cpu")
        task = stage2_task(
            sources, [], s.stage2_net, cfg, data=s.stage2_data, breakage=run.breakage,
            attention=run.attention, profile="cpu",
        )  # fmt: skip
        result = train(task, cfg, root / "stage2", progress=False, device="cpu")
        figures["stage2_s_per_it"] = result.seconds / n2
        paths = list_cases(root / "cohort")[0]
        case = load_case(paths.image, paths.label)
        model = stage1_network(s.stage1_net, "amc+gul")
        start = time.perf_counter()
        predict_stage1(
            model, case.ct, s.stage1_net.patch_size, overlap=s.stage1_net.inference_overlap, device="cpu"
        )  # fmt: skip
        figures["sliding_window_s_per_case"] = time.perf_counter() - start
    it1, it2 = s.stage1_train.iterations, s.stage2_train.iterations
    figures["estimate_training_s"] = (
        it1
        * (
            3 * figures["stage1_plain_s_per_it"]
            + figures["stage1_amc+gul_s_per_it"]
            + figures["stage1_cldice_s_per_it"]
        )
        + it2 * figures["stage2_s_per_it"]
    )
    figures = {k: round(v, 3) for k, v in figures.items()}
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
