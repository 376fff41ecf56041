"""Bias of the branch diameter of ``deeptree.tree`` (2 x mean EDT over the skeleton voxels).

docs/design.md defines a branch's lumen diameter as 2 x the mean Euclidean distance to the
background over the branch's skeleton voxels. This script measures how that estimate relates
to the true diameter of digitised straight tubes (capsules, a voxel inside when its centre is
within the radius) of known radius at random orientations and sub-voxel offsets, on an
isotropic 1-voxel grid, so that a reader can judge the 2 mm class threshold of the anatomy
labels against the measurement's own error.

Usage::

    .venv/bin/python benchmarks/diameter_bias.py [--tubes 6] [--seed 0]
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

from deeptree.tree import parse_tree  # noqa: E402

RADII = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)  # voxels


def tube_diameter(radius: float, rng: np.random.Generator, size: int = 90) -> float:
    """Parsed diameter (voxels) of one digitised tube of ``radius`` voxels, 70 voxels long."""
    mask = np.zeros((size, size, size), bool)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    direction[0] = abs(direction[0]) + 1.0  # mostly along axis 0, so the tube is the "trachea"
    direction /= np.linalg.norm(direction)
    centre = np.full(3, size / 2.0) + rng.uniform(-0.5, 0.5, 3)
    draw_capsule(mask, (1.0, 1.0, 1.0), centre - 35 * direction, centre + 35 * direction, radius)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = parse_tree(mask, (1.0, 1.0, 1.0))
    return tree.branches[tree.trachea_id].diameter_mm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tubes", type=int, default=6, help="tubes per radius")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| true diameter (voxels) | 2 x mean EDT, mean | bias | sd |")
    print("|---|---|---|---|")
    for radius in RADII:
        d = np.array([tube_diameter(radius, rng) for _ in range(args.tubes)])
        print(
            f"| {2 * radius:.1f} | {d.mean():.2f} | {d.mean() - 2 * radius:+.2f} | {d.std():.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
