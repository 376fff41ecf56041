"""Speed of deeptree.metrics on an atm_001-sized case (512 x 512 x 679 voxels).

Times, on the real ATM'22 mask ``data/samples/atm_001`` with a perturbed prediction
(eroded once, plus false-positive blobs):

* the validation fast path: :func:`airway_metrics` with a precomputed
  :func:`prepare_ground_truth` (target of issue 5: <= 5 s on 2 cores);
* a full evaluation that parses the GT too (target: <= 35 s on 2 cores);
* the parts: parse, prepare, per-generation metrics.

Each timing is the median of ``--repeat`` runs in this process. Run::

    .venv/bin/python benchmarks/bench_metrics.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
from scipy import ndimage


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    from deeptree.io import SAMPLES_DIR, read_nifti
    from deeptree.metrics import airway_metrics, generation_metrics, prepare_ground_truth
    from deeptree.tree import parse_tree

    warnings.simplefilter("ignore", UserWarning)  # atm_001 has 4 tiny extra components
    volume = read_nifti(SAMPLES_DIR / "atm_001" / "airway.nii.gz")
    gt, spacing = volume.array, volume.spacing
    rng = np.random.default_rng(0)
    pred = ndimage.binary_erosion(gt)
    coords = np.argwhere(gt)
    for centre in coords[rng.integers(len(coords), size=20)] + rng.integers(-8, 9, size=(20, 3)):
        lo = np.maximum(centre - 3, 0)
        pred[lo[0] : centre[0] + 4, lo[1] : centre[1] + 4, lo[2] : centre[2] + 4] = True
    pred = pred.astype(np.uint8)  # as read from a NIfTI file

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"case: atm_001 {gt.shape}, {int(gt.sum())} GT voxels, {int(pred.sum())} predicted")

    def parse():  # the ATM'22 rule, as prepare_ground_truth parses
        return parse_tree(gt, spacing, nearest_in_voxels=True)

    t_parse, tree = timed(parse, max(1, args.repeat - 1))
    t_prepare, reference = timed(lambda: prepare_ground_truth(gt, spacing, tree), args.repeat)
    t_fast, fast = timed(lambda: airway_metrics(pred, reference, spacing, "paper"), args.repeat)
    t_fast_atm, _ = timed(lambda: airway_metrics(pred, reference, spacing, "atm22"), args.repeat)
    t_full, full = timed(
        lambda: airway_metrics(pred, gt, spacing, "paper"), max(1, args.repeat - 1)
    )
    t_gen, _ = timed(lambda: generation_metrics(pred, reference, spacing), args.repeat)
    assert fast == full, "the fast path must give the same numbers"

    print(f"parse_tree (GT parse)                    {t_parse:7.2f} s")
    print(f"prepare_ground_truth (from the parse)    {t_prepare:7.2f} s")
    print(f"airway_metrics, prepared GT, paper       {t_fast:7.2f} s   (target <= 5 s)")
    print(f"airway_metrics, prepared GT, atm22       {t_fast_atm:7.2f} s")
    print(f"airway_metrics, parsing the GT, paper    {t_full:7.2f} s   (target <= 35 s)")
    print(f"generation_metrics, prepared GT          {t_gen:7.2f} s")
    print(
        "metrics (paper): "
        + ", ".join(f"{k} {100 * fast[k]:.2f}%" for k in ("BD", "TLD", "precision", "DSC"))
        + f", {fast['n_components']} components"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
