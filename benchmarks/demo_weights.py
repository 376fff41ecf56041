"""Train, evaluate and ship the demo weights (``make demo-weights``).

Run from the repository root::

    python benchmarks/demo_weights.py                 # the shipped model (hours on 2 CPU cores)
    python benchmarks/demo_weights.py --quick         # a minutes-long model: every step runs
    python benchmarks/demo_weights.py --steps train   # only train (resumes), no export
    python benchmarks/demo_weights.py --no-variation  # the control: phantoms not randomised
    python benchmarks/demo_weights.py --steps scale evaluate  # rechoose the real-CT voxel size
    python benchmarks/demo_weights.py --adult         # adult chests, domain-randomised CT

Steps (each resumes what an earlier, interrupted run left in ``--work``):

1. ``cohort``: training phantoms from :func:`deeptree.phantom.varied.generate_varied_cohort`
   (the ``cpu`` phantom at a finer voxel size, with point spread, noise, HU offsets,
   parenchyma and chest size varied per case; ``--no-variation`` keeps the cpu settings), or
   with ``--adult`` from :func:`deeptree.phantom.synth_cases.generate_synth_cohort`: adult
   chests at 1 mm whose CT is synthesised from the whole-chest label map with every
   randomisation family of :mod:`deeptree.phantom.synth` (``--families`` keeps a subset: the
   ablation), plus CTs synthesised around the real atm_001 tree;
2. ``train``: stage 1 (anatomy-aware classes + General Union Loss) and stage 2 with
   :func:`deeptree.train.train` (checkpoints every few hundred iterations: a killed run
   continues where it stopped);
3. ``export``: weights-only copies into ``--out`` (``deeptree/weights`` by default);
4. ``scale``: the voxel size real CT is run at, chosen on validation CTs simulated around the
   real atm_001 tree at its real size (:mod:`deeptree.real_scale`; none of them is a sample
   the card reports) and recorded in both checkpoints as their anatomical scale (``--adult``:
   the phantoms have an adult's size, so the only candidate is the training voxel size);
5. ``evaluate``: the exported model on a synthetic test set (another seed than training) with
   the paper's metrics (:func:`deeptree.metrics.airway_metrics`), and on the real samples
   (:mod:`deeptree.real_ct`), and whether each stage's validation curve flattened
   (:mod:`deeptree.evaluation.convergence`); writes ``card.json`` and ``MODEL_CARD.md`` beside
   the weights (:mod:`deeptree.model_card`). Every figure of the card comes from this step and
   the next;
6. ``transfer``: the transfer checks of issue 33 (:func:`deeptree.transfer.transfer_report`:
   the real samples as they are and edited, CTs simulated around atm_001 with image settings
   outside the training draws) and the issue's bars, added to the card (the report so far is
   kept in ``--work``/``transfer.json`` after each CT);
7. ``card``: ``MODEL_CARD.md`` rewritten from ``card.json`` (no new figures: for a change of
   the card's text, or to name the randomisation ablation's record once it exists).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deeptree  # noqa: E402, I001  (its thread policy must come before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from deeptree.config import NetworkConfig, get_config, stage2_data_config  # noqa: E402
from deeptree.demo import CARD_JSON, CARD_NAME, STAGE1_NAME, STAGE2_NAME, export_weights  # noqa: E402
from deeptree.files import atomic_write  # noqa: E402
from deeptree.phantom.synth import FAMILIES  # noqa: E402
from deeptree.phantom.varied import Variation, generate_varied_cohort  # noqa: E402
from deeptree.real_scale import CANDIDATE_SPACINGS_MM  # noqa: E402

STEPS = ("cohort", "train", "export", "scale", "evaluate", "transfer", "card")


@dataclass(frozen=True)
class DemoSettings:
    """Everything that fixes the demo model (recorded whole in the card)."""

    base_profile: str = "cpu"
    spacing_mm: float = 0.8  # the cpu profile's phantoms are at 1 mm
    n_train: int = 16  # the last one is held out for validation during training
    n_test: int = 4
    train_seed: int = 1900
    test_seed: int = 1901  # never a training seed
    variant: str = "amc+gul"
    filters: tuple[int, ...] = (8, 16, 32, 64)
    patch1: tuple[int, int, int] = (48, 48, 48)
    patch2: tuple[int, int, int] = (32, 32, 32)
    iterations1: int = 5000
    iterations2: int = 1000
    batch_size: int = 2
    seed: int = 0
    varied: bool = True
    scale_cases: int = 3  # validation CTs around atm_001 (deeptree.real_scale)
    scale_seed: int = 2000
    scale_ct_mm: float = 1.0
    scale_candidates_mm: tuple[float, ...] = CANDIDATE_SPACINGS_MM
    transfer_cts: int = 3  # CTs per simulated set of the transfer step
    validate_every1: int | None = None  # stage 1; None: every 500 iterations (fewer: less)
    generator: str = "varied"  # or "synth": deeptree.phantom.synth_cases
    tree_profile: str = "standard"  # synth: the tree growth (lumen down to 1 mm)
    families: tuple[str, ...] = FAMILIES  # synth: the randomised families
    real_trees: tuple[str, ...] = ()  # synth: real masks (below data/samples) in the cohort
    real_cases: int = 0  # synth: CTs per real tree


#: Adult chests at 1 mm (segmental bronchi of 4-6 mm are 4-6 voxels wide), CT synthesised from
#: the whole-chest label map; real CT runs at its own size (anatomical scale 1). The one real
#: tree of the samples, atm_001, stays out of training: it is the only held-out real anatomy
#: the checks have, and its licence (ATM'22, CC BY-NC-SA 4.0) would bind the shipped weights
#: (``--real-trees atm_001/airway.nii.gz`` puts it in).
ADULT = DemoSettings(
    spacing_mm=1.0, n_train=24, n_test=4, train_seed=3300, test_seed=3301, patch1=(48, 48, 48),
    iterations1=20000, iterations2=2000, scale_candidates_mm=(1.0,), generator="synth",
    validate_every1=1000,
)  # fmt: skip
# Validation every 1000 iterations: one validation of a 1 mm adult chest (about 430 x 310 x 290
# voxels, sliding window) took 100 s on one thread, as long as 270 training steps (0.37 s at
# 48^3, batch 2), both measured on this 2-core EPYC with two other trainings running
# (2026-12-08); 20 checks are enough for the flattening rule.
ADULT_QUICK = replace(
    ADULT, spacing_mm=2.5, n_train=3, n_test=1, filters=(4, 8, 16, 32), patch1=(32, 32, 32),
    iterations1=20, iterations2=10, batch_size=1, scale_cases=1, scale_ct_mm=2.5,
    scale_candidates_mm=(2.5,), tree_profile="smoke", transfer_cts=1,
)  # fmt: skip


QUICK = DemoSettings(
    spacing_mm=1.6, n_train=3, n_test=1, filters=(4, 8, 16, 32), patch1=(32, 32, 32), iterations1=20,
    iterations2=10, batch_size=1, scale_cases=1, scale_ct_mm=3.0, scale_candidates_mm=(3.2, 4.8),
    transfer_cts=1,
)  # fmt: skip


def _cohort(settings: DemoSettings, root: Path, n: int, seed: int, progress: bool, *, test=False):
    """The training (or test) phantoms of ``settings``' generator, resumably."""
    if settings.generator == "synth":
        from deeptree.locations import samples_dir
        from deeptree.phantom.synth_cases import generate_synth_cohort

        trees = () if test else tuple(samples_dir() / p for p in settings.real_trees)
        return generate_synth_cohort(
            root, n, seed, base=settings.tree_profile, spacing_mm=settings.spacing_mm,
            families=settings.families, real_trees=trees, real_cases=settings.real_cases,
            progress=progress,
        )  # fmt: skip
    variation = Variation() if settings.varied else None
    return generate_varied_cohort(
        root, settings.base_profile, n, seed, spacing_mm=settings.spacing_mm,
        variation=variation, progress=progress,
    )  # fmt: skip


