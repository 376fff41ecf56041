"""Cost of one stage-2 training simulation on a standard (0.7 mm) phantom, by part.

A stage-2 training batch needs a fresh breakage simulation of a training GT
(``deeptree.stage2.data.simulate_stage2_sample``): breakage, false-positive fragments, attention
map and centres. On a GPU this is the stage-2 data side. The script times each part once
per repeat, with one thread, and compares ``add_fragments`` with the reference it replaced
(``reference_fragment_candidates``: EDTs of the whole grown box, kept here for the ratio).

With ``--loader BATCHES`` it also times a DataLoader of ``Stage2CropDataset`` on that phantom
with ``--workers`` processes (batch 2, 64^3 crops), once with the old gpu setting (2 crops per
simulation, one stream: a fresh simulation for every batch) and once with the gpu profile's
(``simulation_streams`` = workers, so each worker reuses its simulation).

    .venv/bin/python benchmarks/bench_stage2_data.py [--repeat 3] [--data /tmp/dt_patch]
        [--loader 8 --workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import standard_phantom  # noqa: E402

from deeptree.attention import breakage_attention, breakage_centres
from deeptree.breakage import simulate_breakage  # noqa: E402
from deeptree.config import (
    get_config,  # noqa: E402
    stage2_settings,
)
from deeptree.masks import bounding_box, grow_box
from deeptree.stage2.data import Stage2CropDataset, add_fragments


def reference_fragment_candidates(airway, avoid, room, cfg):
    """The candidate search used before 2026-11-26: two EDTs of the whole grown box."""
    lo_d, hi_d = cfg.fragment_distance
    reach = int(np.ceil(hi_d + cfg.fragment_length[1] + cfg.fragment_radius[1])) + 2
    box = grow_box(bounding_box(airway), reach, airway.shape)
    dist = ndi.distance_transform_edt(~airway[box])
    candidates = (dist >= lo_d) & (dist <= hi_d)
    if avoid is not None and avoid[box].any():
        candidates &= ndi.distance_transform_edt(~avoid[box]) > cfg.gap_clearance
    if room is not None:
        candidates &= room[box]
    return np.argwhere(candidates)


def loader_seconds(source, data, batches: int, workers: int) -> tuple[float, int]:
    """Wall time of ``batches`` batches of 2 from a DataLoader with ``workers`` processes
    (worker start-up included), and the number of distinct simulations they came from."""
    import torch

    dataset = Stage2CropDataset([source], (64, 64, 64), data, seed=0, batch_size=2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=workers)
    start, seen = time.perf_counter(), set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for number, batch in enumerate(loader):
            seen.update(batch["simulation"].tolist())
            if number + 1 == batches:
                break
    return time.perf_counter() - start, len(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="/tmp/dt_patch")
    parser.add_argument("--loader", type=int, default=0, help="batches to time (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from deeptree.stage2.task import case_sources

    source = case_sources([standard_phantom(args.data)])[0]
    _, _, data = stage2_settings("gpu")
    run = get_config("gpu")
    times: dict[str, list[float]] = {}

    def timed(name, fn, *a, **k):
        start = time.perf_counter()
        out = fn(*a, **k)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return out

    for r in range(args.repeat):
        rng = np.random.default_rng(r)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            broken = timed(
                "breakage", simulate_breakage, source.airway, source.tree, rng,
                run.breakage.branch_fraction, run.breakage.run_fraction,
                min_generation=data.min_generation,
            )  # fmt: skip
        n = max(1, round(data.fragments_per_gap * len(broken.gaps)))
        fragments = timed(
            "fragments", add_fragments, broken.broken, n, rng, data, broken.label, source.room
        )
        timed(
            "fragments, reference candidate search", reference_fragment_candidates,
            broken.broken, broken.label, source.room, data,
        )  # fmt: skip
        h_bar = timed("attention", breakage_attention, broken.broken | fragments, 5.0)
        timed("centres", breakage_centres, h_bar, 0.5)
    shape = "x".join(str(s) for s in source.airway.shape)
    print(f"standard phantom {shape}, median of {args.repeat} (s):")
    for name, t in times.items():
        print(f"  {name:40s} {np.median(t):7.3f}")
    ref, new = (
        np.median(times["fragments, reference candidate search"]),
        np.median(times["fragments"]),
    )
    print(f"add_fragments: {ref / new:.0f}x faster than the reference's candidate search alone")
    if args.loader:
        from dataclasses import replace

        settings = {
            "old gpu setting (2 crops per simulation, 1 stream)": replace(
                data, crops_per_simulation=2, simulation_streams=1
            ),
            f"gpu profile ({data.crops_per_simulation} crops per simulation, "
            f"{args.workers} streams)": replace(data, simulation_streams=args.workers),
        }
        results = {}
        for name, cfg in settings.items():
            results[name] = loader_seconds(source, cfg, args.loader, args.workers)
            seconds, simulations = results[name]
            print(
                f"DataLoader, {args.workers} workers, {args.loader} batches, {name}: "
                f"{seconds:.1f} s ({args.loader / seconds:.2f} batches/s, {simulations} simulations)"
            )
        (old, _), (new, _) = results.values()
        print(f"batches per second: {old / new:.1f}x the old setting")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
