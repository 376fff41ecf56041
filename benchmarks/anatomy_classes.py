"""Anatomy class shares before and after issue 30 (the class-2 / class-3 split).

Before: a branch's diameter was 2 x the mean distance from its skeleton voxels to the nearest
background voxel centre (``edt_diameters`` of diameter_bias.py), at least 2 voxels. After: a
phantom's classes come from its generator's radii (:func:`deeptree.anatomy.generator_diameters`),
a real mask's from the cross-sectional area (:attr:`deeptree.tree.Branch.diameter_mm`; shown
for the phantoms too). The parse is the same in every column; only the diameters differ.
Prints, per case, branches and lumen voxels per class, and the spread of the class-3
diameters.

Usage::

    .venv/bin/python -m deeptree phantom --profile cpu --n 4 --seed 0 --out /tmp/cpu4
    .venv/bin/python benchmarks/anatomy_classes.py --cohort /tmp/cpu4 \\
        --real data/samples/atm_001/airway.nii.gz
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from diameter_bias import edt_diameters  # noqa: E402

from deeptree.anatomy import anatomy_labels, class_summary, generator_diameters  # noqa: E402
from deeptree.io import read_nifti  # noqa: E402
from deeptree.phantom import read_tree  # noqa: E402
from deeptree.tree import parse_tree  # noqa: E402


def shares(tree, diameters: dict[int, float]) -> tuple[str, str, np.ndarray]:
    """Branches and voxels per class as "n1/n2/n3" and "v1/v2/v3 %", and the class-3
    diameters (mm)."""
    summary = class_summary(tree, anatomy_labels(tree, diameters=diameters), diameters=diameters)
    b, v = summary["branches"], summary["voxels"]
    total = sum(v.values())
    small = np.array(
        [
            diameters[i]
            for i, br in tree.branches.items()
            if br.generation >= 2 and diameters[i] <= 2
        ]
    )
    voxels = "/".join(f"{100 * v[c] / total:.1f}" for c in (1, 2, 3))
    return f"{b[1]}/{b[2]}/{b[3]}", voxels, small


def spread(d: np.ndarray) -> str:
    if len(d) == 0:
        return "none"
    q = np.percentile(d, [10, 50, 90])
    return f"{len(np.unique(np.round(d, 2)))} values, {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", type=Path, help="a phantom cohort (labelsTr, treesTr)")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="real airway masks")
    args = parser.parse_args()
    cases = []
    if args.cohort is not None:
        for label in sorted((args.cohort / "labelsTr").glob("*.nii.gz")):
            case_id = label.name.removesuffix(".nii.gz")
            cases.append((case_id, label, args.cohort / "treesTr" / f"{case_id}.json"))
    cases += [(p.parent.name, p, None) for p in args.real]
    print(
        "| case | diameters | branches per class 1/2/3 | lumen voxels per class (%) "
        "| class-3 diameters: distinct, p10 / median / p90 (mm) |"
    )
    print("|---|---|---|---|---|")
    for name, label, tree_json in cases:
        volume = read_nifti(label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = parse_tree(volume.array, volume.spacing, affine=volume.affine)
        columns = [("before: 2 x EDT", edt_diameters(tree))]
        columns.append(("cross-section", {b: x.diameter_mm for b, x in tree.branches.items()}))
        if tree_json is not None:
            spec = read_tree(tree_json)
            columns.append(("generator radii", generator_diameters(tree, spec, volume.affine)))
        for what, diameters in columns:
            b, v, small = shares(tree, diameters)
            print(f"| {name} | {what} | {b} | {v} | {spread(small)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
