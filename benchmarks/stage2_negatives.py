"""Stage 2 trained with different shares of negative crops, scored on a trained stage 1.

Notebook 06's setting (cpu profile, its 6 training phantoms, 1000 iterations) with the
``Stage2DataConfig`` fields ``negative_fraction`` and ``fragments_per_gap`` overridden; then
the two figures issue 8 asks for on 3 held-out phantoms (seeds (1000, i)): gap repair on
simulated breakages (held-out samples made with the profile's default data config), and BD /
TLD / precision of a trained stage-1 model's masks before and after stage 2.

    .venv/bin/python benchmarks/stage2_negatives.py --stage1 RUN/05_stage1/run/last.pt \\
        --config 0.25,0.5 --config 0.5,0.5 --config 0.5,1.0 --out /tmp/s2neg

(``--config NEGATIVE_FRACTION,FRAGMENTS_PER_GAP``; each trains one model, about 2-3 minutes on
2 cores.) Prints one block per configuration and writes ``--out/<config>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deeptree.config import (
    NOTEBOOK_COHORT,
    get_config,  # noqa: E402
    stage2_settings,
)
from deeptree.evaluation.compare import compare_on_stage1, mean_by_method
from deeptree.phantom import generate_case  # noqa: E402
from deeptree.stage1.predict import load_stage1_model, predict_stage1
from deeptree.stage2.data import simulate_stage2_sample
from deeptree.stage2.task import evaluate_gap_repair, phantom_sources, source_from_case, stage2_task
from deeptree.train import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage1", required=True, help="trained stage-1 checkpoint (last.pt)")
    parser.add_argument("--config", action="append", required=True, help="NEG,FRAG")
    parser.add_argument("--out", default="/tmp/s2neg")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, help="stage-2 training length (default: cpu's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile, seed = "cpu", 0
    run = get_config(profile)
    net_cfg, train_cfg, default_data = stage2_settings(profile)
    if args.iterations:
        train_cfg = replace(train_cfg, iterations=args.iterations)
    n_train, n_test = NOTEBOOK_COHORT[profile]
    sources = phantom_sources(profile, [(seed, i) for i in range(n_train)])
    test_cases = [
        generate_case(profile, (seed + 1000, i), case_id=f"HELDOUT_{i:03d}") for i in range(n_test)
    ]
    test_sources = [source_from_case(c) for c in test_cases]
    rngs = [np.random.default_rng([seed, 5000, i]) for i in range(2 * n_test)]
    samples = [
        simulate_stage2_sample(s, rngs[2 * i + j], default_data, run.breakage, run.attention)
        for i, s in enumerate(test_sources)
        for j in range(2)
    ]
    model1, meta1 = load_stage1_model(args.stage1, "cpu")
    cases = []
    for case in test_cases:
        pred = predict_stage1(model1, case.ct, meta1["patch_size"], overlap=meta1.get("overlap", 0.5))  # fmt: skip
        cases.append({"id": case.id, "ct": case.ct, "stage1": pred.mask, "gt": case.airway, "spacing": case.spacing})  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for config in args.config:
        negative, fragments = (float(v) for v in config.split(","))
        data = replace(default_data, negative_fraction=negative, fragments_per_gap=fragments)
        task = stage2_task(
            sources[:-1], sources[-1:], net_cfg, train_cfg, data=data,
            breakage=run.breakage, attention=run.attention, profile=profile,
        )  # fmt: skip
        start = time.perf_counter()
        train(task, train_cfg, out / f"model_{config}", resume=True, progress=False)
        seconds = time.perf_counter() - start
        model2 = (task.model.eval(), task.meta)
        gap = evaluate_gap_repair(samples, model2)
        means = mean_by_method(
            compare_on_stage1(cases, {"stage 2": model2}), keys=None, ignore_nan=False
        )
        print(f"negative_fraction {negative}, fragments_per_gap {fragments} ({seconds:.0f} s): "
              f"gaps repaired {gap['repaired']}/{gap['gaps']}, fragments joined "
              f"{gap['fragments_joined']}/{gap['fragments']}")  # fmt: skip
        for method, m in means.items():
            print(f"  {method}: components {m['n_components']:.1f}, BD {m['BD']:.1%}, "
                  f"TLD {m['TLD']:.1%}, precision {m['precision']:.1%}, added {m['added_voxels']:.0f}")  # fmt: skip
        record = {"negative_fraction": negative, "fragments_per_gap": fragments,
                  "train_seconds": seconds, "gap_repair": gap, "on_stage1_outputs": means}  # fmt: skip
        (out / f"{config}.json").write_text(json.dumps(record, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
