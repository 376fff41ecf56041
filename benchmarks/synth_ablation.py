"""Which randomisation families carry a synthetic-only model to real CT? Stage 1 trained with and
without each family of :mod:`deeptree.phantom.synth` (issue 33).

Run from the repository root::

    python benchmarks/synth_ablation.py                  # every arm, training seeds 0 and 1 (hours)
    python benchmarks/synth_ablation.py --quick          # minutes: every step on tiny settings
    python benchmarks/synth_ablation.py --steps report   # the tables from what is finished

The arms are trained at 2 mm, not at the demo's 1 mm (:data:`ABLATION`: the CPU budget).
Arms: ``all`` (every family), ``no <family>`` for each family, ``none`` (the run profiles'
look on adult chests). Each arm has its own cohort (:func:`demo_weights._cohort` with the arm's
families; every draw is made whatever the families, so the arms share their chests and trees,
except ``no body``, whose chests keep the adult size). In each arm, stage 1 (``amc+gul``) is
trained once per training seed with a short schedule, then run with one stage-2 model shared by
every arm (``--stage2``) through the transfer checks
(:func:`deeptree.transfer.transfer_report`: totalseg_chest, cip_ct64 as is and edited, CTs
simulated around atm_001). The shared stage-2 model is trained once, on the ``all`` arm's
cohort at the ablation's voxel size (``<work>/stage2``, unless ``--stage2`` names another).
Every step resumes what an interrupted run left in ``--work``.

The effect of a family is the paired difference ``all - no <family>`` (same training seed, same
check CT) with a two-level bootstrap interval (:func:`deeptree.evaluation.stats.paired_effect`);
"not resolved" when it spans zero. A model enters an effect only when its validation curve met
the flattening rule of the reference run (:mod:`deeptree.evaluation.convergence`: less than 1
point of validation TLD gained in its last quarter): a verdict from a model cut off while still
learning would be about the schedule, not the family. The report lists every model's
convergence. Writes ``benchmarks/records/synth_ablation.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import deeptree  # noqa: E402, F401, I001  (its thread policy must come before torch loads)
import numpy as np  # noqa: E402

import demo_weights  # noqa: E402
from deeptree.evaluation.convergence import convergence_rows  # noqa: E402
from deeptree.evaluation.stats import paired_effect  # noqa: E402
from deeptree.files import atomic_write  # noqa: E402
from deeptree.phantom.synth import FAMILIES  # noqa: E402

STEPS = ("cohort", "train", "evaluate", "report")

#: The ablation's arms: name -> randomised families.
ARMS = {
    "all": FAMILIES,
    **{f"no {f}": tuple(x for x in FAMILIES if x != f) for f in FAMILIES},
    "none": (),
}

#: The arms at 2 mm on a smaller cohort than the demo's (they are compared with each other, not
#: shipped). At the demo's 1 mm the 14 trainings and their transfer checks would take about 13
#: CPU core-hours (0.37 s per stage-1 step at 48^3 and 100 s per validation of a 1 mm chest on
#: one thread, measured 2026-12-08); at 2 mm a 32^3 patch sees the same 64 mm and each step and
#: check costs about a third to an eighth. What the ablation measures is therefore the effect
#: of each family at 2 mm; that it holds at 1 mm is not measured.
ABLATION = replace(
    demo_weights.ADULT, spacing_mm=2.0, n_train=12, n_test=0, patch1=(32, 32, 32),
    iterations1=8000, validate_every1=500, scale_ct_mm=2.0, scale_candidates_mm=(2.0,),
)  # fmt: skip
ABLATION_QUICK = replace(demo_weights.ADULT_QUICK, n_train=3, iterations1=20, n_test=0)

#: The check CTs of a transfer report whose TLD enters the paired effects, by kind.
KINDS = ("cip_ct64", "simulated")


def _folder(work: Path, arm: str) -> Path:
    return work / arm.replace(" ", "-")


def _say(message: str) -> None:
    print(f"[ablation {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _stage2_checkpoint(path: Path) -> Path:
    """The shared stage-2 checkpoint: ``path`` itself, or a training folder's selected model."""
    from deeptree.checkpoints import selected_checkpoint

    return selected_checkpoint(path) if path.is_dir() else path


