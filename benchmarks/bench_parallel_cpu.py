"""Two stage-1 trainings on the CPU: one after the other (one process, torch's threads = every
core) against side by side (two processes, each its share of the cores), through
``deeptree.evaluation.fanout.fan_out`` as ``deeptree reproduce`` runs them (issue 30).

Each job trains the cpu reproduction's stage-1 network (``amc+gul``, batch 2 x 32^3, the
class-balanced sampler on two cpu phantoms) for ``--steps`` SGD steps, data included, and
returns its wall time; the script prints the wall time of both jobs in each arrangement, from
the first job's start to the last one's end (process starts included), and the ratio.

    .venv/bin/python benchmarks/bench_parallel_cpu.py --steps 150 --json /tmp/bench/parallel.json

Run it on a quiet machine: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
import warnings
from pathlib import Path


def train_steps(root: str, steps: int, device: str) -> dict:
    """``steps`` SGD steps of the cpu stage-1 model on the prepared phantoms under ``root``
    (a ``fan_out`` job); returns start and end times (``time.time``, s) and the threads."""
    import torch

    from deeptree.config import reproduce_settings
    from deeptree.networks import stage1_network
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.data import Stage1PatchDataset
    from deeptree.stage1.losses import Stage1Loss

    warnings.filterwarnings("ignore")
    s = reproduce_settings("cpu")
    cases = load_cohort(Path(root) / "cohort", Path(root) / "cache")
    batch = s.stage1_train.batch_size
    dataset = Stage1PatchDataset(
        cases, s.stage1_net.patch_size, oversample=0.33, batch_size=batch, by_class=True
    )
    torch.manual_seed(0)
    model = stage1_network(s.stage1_net, "amc+gul").to(device)
    criterion = Stage1Loss("amc+gul")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    start = time.time()
    for k in range(steps):
        items = [dataset[k * batch + j] for j in range(batch)]
        x, y, d = (torch.stack([i[key] for i in items]) for key in ("image", "label", "distance"))
        model.train()
        loss, _ = criterion(model(x), y, d)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"start": start, "end": time.time(), "threads": torch.get_num_threads()}


def arrangement(root: str, steps: int, devices: list[str]) -> dict:
    """Two jobs on ``devices`` (["cpu"]: one after the other; ["cpu", "cpu"]: side by side)."""
    from deeptree.evaluation.fanout import fan_out

    job = functools.partial(train_steps, root, steps)
    t0 = time.time()
    runs = fan_out([job, job], devices)
    return {
        "wall_s": round(time.time() - t0, 2),
        "training_s": round(max(r["end"] for r in runs) - min(r["start"] for r in runs), 2),
        "threads_per_process": runs[0]["threads"],
        "processes": len(devices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="SGD steps per job")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from deeptree.phantom import generate_cohort
    from deeptree.stage1.cache import load_cohort

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(Path(tmp) / "cohort", "cpu", 2, seed=0, progress=False)
        load_cohort(Path(tmp) / "cohort", Path(tmp) / "cache")
        one = arrangement(tmp, args.steps, ["cpu"])
        two = arrangement(tmp, args.steps, ["cpu", "cpu"])
    out = {
        "steps_per_job": args.steps,
        "one_after_the_other": one,
        "side_by_side": two,
        "speed_up_wall": round(one["wall_s"] / two["wall_s"], 3),
        "speed_up_training": round(one["training_s"] / two["training_s"], 3),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