def _trained_on(settings: DemoSettings) -> str:
    """One phrase for the card and the weights: what the model learned from."""
    if settings.generator == "synth":
        real = settings.real_cases * len(settings.real_trees)
        return (
            f"{settings.n_train - 1 + real} adult chest CTs synthesised from label maps "
            f"({settings.n_train - 1} grown trees, {real} around the real atm_001 tree; "
            f"randomised: {', '.join(settings.families) or 'nothing'}; "
            f"{settings.spacing_mm:g} mm, seed {settings.train_seed})"
        )
    return (
        f"{settings.n_train - 1} {'varied ' if settings.varied else ''}phantoms "
        f"(profile {settings.base_profile} at {settings.spacing_mm:g} mm, seed "
        f"{settings.train_seed})"
    )


def _split(settings: DemoSettings, cases: list) -> tuple[list, list]:
    """Training and validation cases: the last grown phantom is held out (CTs around a real
    tree, numbered after the grown ones, always train)."""
    held = f"PHANTOM_{settings.n_train - 1:03d}"
    val = [c for c in cases if c.id == held]
    if not val:
        raise SystemExit(f"the validation case {held} is not in the cohort")
    return [c for c in cases if c.id != held], val


def _stage1(settings: DemoSettings, cohort: Path, run: Path, progress: bool):
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.task import stage1_task
    from deeptree.train import train

    cfg = get_config(settings.base_profile)
    net = NetworkConfig(filters=settings.filters, patch_size=settings.patch1)
    every = max(1, min(250, settings.iterations1))
    train_cfg = replace(
        cfg.stage1_train,
        iterations=settings.iterations1,
        batch_size=settings.batch_size,
        validate_every=settings.validate_every1 or every * 2,
        checkpoint_every=every,
        seed=settings.seed,
        val_cases=1,
    )
    cases = load_cohort(cohort, cohort / ".cache_stage1", progress=progress)
    train_cases, val_cases = _split(settings, cases)
    task = stage1_task(
        train_cases, val_cases, settings.variant, net, train_cfg, profile="demo", device="cpu"
    )
    return train(task, train_cfg, run, resume=True, device="cpu", progress=progress)


