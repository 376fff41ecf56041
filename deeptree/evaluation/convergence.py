"""Has a training converged? The flattening rule of the reference run (issue 32).

A model is trained "until its validation curve flattens" when its validation score gained
less than :data:`FLAT_POINTS` points over the last :data:`LAST_PART` of its training: the
score at the last check minus the best score of the checks up to 75% of the iterations
(the best, not the check at 75%, so that a noisy dip there is not counted as a gain). The
score is the validation TLD of a stage-1 model and the validation gap Dice of a stage-2
model (``deeptree.stage2.task``), both in percent. A model whose score fell in the last
quarter meets the rule too (it stopped gaining; the fall is printed).

The poly schedule brings the learning rate to 0 at the end, so any model slows down in its
last quarter; the rule asks that it has stopped *gaining*, which a model cut off early does
not (the validation TLD of several models of ``results/20261207-cpu-synthetic``, 2000
stage-1 iterations, still rises in their last quarter: its ``training_curves.csv``).

Training time: the ``seconds`` of a log restart at each resume; :func:`training_seconds`
adds up the segments. CPU hours are wall hours times the torch threads of the training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from deeptree.io import InputError
from deeptree.train import read_log

__all__ = [
    "FLAT_POINTS",
    "LAST_PART",
    "convergence_rows",
    "convergence_text",
    "last_part_gain",
    "model_logs",
    "never_learned",
    "plot_convergence",
    "plot_validation_curves",
    "silent_stage2_flags",
    "training_seconds",
]

#: Points of validation score (percent) a converged model may still gain in its last part.
FLAT_POINTS = 1.0
#: The last part of training the rule looks at (a fraction of the iterations).
LAST_PART = 0.25
#: The validation score of each stage, in the log's ``val`` entries (fractions).
SCORE_KEYS = ("TLD", "gap_dice")


def training_seconds(entries: Sequence[dict]) -> float:
    """Wall seconds of a training from its log, across resumes.

    Parameters
    ----------
    entries : sequence of dict
        :func:`deeptree.train.read_log` entries; the step entries carry ``seconds`` since
        the start of their call, which restart (fall) when the run was resumed.

    Returns
    -------
    float
        The sum over calls of each call's last ``seconds`` (0.0 without timed steps).
    """
    total, last = 0.0, None
    for e in entries:
        if "seconds" not in e:
            continue
        value = float(e["seconds"])
        if last is not None and value < last:  # a resumed call started its clock again
            total += last
        last = value
    return total + (last or 0.0)


def last_part_gain(
    checks: Sequence[tuple[int, float]], iterations: int, last_part: float = LAST_PART
) -> dict:
    """The gain of a validation curve over its last part.

    Parameters
    ----------
    checks : sequence of (iteration, score)
        Validation checks in iteration order; score a fraction (TLD, gap Dice).
    iterations : int
        Iterations of the training.
    last_part : float in (0, 1)

    Returns
    -------
    dict
        ``before`` (best score of the checks at or before ``(1 - last_part) * iterations``),
        ``end`` (score of the last check), ``gain`` (end - before), all in percent, and
        ``flat`` (gain < :data:`FLAT_POINTS`); the values are None (``flat`` None) when the
        curve has no check in the first part or its last check is not at the end.
    """
    if not 0 < last_part < 1:
        raise InputError(f"last_part must be in (0, 1), got {last_part}")
    cut = (1 - last_part) * iterations
    before = [s for it, s in checks if it <= cut and s is not None]
    if not before or not checks or checks[-1][0] < iterations or checks[-1][1] is None:
        return {"before": None, "end": None, "gain": None, "flat": None}
    best, end = 100 * max(before), 100 * checks[-1][1]
    gain = end - best
    return {"before": best, "end": end, "gain": gain, "flat": gain < FLAT_POINTS}


def convergence_rows(
    logs: Mapping[str, str | os.PathLike], threads: Mapping | None = None,
    schedules: Mapping | None = None,
) -> list[dict]:  # fmt: skip
    """One row per model: its validation score's gain over the last quarter and its time.

    Parameters
    ----------
    logs : mapping
        Model name (``seed0/amc``, ``seed0/stage2`` ...) -> its ``log.jsonl`` (or
        ``log.jsonl.gz`` of a shipped model).
    threads : mapping, optional
        Model name -> torch threads of its training (CPU hours = wall hours x threads);
        default 1.
    schedules : mapping, optional
        Model name -> the iterations of its schedule (a model still training has done fewer:
        "unfinished"); default: the iterations its log has done.

    Returns
    -------
    list of dict
        ``model``, ``score`` (``TLD`` or ``gap_dice``), ``iterations``, ``checks``,
        ``best before last quarter``, ``end``, ``gain`` (percent points, 1 decimal, None
        without checks), ``flat`` ("yes", "no", "never learned": a score of 0 at every
        check, "unfinished", "not validated"), ``wall hours``,
        ``CPU hours`` (2 decimals). Models without a log are left out.
    """
    rows = []
    for name, log in logs.items():
        entries = read_log(log)
        steps = [e for e in entries if "loss" in e]
        if not steps:
            continue
        done = int(steps[-1]["iteration"])
        iterations = int((schedules or {}).get(name) or done)
        checks_raw = [e for e in entries if "val" in e]
        key = next((k for k in SCORE_KEYS if checks_raw and k in checks_raw[-1]["val"]), None)
        checks = [(int(e["iteration"]), e["val"].get(key)) for e in checks_raw] if key else []
        gain = last_part_gain(checks, iterations)
        flat = "not validated" if gain["flat"] is None else ("yes" if gain["flat"] else "no")
        if checks and all(not score for _, score in checks):
            flat = "never learned"  # zero at every check: flat, but not converged
        if done < iterations:
            flat = "unfinished"
        wall = training_seconds(entries) / 3600
        cpu = wall * int((threads or {}).get(name) or 1)
        rows.append(
            {
                "model": name,
                "score": key or "",
                "iterations": done,
                "checks": len(checks),
                "best before last quarter": _rounded(gain["before"]),
                "end": _rounded(gain["end"]),
                "gain": _rounded(gain["gain"]),
                "flat": flat,
                "wall hours": round(wall, 2),
                "CPU hours": round(cpu, 2),
            }
        )
    return rows


def never_learned(rows: Sequence[dict]) -> dict[str, list[int]]:
    """The models of :func:`convergence_rows` whose validation score was 0 at every check.

    Parameters
    ----------
    rows : sequence of dict
        :func:`convergence_rows` (model names ``seed<N>/<name>``).

    Returns
    -------
    dict of str -> list of int
        Model name (``fragments``, ``stage2``, ``amc`` ...) -> the training seeds of those
        that never learned, sorted; empty when every model learned something.
    """
    found: dict[str, list[int]] = {}
    for row in rows:
        seed, _, name = str(row["model"]).partition("/")
        if row.get("flat") == "never learned" and seed.startswith("seed") and name:
            found.setdefault(name, []).append(int(seed.removeprefix("seed")))
    return {name: sorted(seeds) for name, seeds in found.items()}


def silent_stage2_flags(
    rows: Sequence[dict],
    logs: Mapping[str, str | os.PathLike],
    root: str | os.PathLike | None = None,
) -> list[str]:
    """The stage-2 models of :func:`convergence_rows` that never learned (validation gap
    Dice 0 at every check), one sentence each for a run's flags.

    Such a network draws no breakage voxel, so the rows of its methods measure stage 1 alone
    and an effect "of stage 2" (or of an option) computed from them is not about stage 2.

    Parameters
    ----------
    rows : sequence of dict
        :func:`convergence_rows` of the run (stage-2 models score ``gap_dice``).
    logs : mapping
        Model name -> its ``log.jsonl`` (:func:`model_logs`), named in the sentence.
    root : path-like, optional
        The run folder: log paths are printed relative to it.

    Returns
    -------
    list of str
        One line per silent stage-2 model; stage-1 models are left to the other flags.
    """
    flags = []
    for row in rows:
        if row["flat"] != "never learned" or row["score"] != "gap_dice":
            continue
        log = logs[row["model"]]
        where = os.path.relpath(log, root) if root is not None else str(log)
        flags.append(
            f"{row['model']}: {where}: validation gap Dice 0 at every one of its "
            f"{row['checks']} checks ({row['iterations']} iterations): it never learned to "
            "draw a breakage, so its rows measure stage 1 alone"
        )
    return flags


def _rounded(value):
    return None if value is None else round(float(value), 1)


def convergence_text(rows: Sequence[dict]) -> str:
    """One paragraph: how many models meet the flattening rule, which do not, and the
    CPU hours of all of them (markdown)."""
    judged = [r for r in rows if r["flat"] not in ("not validated", "unfinished")]
    if not judged:
        ongoing = sum(r["flat"] == "unfinished" for r in rows)
        if ongoing:
            return (
                f"{ongoing} models still training: the flattening rule is checked at their end.\n"
            )
        return "No model was validated: the flattening rule cannot be checked.\n"
    failing = [f"{r['model']} ({r['flat']})" for r in judged if r["flat"] != "yes"]
    text = (
        f"**{len(judged) - len(failing)} of {len(judged)} validated models meet the flattening "
        f"rule** (validation score gained less than {FLAT_POINTS:g} point over the last "
        f"{LAST_PART:.0%} of training: TLD for stage 1, gap Dice for stage 2; "
        "`deeptree.evaluation.convergence`)"
    )
    text += f"; not: {', '.join(failing)}." if failing else "."
    text += (
        f" Training time of all {len(rows)} models: "
        f"{sum(r['CPU hours'] for r in rows):.1f} CPU hours "
        f"({sum(r['wall hours'] for r in rows):.1f} wall hours of their processes).\n"
    )
    return text


def plot_convergence(
    rows: Sequence[dict], logs: Mapping[str, str | os.PathLike], *, title: str = ""
):
    """Every validated model's validation curve in a small panel, its last quarter shaded
    (not for a model still training), its gain and verdict in the title.

    Parameters
    ----------
    rows : sequence of dict
        :func:`convergence_rows` output.
    logs : mapping
        The same model name -> log mapping.
    title : str

    Returns
    -------
    matplotlib Figure (bare Agg figure, outside pyplot: the caller saves it).
    """
    import math

    from matplotlib.figure import Figure

    shown = [r for r in rows if r["checks"]]
    cols = min(5, max(1, len(shown)))
    nrows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(3.0 * cols, 2.4 * nrows + (0.4 if title else 0)))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, row in zip(axes.flat, shown, strict=False):
        entries = read_log(logs[row["model"]])
        checks = [(e["iteration"], e["val"].get(row["score"])) for e in entries if "val" in e]
        ax.plot(
            [c[0] for c in checks], [100 * (c[1] or 0.0) for c in checks], marker="o", ms=3,
            color="#1f77b4",
        )  # fmt: skip
        ax.set_ylim(bottom=0)
        if row["flat"] != "unfinished":  # a model still training has not reached its last quarter
            ax.axvspan(
                (1 - LAST_PART) * row["iterations"], row["iterations"], color="0.9", zorder=0
            )
        gain = "" if row["gain"] is None else f"{row['gain']:+.1f}, "
        colour = {"yes": "#2ca02c", "no": "#d62728"}.get(row["flat"], "0.3")
        ax.set_title(f"{row['model']}: {gain}flat {row['flat']}", fontsize=9, color=colour)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel(f"validation {row['score']} (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def model_logs(checkpoints: Mapping[str, str | os.PathLike]) -> dict[str, Path]:
    """Model name -> the ``log.jsonl`` beside its checkpoint, for every trained model of a
    run (``best`` is the paper's stage-2 run's ``best.pt``, not a training of its own)."""
    return {
        name: Path(path).parent / "log.jsonl"
        for name, path in checkpoints.items()
        if not name.endswith("/best")
    }


def plot_validation_curves(
    logs: Mapping[str, str | os.PathLike | Sequence[dict]], score: str = "TLD", *, title: str = "",
    ax=None,
):  # fmt: skip
    """Validation curves of several trainings on one axis (a notebook's short run beside the
    reference models, for example).

    Parameters
    ----------
    logs : mapping
        Label -> a ``log.jsonl`` path (or ``log.jsonl.gz`` beside it) or its entries.
    score : str
        The ``val`` key drawn (``TLD``, ``gap_dice``, ``dice_1`` ...), a fraction, drawn in %.
    title : str
    ax : matplotlib Axes, optional
        Default: a new pyplot figure (notebooks).

    Returns
    -------
    matplotlib Axes (a label without any check of ``score`` is left out).
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7.5, 4))
    for label, log in logs.items():
        entries = read_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
        checks = [(e["iteration"], e["val"][score]) for e in entries
                  if "val" in e and e["val"].get(score) is not None]  # fmt: skip
        if checks:
            ax.plot([c[0] for c in checks], [100 * c[1] for c in checks], marker="o", ms=3,
                    label=label)  # fmt: skip
    ax.set(xlabel="iteration", ylabel=f"validation {score} (%)", title=title)
    ax.set_ylim(bottom=0)
    if ax.lines:
        ax.legend(fontsize=8)
    return ax
