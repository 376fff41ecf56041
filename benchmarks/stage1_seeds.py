"""Notebook 05's stage-1 training repeated with several training seeds: per-class scores.

The cohort and held-out phantoms are notebook 05's (``generate_cohort`` with seed 0 and
1000, ``NOTEBOOK_COHORT`` sizes), made in ``--work`` unless already there; only
``TrainConfig.seed`` (patch draws, augmentation, initial weights) changes between runs. Each
run trains the profile's variant for the profile's iterations and predicts the held-out
phantoms with the profile's sliding-window overlap. Prints BD / TLD / precision and, per
anatomy class, recall of the GT class by the airway mask and Dice of the predicted class;
also the class Dice on the training phantoms (``train_dice_*``: a head that stays silent
there too failed to learn, it did not overfit).

    .venv/bin/python benchmarks/stage1_seeds.py --seed 0 --seed 1 --seed 2 \\
        --work /tmp/stage1_seeds --out /tmp/stage1_seeds.json

About 2-3 minutes per seed for the cpu profile on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish_report  # noqa: E402

from deeptree import io
from deeptree.config import (
    NOTEBOOK_COHORT,
    get_config,  # noqa: E402
)
from deeptree.evaluation.compare import class_scores, heldout_comparison
from deeptree.phantom import generate_cohort  # noqa: E402
from deeptree.stage1.cache import load_cohort
from deeptree.stage1.data import split_cases
from deeptree.stage1.predict import predict_stage1
from deeptree.stage1.task import stage1_task
from deeptree.train import train

KEYS = ("BD", "TLD", "precision", "recall_1", "recall_2", "dice_1", "dice_2")


def training_class_dice(model, cases, net_cfg) -> dict[str, float]:
    """Mean Dice of predicted class 1 and 2 against the labels of prepared training cases."""
    scores = []
    for case in cases:
        pred = predict_stage1(
            model,
            case.image,
            net_cfg.patch_size,
            overlap=net_cfg.inference_overlap,
            normalized=True,
        )
        scores.append(class_scores(pred.classes, pred.mask, np.asarray(case.label)))
    return {f"train_dice_{c}": float(np.nanmean([s[f"dice_{c}"] for s in scores])) for c in (1, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, action="append", required=True)
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--variant", default="amc+gul")
    parser.add_argument("--work", default="/tmp/stage1_seeds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*smaller 6-connected component.*")
    work = Path(args.work)
    config = get_config(args.profile)
    net_cfg = config.stage1_net
    n_train, n_test = NOTEBOOK_COHORT[args.profile]
    generate_cohort(work / "cohort", args.profile, n_train, seed=0, progress=False)
    generate_cohort(work / "heldout", args.profile, n_test, seed=1000, progress=False)
    cases = load_cohort(work / "cohort", work / "cache")
    test_paths = io.list_cases(work / "heldout")
    report: dict = {"profile": args.profile, "variant": args.variant, "runs": {}}
    for seed in args.seed:
        cfg = replace(config.stage1_train, seed=seed)
        train_cases, val_cases = split_cases(cases, cfg.val_cases)
        torch.manual_seed(seed)
        task = stage1_task(train_cases, val_cases, args.variant, net_cfg, cfg, profile=args.profile)
        result = train(task, cfg, work / f"run_seed{seed}", progress=False)
        rows, _ = heldout_comparison(
            task.model.eval(),
            test_paths,
            net_cfg.patch_size,
            overlap=net_cfg.inference_overlap,
            cache_dir=work / "cache_heldout",
        )
        stage1 = [r for r in rows if r["method"] == "stage 1"]
        mean = {k: float(np.nanmean([r[k] for r in stage1])) for k in KEYS}
        mean |= training_class_dice(task.model, train_cases, net_cfg)
        report["runs"][str(seed)] = {**mean, "train_seconds": round(result.seconds, 1)}
        print(
            f"seed {seed}: "
            + "  ".join(f"{k} {v:.3f}" for k, v in mean.items())
            + f"  ({result.seconds:.0f} s training)",
            flush=True,
        )
    finish_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