def _stage2(settings: DemoSettings, cohort: Path, run: Path, progress: bool):
    from deeptree.stage2.task import load_sources, stage2_task
    from deeptree.train import train

    cfg = get_config(settings.base_profile)
    net = NetworkConfig(filters=settings.filters, patch_size=settings.patch2)
    every = max(1, min(100, settings.iterations2))
    train_cfg = replace(
        cfg.stage2_train,
        iterations=settings.iterations2,
        batch_size=settings.batch_size,
        validate_every=every * 2,
        checkpoint_every=every,
        seed=settings.seed,
    )
    sources = load_sources(cohort, progress=progress)
    train_src, val_src = _split(settings, sources)
    task = stage2_task(
        train_src, val_src, net, train_cfg, data=stage2_data_config(settings.base_profile),
        breakage=cfg.breakage, attention=cfg.attention, profile="demo", device="cpu",
    )  # fmt: skip
    return train(task, train_cfg, run, resume=True, device="cpu", progress=progress)


def _choose_scale(settings: DemoSettings, out: Path, cache: Path) -> dict:
    """Choose the real-CT voxel size on the validation CTs; record it in both checkpoints."""
    from deeptree.demo import record_anatomical_scale
    from deeptree.real_scale import choose_spacing, rows_as_dicts, sweep_spacings, validation_cts
    from deeptree.stage1.predict import load_stage1_model
    from deeptree.stage2.predict import load_stage2_model

    cts, tree = validation_cts(
        settings.scale_cases, settings.scale_seed, cache=cache, spacing_mm=settings.scale_ct_mm
    )
    stage1 = load_stage1_model(out / STAGE1_NAME, "cpu")
    stage2 = load_stage2_model(out / STAGE2_NAME, "cpu")
    rows = sweep_spacings(stage1, stage2, cts, tree, settings.scale_candidates_mm)
    chosen = choose_spacing(rows)
    scale = settings.spacing_mm / chosen.spacing_mm
    validation = {
        "rule": "highest mean TLD (ATM'22 protocol; ties: precision)",
        "cases": f"{settings.scale_cases} CTs simulated around atm_001 at "
        f"{settings.scale_ct_mm:g} mm, seeds {settings.scale_seed}-"
        f"{settings.scale_seed + settings.scale_cases - 1}",
        "rows": rows_as_dicts(rows),
        "chosen_mm": chosen.spacing_mm,
        "anatomical_scale": scale,
        "orientation": "RAS",  # chosen on CTs the model read in RAS (issue 29)
    }
    for name in (STAGE1_NAME, STAGE2_NAME):
        record_anatomical_scale(out / name, scale, validation)
    return validation


