"""Cost of one augmented stage-1 patch at the gpu profile (128^3): the data side of a GPU run.

Compares, in one process and on the same patches, :func:`deeptree.stage1.data.resample_patches`
(one float32 sampling grid shared by CT, label and distance) with the reference it replaced
(``reference_resample``: a float64 grid rebuilt for each volume), then times whole
``Stage1PatchDataset`` items (crop, augmentation, tensors) with one thread, as one
DataLoader worker runs them. The phantom is a standard (0.7 mm) one, prepared into a cache.

    .venv/bin/python benchmarks/bench_patch_sampling.py [--items 40] [--data /tmp/dt_patch]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import standard_phantom  # noqa: E402

from deeptree.config import get_config  # noqa: E402
from deeptree.stage1.cache import load_stage1_case  # noqa: E402
from deeptree.stage1.data import (
    Stage1PatchDataset,
    _rotation,
    crop_patch,
    resample_patches,
)


def reference_resample(volume, centre, size, matrix, order, fill):
    """The per-volume resampling used before 2026-11-26 (float64 grid built per call)."""
    size = np.asarray(size)
    half = (size - 1) / 2.0
    corners = np.array(np.meshgrid(*[[-h, h] for h in half], indexing="ij")).reshape(3, -1)
    reach = np.ceil(np.abs(matrix @ corners).max(axis=1)).astype(int) + 1
    start = np.floor(centre).astype(int) - reach
    crop_size = 2 * reach + 1
    crop = crop_patch(volume, start, crop_size, fill).astype(np.float32)
    axes = [torch.arange(n, dtype=torch.float64) - h for n, h in zip(size, half, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    pos = grid @ torch.from_numpy(matrix).T + torch.from_numpy(np.asarray(centre, float) - start)
    norm = (2.0 * pos / torch.from_numpy(crop_size - 1.0) - 1.0).flip(-1).float()[None]
    mode = "bilinear" if order == 1 else "nearest"
    out = F.grid_sample(
        torch.from_numpy(crop)[None, None], norm, mode=mode, padding_mode="border",
        align_corners=True,
    )  # fmt: skip
    return out[0, 0].numpy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--data", default="/tmp/dt_patch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = load_stage1_case(standard_phantom(args.data), Path(args.data) / ".cache")
    patch = get_config("gpu").stage1_net.patch_size
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(5):
        matrix = _rotation(np.deg2rad(rng.uniform(-15, 15, 3))) * rng.uniform(0.85, 1.25)
        centre = np.array(case.image.shape) / 2 + rng.uniform(-40, 40, 3)
        draws.append((centre, matrix))
    volumes = [(case.image, 1, 0.0), (case.label, 0, 0), (case.distance, 1, 1.0)]

    start = time.perf_counter()
    ref = [[reference_resample(v, c, patch, m, o, f) for v, o, f in volumes] for c, m in draws]
    t_ref = (time.perf_counter() - start) / len(draws)
    start = time.perf_counter()
    new = [resample_patches(volumes, c, patch, m) for c, m in draws]
    t_new = (time.perf_counter() - start) / len(draws)
    diff = max(
        float(np.abs(a - b).max())
        for r, n in zip(ref, new, strict=True)
        for a, b in zip(r, n, strict=True)
    )
    print(
        f"resampled patch (CT + label + distance, {patch}): reference {t_ref:.3f} s, "
        f"resample_patches {t_new:.3f} s = {t_ref / t_new:.1f}x faster; max difference {diff:.1e}"
    )

    dataset = Stage1PatchDataset([case], patch, get_config("gpu").stage1_train.patch_class_ratios)
    dataset[0]
    times = []
    for i in range(1, args.items + 1):
        start = time.perf_counter()
        dataset[i]
        times.append(time.perf_counter() - start)
    times = np.array(times)
    print(
        f"Stage1PatchDataset item, one thread: mean {times.mean():.3f} s, median "
        f"{np.median(times):.3f} s, max {times.max():.3f} s over {args.items} items"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
