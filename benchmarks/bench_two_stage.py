"""Speed of two-stage DeepTree inference, with the share of each step (issue 8).

Two settings:

* ``cpu``: a ``cpu``-profile phantom (about 157 x 115 x 126 voxels at 1.5 mm) with the
  ``cpu`` profile's networks, on ``--threads`` CPU threads (2 by default: a laptop);
* ``large`` (only when CUDA is available, or with ``--large-device cpu``): a
  512 x 512 x 320 volume (320 axial slices of 512 x 512; a standard phantom at 0.7 mm grown on
  that grid) with the ``gpu`` profile's networks (the paper's: 128^3 stage-1 windows,
  64^3 stage-2 crops, bf16 autocast on CUDA).

Steps timed (``deeptree.pipeline.segment``): ``stage1`` (sliding window over the whole CT),
``attention`` (attention map and centres of the stage-1 mask), ``stage2`` (the network at
every centre), ``merge`` (union and largest component).

The network weights do not change the cost of a forward pass, but they change the stage-1
mask and hence the work of the later steps. Without checkpoints the networks are randomly
initialised, and the mask handed to attention / stage 2 / merge is a realistic stand-in: the
phantom's ground truth with simulated breakages and false-positive fragments
(``deeptree.stage2.data.simulate_stage2_sample``), i.e. a tree in a few dozen pieces; stage 1 is
still run and timed in full. With ``--stage1`` and ``--stage2`` checkpoints the real
pipeline runs end to end.

Usage::

    python benchmarks/bench_two_stage.py --threads 2 --json runs/bench/two_stage.json
    python benchmarks/bench_two_stage.py --stage1 runs/s1/last.pt --stage2 runs/s2/best.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from deeptree.checkpoints import LoadedModel
from deeptree.config import get_config, stage2_settings
from deeptree.masks import label_components
from deeptree.networks import stage1_network, stage2_network
from deeptree.phantom import generate_case
from deeptree.pipeline import repair, segment
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.stage2.data import simulate_stage2_sample
from deeptree.stage2.predict import load_stage2_model
from deeptree.stage2.task import source_from_case

STEPS = ("stage1", "attention", "stage2", "merge")


def networks(profile: str, args, device):
    """(stage1, stage2) as ``segment`` takes them: checkpoints or random weights."""
    config = get_config(profile)
    net2, _, _ = stage2_settings(profile)
    if args.stage1:
        stage1 = load_stage1_model(args.stage1, device)
    else:
        torch.manual_seed(0)
        model = stage1_network(config.stage1_net, "amc+gul")
        stage1 = (
            model.to(device).eval(),
            {"patch_size": list(config.stage1_net.patch_size), "overlap": 0.5},
        )
    if args.stage2:
        stage2 = load_stage2_model(args.stage2, device)
    else:
        torch.manual_seed(1)
        stage2 = LoadedModel(
            stage2_network(net2).to(device).eval(), {"patch_size": list(net2.patch_size)}
        )
    return stage1, stage2


def run_case(name: str, case, profile: str, args, device, real: bool) -> dict:
    """Time the pipeline on one phantom case; median over ``args.repeat`` runs."""
    stage1, stage2 = networks(profile, args, device)
    data = get_config(profile)
    _, _, data_cfg = stage2_settings(profile)
    stand_in = None
    if not real:
        sample = simulate_stage2_sample(
            source_from_case(case), np.random.default_rng(0), data_cfg, data.breakage
        )
        stand_in = sample.mask
    runs = []
    for _ in range(args.repeat):
        if stand_in is None:
            result = segment(
                case.ct, stage1, stage2, case.spacing, affine=case.affine, device=device
            )
            mask = result.stage1_mask
        else:
            # stage 1 in full (its mask is thrown away), then the later steps on the stand-in
            start = time.perf_counter()
            model, meta = stage1
            predict_stage1(
                model, case.ct, meta["patch_size"], overlap=meta["overlap"], device=device
            )
            if device.type == "cuda":
                torch.cuda.synchronize()
            stage1_seconds = time.perf_counter() - start
            result = repair(stand_in, case.ct, stage2, affine=case.affine, device=device)
            result.seconds["stage1"] = stage1_seconds
            mask = stand_in
        seconds = dict(result.seconds)
        seconds["total"] = sum(seconds[s] for s in (*STEPS, "prepare"))
        runs.append((seconds, len(result.centres), label_components(mask)[1]))
    seconds = {k: float(np.median([r[0][k] for r in runs])) for k in runs[0][0]}
    total = seconds["total"]
    return {
        "setting": name,
        "profile": profile,
        "shape": list(case.ct.shape),
        "spacing_mm": list(case.spacing),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "weights": "checkpoints" if real else "random (stand-in stage-1 mask for later steps)",
        "centres": runs[0][1],
        "stage1_mask_components": runs[0][2],
        "repeat": args.repeat,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "share": {s: round(seconds[s] / total, 3) for s in STEPS},
    }


def large_case(shape=(512, 512, 320), spacing=None):
    """A standard (0.7 mm) phantom on a 512 x 512 x 320 grid (or ``shape`` and ``spacing``)."""
    return generate_case("gpu", 0, shape=tuple(shape), spacing=spacing)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the cpu setting")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting (median)")
    parser.add_argument("--stage1", help="stage-1 checkpoint (default: random weights)")
    parser.add_argument("--stage2", help="stage-2 checkpoint (default: random weights)")
    parser.add_argument(
        "--large-device", help="run the 512x512x320 setting there (default: cuda if available)"
    )
    parser.add_argument("--skip-cpu", action="store_true", help="only the large setting")
    parser.add_argument(
        "--large-shape",
        type=int,
        nargs=3,
        default=(512, 512, 320),
        help="grid of the large setting (smaller only to check the script on a CPU)",
    )
    parser.add_argument(
        "--large-spacing",
        type=float,
        nargs=3,
        help="voxel size (mm) of the large setting (default: the standard phantom's 0.7 mm)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    real = bool(args.stage1 and args.stage2)
    rows = []
    if not args.skip_cpu:
        torch.set_num_threads(args.threads)
        case = generate_case("cpu", (1000, 0))
        rows.append(run_case("cpu phantom", case, "cpu", args, torch.device("cpu"), real))
    large = args.large_device or ("cuda" if torch.cuda.is_available() else None)
    if large:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        start = time.perf_counter()
        case = large_case(args.large_shape, args.large_spacing)
        print(f"large phantom generated in {time.perf_counter() - start:.0f} s")
        name = "x".join(str(n) for n in args.large_shape)
        rows.append(run_case(name, case, "gpu", args, torch.device(large), real))
        if torch.cuda.is_available():
            rows[-1]["gpu"] = torch.cuda.get_device_name(0)
    else:
        print("no CUDA device: the 512x512x320 GPU setting is skipped")
    machine = (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    for r in rows:
        steps = ", ".join(f"{s} {r['seconds'][s]:.2f} s ({r['share'][s]:.0%})" for s in STEPS)
        print(
            f"{r['setting']} {tuple(r['shape'])} on {r['device']}: total {r['seconds']['total']:.2f} s; {steps}; "
            f"{r['centres']} centres"
        )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