def _shown(path: Path) -> str:
    """A path as the record shows it: relative to the repository where it lies inside."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def check_tlds(report: dict) -> dict[str, list[float]]:
    """The TLD of every check CT of a transfer report, in a fixed order, by kind.

    Parameters
    ----------
    report : dict
        :func:`deeptree.transfer.transfer_report`.

    Returns
    -------
    dict
        ``cip_ct64``: TLD (fraction) of the CT as is and of each edit that changed it (sorted by
        name); ``simulated``: TLD of every simulated CT, set by set (sorted by name).
    """
    cip = report["cip_ct64"]
    out = {
        "cip_ct64": [
            float(cip[name]["metrics"]["TLD"])
            for name in sorted(cip)
            if not cip[name].get("unchanged")
        ],
        "simulated": [
            float(case["TLD"])
            for name in sorted(report.get("simulated", {}))
            for case in report["simulated"][name]["cases"]
        ],
    }
    return out


def effects(reports: dict[str, dict[int, dict]], converged: set | None = None) -> list[dict]:
    """Paired effects of each family on the check CTs' TLD (points), per kind.

    Parameters
    ----------
    reports : dict arm -> {seed: transfer report}
        Only seeds present in both arms of a comparison are used.
    converged : set of (arm, seed), optional
        The models that met the flattening rule (:func:`arm_convergence`); when given, a seed
        enters a comparison only when both of its arms' models are in it.

    Returns
    -------
    list of dict
        ``family``, ``kind``, ``seeds``, ``cases``, ``left out`` (seeds of both arms whose
        models did not converge) and :func:`paired_effect`'s ``mean``, ``low``, ``high``
        (points) and ``verdict``; "not converged" (and no figures) when no seed is left;
        families whose arms are missing are left out.
    """
    rows = []
    for family in FAMILIES:
        with_, without = reports.get("all", {}), reports.get(f"no {family}", {})
        both = sorted(set(with_) & set(without))
        if not both:
            continue
        seeds = [
            s for s in both
            if converged is None or {("all", s), (f"no {family}", s)} <= converged
        ]  # fmt: skip
        for kind in KINDS:
            a = np.array([check_tlds(with_[s])[kind] for s in seeds]) * 100
            b = np.array([check_tlds(without[s])[kind] for s in seeds]) * 100
            row = {"family": family, "kind": kind, "seeds": len(seeds),
                   "left out": len(both) - len(seeds)}  # fmt: skip
            if not seeds:
                rows.append({**row, "cases": 0, "mean": None, "low": None, "high": None,
                             "verdict": "not converged"})  # fmt: skip
                continue
            if a.size == 0 or a.shape != b.shape:
                continue
            e = paired_effect(a, b)
            rows.append({**row, "cases": int(a.shape[1]),
                         **{k: e[k] for k in ("mean", "low", "high")},
                         "verdict": e["verdict"]})  # fmt: skip
    return rows


def arm_convergence(work: Path, arms, seeds, iterations: int) -> list[dict]:
    """The flattening rule on every trained arm model's validation curve.

    Parameters
    ----------
    work : Path
        The ablation's work folder (``<arm>/seed<k>/log.jsonl``).
    arms, seeds : iterables of the arm names and training seeds.
    iterations : int
        The schedule's stage-1 iterations (a model with fewer is "unfinished").

    Returns
    -------
    list of dict
        :func:`deeptree.evaluation.convergence.convergence_rows` rows, ``model`` named
        ``<arm>/seed<k>``, plus ``arm`` and ``seed``; models without a log are left out.
    """
    logs, where = {}, {}
    for arm in arms:
        for seed in seeds:
            log = _folder(work, arm) / f"seed{seed}" / "log.jsonl"
            if log.is_file():
                logs[f"{arm}/seed{seed}"] = log
                where[f"{arm}/seed{seed}"] = (arm, seed)
    rows = convergence_rows(logs, schedules=dict.fromkeys(logs, iterations))
    return [{**r, "arm": where[r["model"]][0], "seed": where[r["model"]][1]} for r in rows]


def arm_rows(reports: dict[str, dict[int, dict]]) -> list[dict]:
    """Per arm and seed: the totalseg_chest bar and generations, mean TLD of each kind (%)."""
    rows = []
    for arm, by_seed in reports.items():
        for seed, report in sorted(by_seed.items()):
            chest = report["totalseg_chest"]["as is"]
            tlds = check_tlds(report)
            rows.append({
                "arm": arm, "seed": seed, "trachea found": bool(chest["trachea_found"]),
                "generations": chest["generations_reached"],
                "volume_ml": round(float(chest["volume_ml"]), 1),
                **{f"{k} TLD": round(100 * float(np.mean(v)), 1) if v else None
                   for k, v in tlds.items()},
            })  # fmt: skip
    return rows


def markdown(record: dict) -> str:
    """The record as Markdown tables (every figure from the record)."""
    lines = [
        "# Randomisation ablation of the synthetic-only model (issue 33)",
        "",
        f"Written by `{record['command']}` on {record['written']}. Stage 1 `amc+gul`, "
        f"{record['settings']['iterations1']} iterations, {record['settings']['n_train'] - 1} "
        f"training chests per arm at {record['settings']['spacing_mm']:g} mm; stage 2 shared: "
        f"`{record['stage2']}`.",
        "",
        "## Per arm and training seed",
        "",
        "| arm | seed | totalseg_chest: trachea found | generations | volume (mL) | "
        "cip_ct64 TLD (mean of its CTs, %) | simulated TLD (mean, %) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in record["arms"]:
        lines.append(
            f"| {r['arm']} | {r['seed']} | {'yes' if r['trachea found'] else 'no'} | "
            f"{r['generations']} | {r['volume_ml']} | {r['cip_ct64 TLD']} | {r['simulated TLD']} |"
        )
    lines += [
        "",
        "## Effect of each family: all - no <family>, TLD points [95% CI]",
        "",
        "| family | check CTs | seeds x CTs | effect | verdict |",
        "|---|---|---|---|---|",
    ]
    for e in record["effects"]:
        effect = "-" if e["mean"] is None else (
            f"{e['mean']:+.1f} [{e['low']:+.1f}, {e['high']:+.1f}]"
        )  # fmt: skip
        left = f" ({e['left out']} left out: not converged)" if e.get("left out") else ""
        lines.append(
            f"| {e['family']} | {e['kind']} | {e['seeds']} x {e['cases']}{left} | {effect} | "
            f"{e['verdict']} |"
        )
    lines += [
        "",
        "## Convergence of each model (flattening rule: validation TLD gained less than 1 point "
        "in the last quarter)",
        "",
        "| model | iterations | best before last quarter (%) | end (%) | gain (points) | flat |",
        "|---|---|---|---|---|---|",
    ]
    for r in record.get("convergence", []):
        lines.append(
            f"| {r['model']} | {r['iterations']} | {r['best before last quarter']} | {r['end']} "
            f"| {r['gain']} | {r['flat']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: every step in minutes")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--stage2", help="the stage-2 checkpoint every arm shares (default: "
                        "the best or last checkpoint of <work>/stage2, trained by the train step)")  # fmt: skip
    parser.add_argument("--work", help="default runs/synth-ablation[-quick]")
    parser.add_argument(
        "--out", help="default benchmarks/records/synth_ablation (quick: in --work)"
    )
    parser.add_argument("--simulated", type=int, default=2, help="CTs per simulated set")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    base = ABLATION_QUICK if args.quick else ABLATION
    suffix = "-quick" if args.quick else ""
    work = Path(args.work) if args.work else ROOT / "runs" / f"synth-ablation{suffix}"
    out = Path(args.out) if args.out else (
        work / "synth_ablation" if args.quick else ROOT / "benchmarks" / "records" / "synth_ablation"
    )  # fmt: skip
    stage2 = Path(args.stage2) if args.stage2 else work / "stage2"  # a folder: its selected model
    progress = not args.no_progress
    arms = {name: ARMS[name] for name in args.arms}

    for arm, families in arms.items():
        settings = replace(base, families=families)
        folder = _folder(work, arm)
        if "cohort" in args.steps:
            _say(f"{arm}: cohort")
            demo_weights._cohort(settings, folder / "cohort", settings.n_train,
                                 settings.train_seed, progress)  # fmt: skip
        if "train" in args.steps:
            if arm == "all" and not args.stage2:
                _say("the shared stage 2, on the all arm's cohort")
                demo_weights._stage2(settings, folder / "cohort", work / "stage2", progress)
            for seed in args.seeds:
                _say(f"{arm}: stage 1, seed {seed}")
                demo_weights._stage1(replace(settings, seed=seed), folder / "cohort",
                                     folder / f"seed{seed}", progress)  # fmt: skip
    if "evaluate" in args.steps:
        from deeptree.transfer import simulated_sets, synth_simulated_sets, transfer_report

        sets = None
        for arm in arms:
            for seed in args.seeds:
                done = _folder(work, arm) / f"seed{seed}" / "transfer.json"
                model = done.parent / "last.pt"
                if done.is_file() or not model.is_file():
                    continue
                if sets is None:
                    spacing = base.scale_ct_mm
                    # the old phantoms' look (outside this generator) and this generator's
                    # draws pushed beyond their training ranges
                    sets = {
                        **simulated_sets(n=args.simulated, spacing_mm=spacing),
                        **synth_simulated_sets(n=args.simulated, spacing_mm=spacing),
                    }
                _say(f"{arm}: transfer checks, seed {seed}")
                report = transfer_report(model, _stage2_checkpoint(stage2), simulated=sets)
                text = json.dumps(report, indent=1, default=float)
                atomic_write(done, lambda tmp, text=text: Path(tmp).write_text(text))
    if "report" in args.steps:
        reports = {
            arm: {
                seed: json.loads(p.read_text())
                for seed in args.seeds
                if (p := _folder(work, arm) / f"seed{seed}" / "transfer.json").is_file()
            }
            for arm in arms
        }
        reports = {arm: r for arm, r in reports.items() if r}
        convergence = arm_convergence(work, arms, args.seeds, base.iterations1)
        converged = {(r["arm"], r["seed"]) for r in convergence if r["flat"] == "yes"}
        record = {
            "command": "python benchmarks/synth_ablation.py" + (" --quick" if args.quick else ""),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "settings": json.loads(json.dumps(base.__dict__, default=list)),
            "stage2": _shown(_stage2_checkpoint(stage2)) if stage2.exists() else None,
            "arms": arm_rows(reports),
            "effects": effects(reports, converged),
            "convergence": convergence,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, indent=1, default=float)
        atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
        md = markdown(record)
        atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(md))
        print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