def _timing(run: Path, iterations: int, previous: dict | None = None) -> dict:
    """Training time and convergence from the run's log: iterations, wall seconds summed over
    the calls (a resumed run's log restarts its ``seconds`` at each call) and the flattening
    rule of :mod:`deeptree.evaluation.convergence` against the schedule's ``iterations``.
    Without the log (a rerun of the later steps where the training folder is gone), the
    figures of the card in place."""
    from deeptree.evaluation.convergence import convergence_rows, training_seconds
    from deeptree.train import read_log

    log = run / "log.jsonl"
    if not log.is_file() and previous is not None:
        return previous
    entries = [e for e in read_log(log) if "loss" in e]
    rows = convergence_rows({run.name: log}, schedules={run.name: iterations})
    keys = ("score", "checks", "best before last quarter", "end", "gain", "flat")
    return {
        "iterations": max((int(e["iteration"]) for e in entries), default=0),
        "seconds": round(training_seconds(entries), 1),
        "convergence": {k: rows[0][k] for k in keys} if rows else None,
    }


#: The simulated set of the transfer checks whose image settings lie outside the training
#: draws, by generator (the bar of issue 33 is on its mean TLD).
HELD_OUT_SET = {"synth": "beyond the synthesised draws", "varied": "outside the demo draws"}

#: Where the randomisation ablation writes its tables (``benchmarks/synth_ablation.py``).
ABLATION_RECORD = "benchmarks/records/synth_ablation.md"


def _transfer_sets(settings: DemoSettings) -> dict:
    """The CTs simulated around atm_001 for the transfer step: the generator's own draws
    pushed beyond their training ranges, at the voxel size of the scale step's CTs."""
    from deeptree.transfer import simulated_sets, synth_simulated_sets

    n, spacing = settings.transfer_cts, settings.scale_ct_mm
    if settings.generator == "synth":
        return synth_simulated_sets(n=n, spacing_mm=spacing)
    return simulated_sets(n=n, spacing_mm=spacing)


