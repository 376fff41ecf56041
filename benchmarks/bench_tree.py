"""Speed and memory of :func:`deeptree.tree.parse_tree` on the real mask atm_001.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_tree.py                # parse time and peak memory
    .venv/bin/python benchmarks/bench_tree.py --reference    # + the ATM'22 reference parse
                                                             #   (minutes), branch counts
                                                             #   and the time ratio

The issue asks for at most 30 s and 4 GB on 2 cores for the 512x512x679 mask. Peak
memory is the process's maximum resident set size (reading the NIfTI included). With
``--reference`` the ATM'22 parsing scheme (benchmarks/atm22_reference.py) runs once, in
the same process, on the mask's bounding box; its time is a lower bound of the original
code's time on the whole volume.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from deeptree.io import SAMPLES_DIR, read_nifti
from deeptree.tree import parse_tree


def peak_rss_mb() -> float:
    """Maximum resident set size of this process so far, in MiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partition_agreement(ours: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> dict:
    """How far two branch partitions of the same mask agree.

    ``reference`` lives on :func:`atm22_reference.crop_to_mask`'s crop of ``mask``
    (bounding box + 2 voxels). Returns the number of distinct (ours, reference) label
    pairs over the mask (equal to both label counts when the partitions are identical up
    to renumbering) and the share of mask voxels whose reference label is the one most
    of their branch's voxels carry.
    """
    nz = np.argwhere(mask)
    box = tuple(slice(a, b + 1) for a, b in zip(nz.min(axis=0), nz.max(axis=0), strict=True))
    ours = ours[box].astype(np.int64)
    reference = reference[2:-2, 2:-2, 2:-2].astype(np.int64)
    on = (ours > 0) | (reference > 0)
    pairs, counts = np.unique(np.stack([ours[on], reference[on]]), axis=1, return_counts=True)
    majority: dict[int, int] = {}
    for (a, _), c in zip(pairs.T, counts, strict=True):
        majority[int(a)] = max(majority.get(int(a), 0), int(c))
    return {
        "label_pairs": int(pairs.shape[1]),
        "ours": int(np.unique(ours[on]).size),
        "reference": int(np.unique(reference[on]).size),
        "voxel_agreement": round(sum(majority.values()) / int(on.sum()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mask", type=Path, default=SAMPLES_DIR / "atm_001" / "airway.nii.gz")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="also run the ATM'22 reference")
    args = parser.parse_args(argv)

    volume = read_nifti(args.mask)
    rss_after_read = peak_rss_mb()
    times, tree = [], None
    for _ in range(args.repeats):
        tree = None  # free the previous parse: the peak is that of one parse
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tree = parse_tree(volume.array, volume.spacing, name=str(args.mask))
        times.append(time.perf_counter() - start)
    result = {
        "mask": str(args.mask),
        "shape": list(volume.array.shape),
        "parse_seconds_median": round(statistics.median(times), 2),
        "parse_seconds_all": [round(t, 2) for t in times],
        "peak_rss_mb": round(peak_rss_mb(), 0),
        "rss_after_read_mb": round(rss_after_read, 0),
        "n_branches": len(tree.branches),
        "n_components_dropped": tree.n_components_dropped,
        "generations": np.bincount([b.generation for b in tree.branches.values()]).tolist(),
    }
    if args.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from atm22_reference import atm22_parse, crop_to_mask

        crop = crop_to_mask(volume.array > 0)  # margin 2 around the mask's bounding box
        start = time.perf_counter()
        reference_labels, _, n_reference, generation = atm22_parse(crop)
        reference_seconds = time.perf_counter() - start
        # compare the partitions voxel by voxel, in the reference's crop
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            atm_like = parse_tree(
                volume.array, volume.spacing, root="atm22", nearest_in_voxels=True
            )
        result.update(
            reference_n_branches=int(n_reference),
            reference_generations=np.bincount(generation).tolist(),
            branch_count_difference_percent=round(
                100 * (len(tree.branches) - n_reference) / n_reference, 2
            ),
            reference_seconds=round(reference_seconds, 1),
            speedup_vs_reference=round(reference_seconds / statistics.median(times), 1),
            nearest_in_voxels_n_branches=len(atm_like.branches),
            agreement_mm=partition_agreement(tree.branch_labels, reference_labels, volume.array),
            agreement_nearest_in_voxels=partition_agreement(
                atm_like.branch_labels, reference_labels, volume.array
            ),
        )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
