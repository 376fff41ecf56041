"""Where the false positives of stage 1 and stage 2 lie, on a reproduction run's cases.

For each case of the chosen part, with the run's amc+gul stage-1 model and its stage-2 model
(``deeptree.pipeline.repair``, as ``deeptree reproduce`` evaluates them):

* stage-1 false positives of the largest component, split into those touching the GT
  (within one voxel, 26-neighbourhood: a lumen drawn one voxel too wide) and the rest;
* what stage 2 adds to the stage-1 largest component, split into stage-1 voxels it joins
  (fragments) and voxels the stage-2 network draws itself (bridges), each with the share
  that lies in the GT;
* the CT values (HU) of those groups beside the GT lumen and the lung, for context.

Precision here is whole-volume (trachea and main bronchi included), unlike the paper-protocol
precision of the tables; the counts are what the tables' precision is made of.

    .venv/bin/python benchmarks/precision_breakdown.py --run runs/RUN/07_evaluation \\
        --part test --out /tmp/precision_breakdown.json

About 15 s per case on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish_report  # noqa: E402

from deeptree.checkpoints import selected_checkpoint
from deeptree.evaluation.paper import split_dataset
from deeptree.io import load_case  # noqa: E402
from deeptree.masks import largest_components  # noqa: E402
from deeptree.pipeline import repair
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.stage2.figures import repair_sources
from deeptree.stage2.predict import load_stage2_model


def breakdown(ct: np.ndarray, gt: np.ndarray, stage1: np.ndarray, final: np.ndarray) -> dict:
    """Voxel counts of one case (``deeptree.stage2.figures.repair_sources`` groups) and the median
    CT value (HU) of the groups that matter here."""
    labels = repair_sources(stage1, final, gt)
    counts = np.bincount(labels.ravel(), minlength=7)

    def median_hu(*codes):
        values = ct[np.isin(labels, codes)]
        return float(np.median(values)) if values.size else None

    return {
        "gt": int(gt.sum()),
        "stage1_voxels": int(largest_components(stage1, 1)[0].sum()),
        "stage1_fp": int(counts[1] + counts[2]),
        "stage1_fp_touching_gt": int(counts[1]),
        "stage1_fp_elsewhere": int(counts[2]),
        "stage2_joined_voxels": int(counts[3] + counts[4]),
        "stage2_joined_in_gt": int(counts[3]),
        "stage2_drawn_voxels": int(counts[5] + counts[6]),
        "stage2_drawn_in_gt": int(counts[5]),
        "hu_median_gt": float(np.median(ct[gt])),
        "hu_median_fp_touching_gt": median_hu(1),
        "hu_median_fp_elsewhere": median_hu(2),
        "hu_median_drawn": median_hu(5, 6),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a reproduction folder (cohort/, models/)")
    parser.add_argument("--part", choices=("train", "val", "test"), default="test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    model, meta = load_stage1_model(run / "models/stage1_amc_gul/last.pt")
    stage2 = load_stage2_model(selected_checkpoint(run / "models/stage2"))
    report: dict = {"run": str(run), "part": args.part, "cases": {}}
    for paths in getattr(split_dataset(run / "cohort"), args.part):
        case = load_case(paths.image, paths.label, case_id=paths.id)
        gt = np.asarray(case.label) > 0
        pred = predict_stage1(
            model, case.ct, meta["patch_size"], overlap=meta.get("overlap", 0.5), name=paths.id
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = repair(pred.mask, case.ct, stage2, name=paths.id)
        row = breakdown(case.ct, gt, pred.mask > 0, result.mask > 0)
        report["cases"][paths.id] = row
        print(
            f"{paths.id}: stage 1 {row['stage1_voxels']} voxels, {row['stage1_fp']} false "
            f"({row['stage1_fp_touching_gt']} touching the GT, median "
            f"{row['hu_median_fp_touching_gt']:.0f} HU; {row['stage1_fp_elsewhere']} elsewhere, "
            f"{row['hu_median_fp_elsewhere']:.0f} HU; GT lumen {row['hu_median_gt']:.0f} HU)"
        )
        print(
            f"  stage 2 joins {row['stage2_joined_voxels']} stage-1 voxels "
            f"({row['stage2_joined_in_gt']} in the GT) and draws {row['stage2_drawn_voxels']} "
            f"({row['stage2_drawn_in_gt']} in the GT)"
        )
    finish_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
