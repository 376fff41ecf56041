"""Notebook 06's stage-1 and stage-2 models on phantoms that no setting was chosen on.

Notebook 06 scores stage 2 on 3 held-out phantoms (seeds (1000, i)), and the stage-2 data
settings (``negative_fraction``) were chosen on those same phantoms. This script takes the
trained models of a notebook run (``<run>/05_stage1/run/last.pt`` and
``<run>/06_stage2/stage2/best.pt``, else ``last.pt``) to new phantoms (seeds ``(--seed, i)``, by default 2000,
never used anywhere else; ``--stage1`` / ``--stage2`` take other checkpoints, e.g. those of a
reproduction's ``models/``) and reports what notebook 06 reports on the stage-1 outputs:
components, BD, TLD, precision before and after stage 2 and the non-learned filler (paper
protocol), per case and as the mean.

    .venv/bin/python benchmarks/stage2_fresh_phantoms.py --run runs/RUN --cases 8 \\
        --out /tmp/stage2_fresh.json

About 10 s per cpu phantom on 2 cores.

``--combine`` compares how overlapping stage-2 crops are combined: ``mean`` is the package's
rule (``deeptree.stage2.predict.paste_patches``: mean breakage probability > 0.5); ``or`` is the
rule before 2026-11-26 (a voxel is breakage if any crop says so); ``gaussian`` weights each
crop's probabilities by nnU-Net's Gaussian importance map (sigma = patch / 8). The two
alternatives exist only here, to measure the choice.
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

from deeptree import pipeline
from deeptree.checkpoints import selected_checkpoint
from deeptree.evaluation.compare import compare_on_stage1, mean_by_method
from deeptree.phantom import generate_case  # noqa: E402
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.stage2.predict import box_overlap, load_stage2_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a run folder holding notebooks 05 and 06")
    parser.add_argument("--stage1", help="stage-1 last.pt (default: RUN/05_stage1/run/last.pt)")
    parser.add_argument(
        "--stage2", help="stage-2 checkpoint (default: best.pt, else last.pt, of RUN/06_stage2/stage2)"
    )
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument(
        "--combine", default="mean", choices=("mean", "or", "gaussian"),
        help="how overlapping stage-2 crops are combined (mean: the package's rule)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.run and not (args.stage1 and args.stage2):
        parser.error("give --run, or both --stage1 and --stage2")
    run = Path(args.run) if args.run else None
    stage1 = args.stage1 or run / "05_stage1/run/last.pt"
    stage2 = args.stage2 or selected_checkpoint(run / "06_stage2/stage2")
    if args.combine != "mean":
        pipeline.paste_patches = _alternative_paste(args.combine)
    model1, meta1 = load_stage1_model(stage1)
    model2 = load_stage2_model(stage2)
    cases = []
    for i in range(args.cases):
        case = generate_case(args.profile, (args.seed, i), case_id=f"FRESH_{i:03d}")
        pred = predict_stage1(
            model1, case.ct, meta1["patch_size"], overlap=meta1.get("overlap", 0.5)
        )
        cases.append(
            {"id": case.id, "ct": case.ct, "stage1": pred.mask, "gt": case.airway,
             "spacing": case.spacing}
        )  # fmt: skip
    connectors = {"stage 2": model2, "gap filler (straight)": "gapfill"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rows = compare_on_stage1(cases, connectors)
    means = mean_by_method(rows, keys=None, ignore_nan=False)
    for row in rows:
        print(
            f"{row['case']} {row['method']:>22}: components {row['n_components']:3d}  "
            f"BD {row['BD']:.3f}  TLD {row['TLD']:.3f}  precision {row['precision']:.3f}"
        )
    for method, m in means.items():
        print(
            f"mean {method:>22}: BD {m['BD']:.1%}  TLD {m['TLD']:.1%}  "
            f"precision {m['precision']:.1%}  added voxels {m['added_voxels']:.0f}"
        )
    drops = {
        row["case"]: next(
            r["precision"] for r in rows if r["case"] == row["case"] and r["method"] == "stage 1"
        )
        - row["precision"]
        for row in rows
        if row["method"] == "stage 2"
    }
    mean_drop = means["stage 1"]["precision"] - means["stage 2"]["precision"]
    print(
        f"stage 2 lowers precision by {100 * mean_drop:.1f} points on average "
        f"(per case {min(drops.values()) * 100:.1f} to {max(drops.values()) * 100:.1f})"
    )
    finish_report(
        {"stage1": str(stage1), "stage2": str(stage2), "seed": args.seed, "combine": args.combine,
         "rows": rows, "means": means,
         "precision_drop": mean_drop, "precision_drop_per_case": drops},
        args.out,
    )  # fmt: skip
    return 0


def _alternative_paste(combine: str):
    """A replacement for ``pipeline.paste_patches``: OR of the crops' own masks, or the
    Gaussian-weighted mean of their probabilities."""
    from monai.data.utils import compute_importance_map

    def paste(shape, patches):
        shape = tuple(int(n) for n in shape)
        hit = np.zeros(shape, dtype=bool)
        total = np.zeros(shape, dtype=np.float32)
        weight_sum = np.zeros(shape, dtype=np.float32)
        for p in patches:
            overlap = box_overlap(p.start, p.mask.shape, shape)
            if overlap is None:
                continue
            dst, src = overlap
            if combine == "or":
                hit[dst] |= p.mask[src]
            else:
                w = compute_importance_map(p.mask.shape, mode="gaussian", sigma_scale=0.125)
                w = w.numpy().astype(np.float32)[src]
                total[dst] += w * p.probability[src]
                weight_sum[dst] += w
        return hit if combine == "or" else total > 0.5 * weight_sum

    return paste


if __name__ == "__main__":
    raise SystemExit(main())
