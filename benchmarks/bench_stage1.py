"""Stage-1 throughput on the CPU: data side vs the bare network, in the same process.

    python benchmarks/bench_stage1.py [--profile cpu] [--steps 6] [--items 20]

Prints (and writes ``--out/bench_stage1.json``):

* ``bare_it_per_s``: forward + loss + backward + SGD step of the profile's stage-1 network on
  one batch kept in memory (no data loading);
* ``data_items_per_s`` / ``data_batches_per_s``: ``deeptree.stage1.data.Stage1PatchDataset`` items
  (patch crop + augmentation) per second in one process, and batches of the profile's size;
* ``data_over_bare``: how many times faster the data side (one process) produces batches
  than the network consumes them (>= 1 means one worker keeps up; the GPU target is >= 0.8
  of the bare rate with workers, see ``gpu_stage1.py``);
* ``loop_it_per_s`` and ``loop_over_bare``: the real training loop
  (``deeptree.train.train``, ``num_workers=0``) against the bare rate.

The cohort is ``--cases`` phantoms of the profile, generated and prepared into ``--data``
(cached). Timings on a shared machine vary from run to run: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from deeptree.config import get_config
    from deeptree.networks import stage1_network
    from deeptree.phantom import generate_cohort
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.data import Stage1PatchDataset
    from deeptree.stage1.losses import Stage1Loss
    from deeptree.stage1.task import stage1_task
    from deeptree.train import make_optimizer, read_log, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--data", default="/tmp/deeptree_bench_stage1")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/bench_stage1"))
    args = parser.parse_args()
    cfg = get_config(args.profile)
    net, tcfg = cfg.stage1_net, cfg.stage1_train
    generate_cohort(args.data, args.profile, args.cases, seed=0, progress=False)
    cases = load_cohort(args.data, Path(args.data) / ".cache_stage1")
    results = {
        "profile": args.profile,
        "patch": list(net.patch_size),
        "batch": tcfg.batch_size,
        "filters": list(net.filters),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }

    # bare network rate on a resident batch
    torch.manual_seed(0)
    model, loss_fn = stage1_network(net, "amc+gul"), Stage1Loss("amc+gul")
    optimizer = make_optimizer(model, tcfg)
    ds = Stage1PatchDataset(cases, net.patch_size, tcfg.patch_class_ratios, seed=0)
    batch = torch.utils.data.default_collate([ds[i] for i in range(tcfg.batch_size)])
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss, _ = loss_fn(model(batch["image"]), batch["label"], batch["distance"])
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    results["bare_it_per_s"] = 1.0 / float(np.median(times[1:]))

    # data side alone
    start = time.perf_counter()
    for i in range(args.items):
        ds[1000 + i]
    items_per_s = args.items / (time.perf_counter() - start)
    results["data_items_per_s"] = items_per_s
    results["data_batches_per_s"] = items_per_s / tcfg.batch_size
    results["data_over_bare"] = results["data_batches_per_s"] / results["bare_it_per_s"]

    # the real loop
    loop_cfg = replace(
        tcfg, iterations=args.steps + 2, validate_every=10**9, checkpoint_every=10**9
    )
    task = stage1_task(cases, [], "amc+gul", net, loop_cfg, profile=args.profile)
    result = train(task, loop_cfg, Path(args.out) / "loop", device="cpu", progress=False)
    rows = [e for e in read_log(result.log) if "loss" in e]
    rate = (rows[-1]["iteration"] - rows[1]["iteration"]) / (
        rows[-1]["seconds"] - rows[1]["seconds"]
    )
    results["loop_it_per_s"] = rate
    results["loop_over_bare"] = rate / results["bare_it_per_s"]
    results = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_stage1.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
