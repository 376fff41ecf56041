"""Stage-1 on one GPU: training rate vs the bare network, peak memory, whole-CT inference time.

Prepared for a session with an NVIDIA H100/H200 (none was available when it was written; no
GPU figure in RESULTS.md comes from a run of this script unless its output says so).
Run from the repository root::

    python benchmarks/gpu_stage1.py --out "$OUT" [--iterations 300] [--workers 12]
    python benchmarks/gpu_stage1.py --dry-run --out /tmp/dry   # the same steps, tiny, on CPU

Steps (each one prints and the JSON in ``--out/gpu_stage1.json`` collects):

1. phantom cohort (``--cases`` cases of ``--phantom`` profile, generated in parallel) and
   stage-1 preparation (anatomy labels, GUL weight) into a cache;
2. **bare rate**: the gpu-profile network (filters (32, 64, 128, 320), patch 128^3, batch 2,
   bf16 autocast, SGD step, loss included) on a batch that stays on the GPU: iterations/s;
3. **training rate**: :func:`deeptree.train.train` for ``--iterations`` iterations with the
   real data pipeline (``--workers`` DataLoader workers) and no validation; iterations/s over
   the second half (after warm-up), and the ratio to the bare rate (target >= 0.8);
4. peak GPU memory (``torch.cuda.max_memory_allocated``) of the training run;
5. **inference**: :func:`deeptree.stage1.predict.predict_stage1` on a 320 x 512 x 512 volume
   (a phantom CT tiled/cropped to that size), overlap 0.5, Gaussian blending, bf16; seconds
   (median of ``--repeats``, after one warm-up run).

Everything runs under a wall-clock guard: ``--budget`` seconds (default 480); later steps are
skipped (and said so) rather than overrunning.

``--dry-run`` runs every step on the CPU with the smoke profile's network, a few iterations
and a small inference volume: a check of the script itself before GPU time is spent on it
(its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeptree.config import get_config  # noqa: E402


def _generate(args):
    root, profile, seed, index = args
    from deeptree.phantom import case_is_complete, generate_case, write_case

    case_id = f"PHANTOM_{index:03d}"
    if not case_is_complete(root, case_id):
        write_case(generate_case(profile, (seed, index), case_id=case_id), root)
    return case_id


def _prepare(args):
    from deeptree.stage1.cache import load_stage1_case

    paths, cache = args
    load_stage1_case(paths, cache)
    return paths.id


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def bare_rate(model, loss_fn, batch_size, patch, device="cuda", steps=30, warmup=10) -> float:
    """Iterations/s of forward + loss + backward + SGD step on a batch resident on the device
    (bf16 autocast on CUDA, as the training loop)."""
    from deeptree.train import make_optimizer

    cfg = get_config("gpu").stage1_train
    optimizer = make_optimizer(model, cfg)
    x = torch.randn(batch_size, 1, *patch, device=device)
    y = torch.randint(0, 4, (batch_size, 1, *patch), device=device)
    d = torch.rand(batch_size, 1, *patch, device=device)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = loss_fn(model(x), y, d)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    sync(device)
    return steps / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_stage1"))
    parser.add_argument("--data", default="/tmp/deeptree_gpu_cohort")
    parser.add_argument("--cache", help="stage-1 preparation cache (default: DATA/.cache_stage1)")
    parser.add_argument(
        "--phantom", default="cpu", help="phantom profile of the cohort (cpu: fast to make)"
    )
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole script")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny, on CPU: checks the script, not the GPU"
    )
    parser.add_argument(
        "--data-only", action="store_true", help="generate and prepare the cohort, then stop"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.dry_run else "cuda"
    if not (args.dry_run or args.data_only) and not torch.cuda.is_available():
        print("no CUDA device: this script measures a GPU (--dry-run checks it on a CPU)")
        return 1
    from deeptree.io import list_cases
    from deeptree.networks import stage1_network
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.data import split_cases
    from deeptree.stage1.losses import Stage1Loss
    from deeptree.stage1.predict import predict_stage1
    from deeptree.stage1.task import stage1_task
    from deeptree.train import read_log, train

    results = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "command": " ".join(sys.argv),
    }

    def save():
        (out / "gpu_stage1.json").write_text(json.dumps(results, indent=2))

    def left():
        return args.budget - (time.perf_counter() - t0)

    # 1. data
    data = Path(args.data)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(_generate, [(data, args.phantom, 0, i) for i in range(args.cases)]))
        cache = Path(args.cache) if args.cache else data / ".cache_stage1"
        list(pool.map(_prepare, [(c, cache) for c in list_cases(data)]))
    cases = load_cohort(data, cache)
    results["data_seconds"] = round(time.perf_counter() - t0, 1)
    results["volume_shape"] = list(cases[0].image.shape)
    print(
        f"data ready in {results['data_seconds']} s: {len(cases)} cases of {cases[0].image.shape}",
        flush=True,
    )
    save()
    if args.data_only:
        return 0

    cfg = get_config("smoke" if args.dry_run else "gpu")
    net, tcfg = cfg.stage1_net, replace(cfg.stage1_train, batch_size=2)
    results["network"] = {"filters": list(net.filters), "patch_size": list(net.patch_size)}
    results["batch_size"] = tcfg.batch_size
    # 2. bare network rate
    torch.manual_seed(0)
    model = stage1_network(net, "amc+gul").to(device)
    results["bare_it_per_s"] = round(
        bare_rate(model, Stage1Loss("amc+gul"), tcfg.batch_size, net.patch_size, device), 3
    )
    print(f"bare forward+backward: {results['bare_it_per_s']} it/s", flush=True)
    save()
    del model
    if device == "cuda":
        torch.cuda.empty_cache()

    # 3-4. the real training loop
    if left() > 90:
        train_cases, _ = split_cases(cases, 0)
        tcfg = replace(
            tcfg, iterations=args.iterations, validate_every=10**9, checkpoint_every=10**9
        )
        task = stage1_task(
            train_cases, [], "amc+gul", net, tcfg, profile="smoke" if args.dry_run else "gpu"
        )
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = train(
            task, tcfg, out / "train", device=device, num_workers=args.workers, progress=False
        )
        rows = [e for e in read_log(result.log) if "loss" in e]
        half = rows[len(rows) // 2]
        rate = (rows[-1]["iteration"] - half["iteration"]) / (rows[-1]["seconds"] - half["seconds"])
        results.update(
            train_iterations=result.iteration,
            train_it_per_s=round(rate, 3),
            train_over_bare=round(rate / results["bare_it_per_s"], 3),
            peak_gpu_memory_gib=peak_gib(device),
            loss_first_10=float(np.mean([e["loss"] for e in rows[:10]])),
            loss_last_10=float(np.mean([e["loss"] for e in rows[-10:]])),
        )
        print(
            f"training: {rate:.3f} it/s = {results['train_over_bare']:.2f} x bare; peak {results['peak_gpu_memory_gib']} GiB",
            flush=True,
        )
        save()
        model = task.model
    else:
        results["train_skipped"] = "budget"
        torch.manual_seed(0)
        model = stage1_network(net, "amc+gul").to(device)

    # 5. inference on 320 x 512 x 512
    if left() > 40:
        size = (40, 64, 64) if args.dry_run else (320, 512, 512)
        ct = np.full(size, -1000, np.int16)  # (I, J, K): 320 along i
        src = np.asarray(cases[0].image)
        # tile the phantom's normalised CT back to HU over the volume so windows see anatomy
        hu = (src * 1600.0 - 1000.0).astype(np.int16)
        reps = [int(np.ceil(n / s)) for n, s in zip(ct.shape, hu.shape, strict=True)]
        ct[:] = np.tile(hu, reps)[: ct.shape[0], : ct.shape[1], : ct.shape[2]]
        times = []
        for _ in range(1 + args.repeats):
            pred = predict_stage1(
                model, ct, net.patch_size, overlap=0.5, device=device, sw_batch_size=4
            )
            times.append(pred.seconds)
        results["inference_shape"] = list(ct.shape)
        results["inference_seconds_median"] = round(float(np.median(times[1:])), 2)
        results["inference_seconds_all"] = [round(t, 2) for t in times]
        results["inference_peak_gpu_memory_gib"] = peak_gib(device)
        print(f"inference {ct.shape}: {results['inference_seconds_median']} s", flush=True)
    else:
        results["inference_skipped"] = "budget"
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
