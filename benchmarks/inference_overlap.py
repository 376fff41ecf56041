"""Stage-1 sliding-window overlap: detection and time of trained models at several overlaps.

Loads every stage-1 model a reproduction run saved (``<run>/models/stage1_*/last.pt``), splits
its cohort as ``deeptree reproduce`` does, and predicts the chosen part (validation cases by
default, so that a setting chosen here is not chosen on the test cases) with each overlap.
Prints BD / TLD / precision (paper protocol), components of the raw mask and the inference time,
each the mean over the cases.

    .venv/bin/python benchmarks/inference_overlap.py --run runs/RUN/07_evaluation \\
        --overlap 0.25 --overlap 0.5 --part val --out /tmp/overlap.json

About 1 minute for the cpu profile's 5 models and 2 validation cases on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish_report  # noqa: E402

from deeptree.evaluation.paper import split_dataset
from deeptree.io import load_case  # noqa: E402
from deeptree.metrics import airway_metrics, prepare_ground_truth  # noqa: E402
from deeptree.stage1.predict import load_stage1_model, predict_stage1

KEYS = ("BD", "TLD", "precision", "n_components", "seconds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a reproduction folder (cohort/, models/)")
    parser.add_argument("--overlap", type=float, action="append", required=True)
    parser.add_argument("--part", choices=("train", "val", "test"), default="val")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    cases = getattr(split_dataset(run / "cohort"), args.part)
    print(f"{args.part} cases: {[c.id for c in cases]}")
    loaded = []
    for paths in cases:
        case = load_case(paths.image, paths.label, case_id=paths.id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "largest component kept" of a GT
            loaded.append((case, prepare_ground_truth(case.label > 0, case.spacing)))
    report: dict = {"run": str(run), "part": args.part, "cases": [c.id for c in cases]}
    for checkpoint in sorted(run.glob("models/stage1_*/last.pt")):
        model, meta = load_stage1_model(checkpoint)
        name = checkpoint.parent.name.removeprefix("stage1_")
        for overlap in args.overlap:
            rows = []
            for case, reference in loaded:
                t0 = time.perf_counter()
                pred = predict_stage1(model, case.ct, meta["patch_size"], overlap=overlap)
                seconds = time.perf_counter() - t0
                m = airway_metrics(pred.mask, reference, case.spacing)
                rows.append([m["BD"], m["TLD"], m["precision"], m["n_components"], seconds])
            mean = dict(zip(KEYS, np.mean(rows, axis=0).tolist(), strict=True))
            report[f"{name} overlap {overlap}"] = mean
            print(
                f"{name:8s} overlap {overlap:<4}: BD {mean['BD']:.3f}  TLD {mean['TLD']:.3f}  "
                f"precision {mean['precision']:.3f}  components {mean['n_components']:.1f}  "
                f"{mean['seconds']:.2f} s"
            )
    finish_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