def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=1, default=float)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a minutes-long model (checks)")
    parser.add_argument("--no-variation", action="store_true", help="phantoms not randomised")
    parser.add_argument(
        "--adult", action="store_true",
        help="adult chests at 1 mm, CT synthesised from label maps (deeptree.phantom.synth)",
    )  # fmt: skip
    parser.add_argument(
        "--real-trees", nargs="+", metavar="MASK",
        help="with --adult: real airway masks below data/samples to synthesise 3 CTs each around",
    )  # fmt: skip
    parser.add_argument(
        "--families", nargs="*", choices=FAMILIES,
        help="with --adult: randomise only these families (the ablation; none: nothing)",
    )  # fmt: skip
    parser.add_argument("--work", help="work folder (default runs/demo-weights[-quick])")
    parser.add_argument("--out", help="where the weights and card go (default deeptree/weights)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument(
        "--only-stage", type=int, choices=(1, 2),
        help="the train step trains this stage only (run the two stages in two processes)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.adult:
        settings = ADULT_QUICK if args.quick else ADULT
        if args.families is not None:
            settings = replace(settings, families=tuple(args.families))
        if args.real_trees:
            settings = replace(settings, real_trees=tuple(args.real_trees), real_cases=3)
    elif args.families is not None or args.real_trees:
        raise SystemExit("--families and --real-trees need --adult")
    else:
        settings = QUICK if args.quick else DemoSettings()
    if args.no_variation:
        settings = replace(settings, varied=False, families=())
    ablated = settings.generator == "synth" and settings.families != FAMILIES
    suffix = (
        ("-adult" if args.adult else "")
        + ("-quick" if args.quick else "")
        + ("-control" if args.no_variation else "")
        + (
            "-" + "+".join(settings.families or ("none",))
            if ablated and not args.no_variation
            else ""
        )
        + ("-real" if args.real_trees else "")
    )
    work = Path(args.work) if args.work else ROOT / "runs" / f"demo-weights{suffix}"
    out = Path(args.out) if args.out else ROOT / "deeptree" / "weights"
    progress = not args.no_progress
    work.mkdir(parents=True, exist_ok=True)
    variation = Variation() if settings.varied and settings.generator == "varied" else None
    cohort, test = work / "cohort", work / "test"

    if "cohort" in args.steps:
        _cohort(settings, cohort, settings.n_train, settings.train_seed, progress)
    if "train" in args.steps:
        torch.use_deterministic_algorithms(False)
        if args.only_stage in (None, 1):
            r1 = _stage1(settings, cohort, work / "stage1", progress)
            print(f"stage 1: {r1.iteration} iterations, {r1.checkpoint}", flush=True)
        if args.only_stage in (None, 2):
            r2 = _stage2(settings, cohort, work / "stage2", progress)
            print(f"stage 2: {r2.iteration} iterations, {r2.checkpoint}", flush=True)
    trained_on = _trained_on(settings)
    if "export" in args.steps:
        from deeptree.checkpoints import selected_checkpoint

        out.mkdir(parents=True, exist_ok=True)
        demo = {"trained_on": trained_on, "settings": json.loads(json.dumps(asdict(settings)))}
        export_weights(work / "stage1" / "last.pt", out / STAGE1_NAME, demo)
        # stage 2: best.pt, the model with the best validation gap Dice (stage2_task's select)
        second = selected_checkpoint(work / "stage2")
        export_weights(second, out / STAGE2_NAME, {**demo, "from": second.name})
        print(f"exported to {out}", flush=True)
    if "scale" in args.steps:
        chosen = _choose_scale(settings, out, work / "scale-validation")
        print(f"real CT runs at {chosen['chosen_mm']:g} mm (anatomical scale "
              f"{chosen['anatomical_scale']:.3f})", flush=True)  # fmt: skip
    if "evaluate" in args.steps:
        from deeptree.checkpoints import load_checkpoint
        from deeptree.model_card import write_card
        from deeptree.real_ct import evaluate_demo

        _cohort(settings, test, settings.n_test, settings.test_seed, progress, test=True)
        figures = evaluate_demo(out / STAGE1_NAME, out / STAGE2_NAME, test)
        card_file = out / CARD_JSON
        previous = json.loads(card_file.read_text()) if card_file.is_file() else {}
        card = {
            "settings": asdict(settings),
            "variation": None if variation is None else asdict(variation),
            "generator": settings.generator,
            "trained_on": trained_on,
            "command": "python benchmarks/demo_weights.py"
            + (" --adult" if args.adult else "")
            + (" --quick" if args.quick else "")
            + (" --no-variation" if args.no_variation else "")
            + (" --families " + " ".join(settings.families) if ablated else "")
            + (" --real-trees " + " ".join(settings.real_trees) if args.real_trees else ""),
            "training": {
                stage: _timing(work / stage, planned, previous.get("training", {}).get(stage))
                for stage, planned in (
                    ("stage1", settings.iterations1),
                    ("stage2", settings.iterations2),
                )
            },  # fmt: skip
            "stage2_from": load_checkpoint(out / STAGE2_NAME)["meta"]["demo"].get("from"),
            "scale": load_checkpoint(out / STAGE1_NAME)["meta"]["demo"].get("scale_validation"),
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpus": __import__("os").cpu_count(),
                "torch": torch.__version__,
                "deeptree": deeptree.__version__,
            },
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            **figures,
        }
        if settings.generator == "synth" and (ROOT / ABLATION_RECORD).is_file():
            card["ablation"] = ABLATION_RECORD
        _write_json(out / CARD_JSON, card)
        write_card(card, out / CARD_NAME)
        print(f"card: {out / CARD_NAME}", flush=True)
    if "transfer" in args.steps:
        from deeptree.model_card import write_card
        from deeptree.transfer import transfer_checks, transfer_report

        partial = work / "transfer.json"
        report = transfer_report(
            out / STAGE1_NAME, out / STAGE2_NAME, simulated=lambda: _transfer_sets(settings),
            on_step=lambda so_far: _write_json(partial, so_far),
        )  # fmt: skip
        _write_json(partial, report)
        card = json.loads((out / CARD_JSON).read_text())
        card["transfer"] = report
        card["transfer_checks"] = transfer_checks(report, HELD_OUT_SET[settings.generator])
        _write_json(out / CARD_JSON, card)
        write_card(card, out / CARD_NAME)
        print(f"transfer checks added to {out / CARD_NAME}", flush=True)
    if "card" in args.steps and not {"evaluate", "transfer"} & set(args.steps):
        from deeptree.model_card import write_card

        card = json.loads((out / CARD_JSON).read_text())
        if settings.generator == "synth" and (ROOT / ABLATION_RECORD).is_file():
            card["ablation"] = ABLATION_RECORD
            _write_json(out / CARD_JSON, card)
        write_card(card, out / CARD_NAME)
        print(f"card rewritten from {out / CARD_JSON}", flush=True)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    raise SystemExit(main())
