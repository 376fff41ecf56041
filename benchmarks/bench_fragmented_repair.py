"""Repair of a stage-1 mask in thousands of pieces, with and without the component bound.

An untrained (or failed) stage 1 leaves specks everywhere; attention and the connector then
work at every one of them. This times ``deeptree.pipeline.repair`` (gap filler, so no network
is needed) on a standard (0.7 mm) phantom's airway plus ``--specks`` random one-voxel
specks, with ``max_components=None`` (every component, the paper's definition) and with the
default bound (``pipeline.MAX_COMPONENTS``), in one process.

    .venv/bin/python benchmarks/bench_fragmented_repair.py [--specks 20000] [--data /tmp/dt_patch]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import standard_phantom  # noqa: E402

from deeptree.masks import label_components
from deeptree.pipeline import MAX_COMPONENTS, repair


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--specks", type=int, default=20000)
    parser.add_argument("--data", default="/tmp/dt_patch")
    args = parser.parse_args()
    from deeptree.io import load_case

    paths = standard_phantom(args.data)
    case = load_case(paths.image, paths.label, case_id=paths.id)
    mask = np.asarray(case.label) > 0
    rng = np.random.default_rng(0)
    flat = rng.choice(mask.size, size=args.specks, replace=False)
    mask.flat[flat] = True
    n = label_components(mask)[1]
    print(f"{paths.id} {mask.shape}: {n} components")
    for bound in (MAX_COMPONENTS, None):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = repair(mask, case.ct, "gapfill", max_components=bound)
        total = time.perf_counter() - start
        print(f"max_components={bound}: {total:.1f} s (attention {result.seconds['attention']:.1f} s, "
              f"filler {result.seconds['stage2']:.1f} s), {len(result.centres)} centres, "
              f"{result.ignored_components} components left out")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
