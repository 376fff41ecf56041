"""Stage-1 patch augmentation: the hand-written code of ``deeptree.stage1.data.sample_patch``
("old", what the library uses) against the same augmentation from MONAI's dictionary transforms
(``benchmarks/_monai_augment.py``, "new"), in one process, one thread (as one DataLoader worker).

For each patch size (the gpu profile's 128^3 on a standard 0.7 mm phantom, the cpu profile's
32^3 on a cpu phantom), times per patch, old and new interleaved item by item:

* ``spatial``: rotation and scaling both drawn (probabilities set to 1), intensity off;
* ``intensity``: brightness, contrast and noise all drawn, no spatial step;
* ``item``: whole patches with the default probabilities (about a third augmented spatially),
  as ``Stage1PatchDataset`` draws them (the two draw in another order, so these are other
  patches: compare the means).

First it checks that both resample alike: MONAI's ``Affined`` against the hand-written
``resample_patches`` for the same matrix and centre (largest difference printed).

    .venv/bin/python benchmarks/bench_augmentation.py [--items 30] [--data /tmp/dt_aug] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import _monai_augment as new  # noqa: E402
from _common import cpu_model, finish_report, standard_phantom  # noqa: E402

from deeptree.config import get_config  # noqa: E402
from deeptree.io import list_cases  # noqa: E402
from deeptree.stage1 import data as old  # noqa: E402
from deeptree.stage1.cache import load_stage1_case  # noqa: E402
from deeptree.stage1.data import AugmentConfig  # noqa: E402

SPATIAL = replace(
    AugmentConfig(), p_rotate=1.0, p_scale=1.0, p_brightness=0, p_contrast=0, p_noise=0
)
INTENSITY = replace(
    AugmentConfig(), p_rotate=0, p_scale=0, p_brightness=1.0, p_contrast=1.0, p_noise=1.0
)
DEFAULT = AugmentConfig()


def cpu_case(root: Path):
    """One cpu-profile phantom (1.5 mm), generated in ``root`` unless present."""
    from deeptree.phantom import case_is_complete, generate_case, write_case

    if not case_is_complete(root, "PHANTOM_000"):
        write_case(generate_case("cpu", (0, 0), case_id="PHANTOM_000"), root)
    return next(c for c in list_cases(root) if c.id == "PHANTOM_000")


def time_both(case, patch, ratios, aug, items: int) -> dict:
    """Per-patch seconds of the old and the new code on items 1..items (interleaved)."""
    for fn in (old.sample_patch, new.sample_patch):  # warm-up: imports, first allocations
        fn(case, patch, ratios, np.random.default_rng([0, 0]), aug)
    times = {"old": [], "new": []}
    for i in range(1, items + 1):
        for name, fn in (("old", old.sample_patch), ("new", new.sample_patch)):
            rng = np.random.default_rng([0, i])
            start = time.perf_counter()
            fn(case, patch, ratios, rng, aug)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, t in times.items():
        t = np.asarray(t)
        out[name] = {"mean": float(t.mean()), "median": float(np.median(t)), "max": float(t.max())}
    out["new/old (mean)"] = out["new"]["mean"] / out["old"]["mean"]
    return out


def resampling_difference(case, patch) -> dict:
    """Largest difference between MONAI's ``Affined`` and the hand-written ``resample_patches``
    on the same rotated and scaled patch (CT, distance: values; label: share of voxels)."""
    matrix = new.draw_spatial(np.random.default_rng(7), SPATIAL)
    centre = np.array(case.image.shape) // 2
    reach = new.spatial_reach(patch, matrix)
    start, size = centre - reach, 2 * reach + 1
    crops = {
        "image": old.crop_patch(case.image, start, size, 0.0),
        "label": old.crop_patch(case.label, start, size, 0),
        "distance": old.crop_patch(case.distance, start, size, 1.0),
    }
    ours = new.apply_spatial(crops, matrix, patch)
    theirs = old.resample_patches(
        [(case.image, 1, 0.0), (case.label, 0, 0), (case.distance, 1, 1.0)],
        centre,
        patch,
        matrix[:3, :3],
    )
    return {
        "image": float(np.abs(ours["image"] - theirs[0]).max()),
        "label (share of voxels)": float(np.mean(ours["label"] != theirs[1])),
        "distance": float(np.abs(ours["distance"] - theirs[2]).max()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--data", default="/tmp/dt_aug")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    report = {
        "cpu": cpu_model(),
        "threads": 1,
        "items": args.items,
        "torch": torch.__version__,
        "monai": __import__("monai").__version__,
        "load_average_start": __import__("os").getloadavg(),
    }
    setups = {
        "gpu profile, 128^3, standard phantom": (
            standard_phantom(data / "standard"),
            data / "standard" / ".cache",
            "gpu",
        ),
        "cpu profile, 32^3, cpu phantom": (cpu_case(data / "cpu"), data / "cpu" / ".cache", "cpu"),
    }
    print(f"CPU: {report['cpu']}; one thread; {args.items} patches per row")
    for label, (paths, cache, profile) in setups.items():
        case = load_stage1_case(paths, cache)
        config = get_config(profile)
        patch = config.stage1_net.patch_size
        ratios = config.stage1_train.patch_class_ratios
        rows = {"resampling difference": resampling_difference(case, patch)}
        print(
            f"{label}: MONAI Affined vs hand-written, largest difference {rows['resampling difference']}"
        )
        for kind, aug in (("spatial", SPATIAL), ("intensity", INTENSITY), ("item", DEFAULT)):
            rows[kind] = time_both(case, patch, ratios, aug, args.items)
            r = rows[kind]
            print(
                f"{label:40s} {kind:9s} old {r['old']['mean'] * 1e3:7.1f} ms "
                f"(median {r['old']['median'] * 1e3:6.1f}), new {r['new']['mean'] * 1e3:7.1f} ms "
                f"(median {r['new']['median'] * 1e3:6.1f}): new/old {r['new/old (mean)']:.2f}"
            )
        report[label] = rows
    finish_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
