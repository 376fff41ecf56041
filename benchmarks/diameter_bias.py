"""Bias of the branch diameter of ``deeptree.tree``: the cross-sectional area (today) against
2 x the mean distance to the nearest background voxel centre (before issue 30).

Digitised straight tubes (capsules, a voxel is lumen when its centre lies within the radius)
of lumen diameter 1.5, 2 and 3 mm, 30 mm long, at 0.5, 0.7 and 1 mm voxels and two
anisotropic grids, in two orientations: 3 degrees off a grid axis ("axis") and at a random
tilt of 20-70 degrees from it ("oblique"), each at random sub-voxel offsets and azimuths.
Each tube is parsed by :func:`deeptree.tree.parse_tree` (one branch) and its diameter read
both ways. ``--cohort DIR`` adds the branches of a phantom cohort against the generator's own
radii (:func:`deeptree.anatomy.generator_diameters`).

Usage::

    .venv/bin/python benchmarks/diameter_bias.py [--tubes 4] [--seed 0] [--cohort DIR]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tree_builders import draw_capsule  # noqa: E402

from deeptree.tree import AirwayTree, parse_tree  # noqa: E402

DIAMETERS = (1.5, 2.0, 3.0)  # mm
SPACINGS = ((0.5, 0.5, 0.5), (0.7, 0.7, 0.7), (1.0, 1.0, 1.0), (0.7, 0.7, 1.0), (0.5, 0.5, 1.0))


def edt_diameters(tree: AirwayTree) -> dict[int, float]:
    """The former ``Branch.diameter_mm``: 2 x the mean distance (mm) from a branch's
    labelled skeleton voxels to the nearest background voxel centre."""
    branch = tree.skeleton_labels[tuple(tree._skeleton_voxels.T)]
    n = len(tree.branches) + 1
    total = np.bincount(branch, weights=tree._segments.wall_distance, minlength=n)
    count = np.bincount(branch, minlength=n)
    return {b: float(2.0 * total[b] / count[b]) for b in tree.branches}


def tube(diameter: float, spacing, tilt_deg: float, rng: np.random.Generator, length=30.0):
    """(cross-section, 2 x EDT) diameters (mm) of one digitised tube; None if it does not
    parse (scikit-image's thinning deletes some prisms along a grid axis whole)."""
    spacing = np.asarray(spacing, dtype=float)
    t, a = np.radians(tilt_deg), rng.uniform(0.0, 2.0 * np.pi)
    direction = np.array([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)])
    shape = np.ceil((np.abs(direction) * length + diameter) / spacing).astype(int) + 10
    centre = (shape // 2 + rng.uniform(0.0, 1.0, 3)) * spacing
    mask = np.zeros(tuple(shape), dtype=bool)
    half = 0.5 * length * direction
    draw_capsule(mask, spacing, centre - half, centre + half, diameter / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = parse_tree(mask, tuple(spacing))
        except ValueError:  # InputError: no skeleton segment
            return None
    return tree.branches[1].diameter_mm, edt_diameters(tree)[1]


def tubes_table(n_tubes: int, rng: np.random.Generator) -> None:
    print(
        "| voxels (mm) | orientation | true diameter (mm) | cross-section: mean error, worst "
        "| 2 x EDT: mean error, worst |"
    )
    print("|---|---|---|---|---|")
    worst = {"new": 0.0, "old": 0.0}
    for spacing in SPACINGS:
        for orientation in ("axis", "oblique"):
            for diameter in DIAMETERS:
                rows = []
                while len(rows) < n_tubes:
                    tilt = 3.0 if orientation == "axis" else rng.uniform(20.0, 70.0)
                    got = tube(diameter, spacing, tilt, rng)
                    if got is not None:
                        rows.append(got)
                err = np.array(rows) / diameter - 1.0  # (n, 2): new, old
                worst["new"] = max(worst["new"], np.abs(err[:, 0]).max())
                worst["old"] = max(worst["old"], np.abs(err[:, 1]).max())
                cells = [
                    f"{100 * e.mean():+.1f}%, {100 * e[np.argmax(np.abs(e))]:+.1f}%" for e in err.T
                ]
                grid = "x".join(f"{s:g}" for s in spacing)
                print(f"| {grid} | {orientation} | {diameter:g} | {cells[0]} | {cells[1]} |")
    print(
        f"\nworst |error| over all tubes: cross-section {100 * worst['new']:.1f}%, "
        f"2 x EDT {100 * worst['old']:.1f}%"
    )


def cohort_table(folder: Path) -> None:
    from deeptree.anatomy import generator_diameters
    from deeptree.io import read_nifti
    from deeptree.phantom import read_tree

    rows = []  # (true, cross-section, 2 x EDT) per parsed branch of generation >= 2
    for label in sorted((folder / "labelsTr").glob("*.nii.gz")):
        case_id = label.name.removesuffix(".nii.gz")
        volume = read_nifti(label)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = parse_tree(volume.array, volume.spacing, affine=volume.affine)
        true = generator_diameters(
            tree, read_tree(folder / "treesTr" / f"{case_id}.json"), volume.affine
        )
        old = edt_diameters(tree)
        rows += [
            (true[b], tree.branches[b].diameter_mm, old[b])
            for b in tree.branches
            if tree.branches[b].generation >= 2
        ]
    rows = np.array(rows)
    print(f"\n{len(rows)} branches of generation >= 2 in {folder}: error against the generator")
    print("| true diameter (mm) | branches | cross-section, median error | 2 x EDT, median error |")
    print("|---|---|---|---|")
    for lo, hi in ((0.0, 1.6), (1.6, 2.0), (2.0, 2.5), (2.5, 4.0), (4.0, np.inf)):
        sel = (rows[:, 0] > lo) & (rows[:, 0] <= hi)
        if sel.any():
            new, old = (np.median(rows[sel, k] / rows[sel, 0] - 1.0) for k in (1, 2))
            print(f"| ({lo:g}, {hi:g}] | {sel.sum()} | {100 * new:+.1f}% | {100 * old:+.1f}% |")
    for k, name in ((1, "cross-section"), (2, "2 x EDT")):
        agree = np.mean((rows[:, k] <= 2.0) == (rows[:, 0] <= 2.0))
        print(f"{name}: same side of 2 mm as the generator for {100 * agree:.0f}% of the branches")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tubes", type=int, default=4, help="tubes per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cohort", type=Path, default=None, help="a phantom cohort folder")
    args = parser.parse_args()
    tubes_table(args.tubes, np.random.default_rng(args.seed))
    if args.cohort is not None:
        cohort_table(args.cohort)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
