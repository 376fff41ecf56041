"""The component effects of a run as one forest plot (notebook 07): each component's paired
effect with its 95% interval, beside the paper's effect, one panel per metric.

How to read it
    One row per pair of models (``"AMC (plain -> amc)"``: the same training seed on the same
    test case, without and with the component). A filled dot with its bar is an effect whose
    interval lies on one side of the zero line; a hollow grey dot is "not resolved at this
    scale" (the interval spans zero, decided on the interval as printed, like the tables). The
    diamond is the paper's change between the same two rows of its Table 2 (real CT); a row
    without a diamond is not in the paper. A row with no dot was not measured (a failed model
    in every pair): it is marked as such, never drawn as zero.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

from deeptree.evaluation.paper import printed
from deeptree.evaluation.stats import HURTS, IMPROVES, verdict
from deeptree.io import InputError

#: The metrics of the plot, in panel order (columns of ``component_effects`` rows).
EFFECT_METRICS: tuple[str, ...] = ("dTLD", "dBD", "dprecision")

#: Panel titles of the metrics.
METRIC_TITLES: dict[str, str] = {
    "dTLD": "tree length detected (TLD)",
    "dBD": "branches detected (BD)",
    "dprecision": "precision",
}

#: Legend texts (the tests look the artists up by them).
OURS_LABEL = "this run (95% interval)"
UNRESOLVED_LABEL = "this run, interval spans 0: not resolved"
PAPER_LABEL = "paper (Table 2)"
MISSING_NOTE = "not measured"

#: Colours: ours resolved, ours not resolved, the paper.
_OURS, _GREY, _PAPER = "#1f4e79", "#8c8c8c", "#d95f02"

#: Columns every effects table has (``deeptree.evaluation.paper.component_effects``).
_KEY_COLUMNS: tuple[str, ...] = ("component", "without", "with")


def effect_label(effect: dict) -> str:
    """The row label of an effect: ``"AMC (plain -> amc)"``; a long one whose second model
    extends the first names only the addition (``"stage-2 option negatives (amc+gul+stage2 ->
    +negatives)"``), so that the labels leave room for the panels."""
    without, with_ = effect["without"], effect["with"]
    label = f"{effect['component']} ({without} -> {with_})"
    if len(label) > 45 and with_.startswith(without + "+"):
        label = f"{effect['component']} ({without} -> +{with_.removeprefix(without + '+')})"
    return label


def _number(value) -> float | None:
    """A float, or None for None, "" and NaN."""
    if value is None or value == "":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def read_effects_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a run's ``component_effects.csv`` (``write_outputs``), numbers back as
    numbers: the effects and their bounds float (points; NaN where not measured), ``paper
    d<metric>`` float or None (not in the paper), ``seeds``, ``failed``, ``cases`` int; the
    verdicts as written.

    Parameters
    ----------
    path : path-like
        A ``component_effects.csv`` (older runs have no ``failed`` column; it is read as 0).

    Returns
    -------
    list of dict, one per effect, in file order.

    Raises
    ------
    InputError
        The file cannot be read, misses ``component``, ``without`` or ``with``, or a number
        cell is not a number.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            raw = list(reader)
            columns = reader.fieldnames or []
    except OSError as err:
        raise InputError(f"{path}: cannot read the effects table ({err})") from err
    missing = [c for c in _KEY_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{path}: not a component-effects table (no column {', '.join(missing)})")
    rows = []
    for line, r in enumerate(raw, start=2):
        row = dict(r)
        try:
            for c in columns:
                if c.startswith("paper d"):
                    row[c] = _number(r[c])
                elif c.startswith("d"):  # dBD, dBD low, dBD high, ...
                    value = _number(r[c])
                    row[c] = float("nan") if value is None else value
                elif c in ("seeds", "failed", "cases"):
                    row[c] = int(r[c] or 0)
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}, line {line}: a number cell is not a number ({err})") from err
        row.setdefault("failed", 0)
        rows.append(row)
    return rows


def _resolved(low: float | None, high: float | None) -> bool:
    """True when the interval, as the tables print it, lies on one side of zero."""
    if low is None or high is None:
        return False
    return verdict(printed(low), printed(high)) in (IMPROVES, HURTS)


def plot_component_effects(
    effects: Sequence[dict],
    metrics: Sequence[str] = EFFECT_METRICS,
    axes=None,
    title: str | None = None,
    verdicts: bool = True,
):
    """A forest plot of the component effects: one panel per metric, one row per effect, our
    paired effect with its 95% interval and the paper's effect beside it.

    Parameters
    ----------
    effects : sequence of dict
        ``deeptree.evaluation.paper.component_effects`` rows or :func:`read_effects_csv`:
        ``component``, ``without``, ``with`` and per metric ``<m>``, ``<m> low``, ``<m> high``
        (percentage points, NaN or None where not measured) and ``paper <m>`` (points, None
        or absent where the paper has no such row).
    metrics : sequence of str
        Columns to draw, one panel each (default :data:`EFFECT_METRICS`).
    axes : sequence of matplotlib Axes, optional
        One per metric, drawn into; default: a new pyplot figure.
    title : str, optional
        The figure's title (a smoke run says here that its models are untrained).
    verdicts : bool
        Draw an interval that spans zero as not resolved (hollow, grey). False (a smoke run,
        whose effects mean nothing) draws every row alike.

    Returns
    -------
    matplotlib Figure. Each panel holds one error bar per measured row (``ax.containers``),
    the paper's diamonds as one line labelled :data:`PAPER_LABEL` (at row + 0.28; absent
    when no row has a paper value), a vertical line at 0, and a :data:`MISSING_NOTE` text on
    each row not measured. Rows run top to bottom in the order of ``effects``.

    Raises
    ------
    InputError
        ``effects`` is empty or ``metrics`` names a column the effects lack.
    """
    from matplotlib.lines import Line2D

    effects = list(effects)
    metrics = list(metrics)
    if not effects:
        raise InputError("no component effects to plot (an empty effects table)")
    absent = [m for m in metrics if any(m not in e for e in effects)]
    if absent or not metrics:
        raise InputError(f"effects without the metric column(s) {absent or 'none given'}")
    n = len(effects)
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            1, len(metrics), figsize=(4.0 * len(metrics) + 3.0, 0.42 * n + 2.0), sharey=True,
            squeeze=False,
        )  # fmt: skip
        axes = list(axes[0])
    else:
        axes = list(axes)
        fig = axes[0].figure
    for ax, metric in zip(axes, metrics, strict=True):
        paper_x, paper_y, values = [], [], [0.0]
        for y, e in enumerate(effects):
            d, lo, hi = (_number(e.get(f"{metric}{s}")) for s in ("", " low", " high"))
            paper = _number(e.get(f"paper {metric}"))
            if paper is not None:
                paper_x.append(paper)
                paper_y.append(y + 0.28)  # beside our row, not on it
                values.append(paper)
            if d is None:  # a failed model in every pair: no estimate, not a zero
                ax.text(0.5, y, MISSING_NOTE, transform=ax.get_yaxis_transform(), ha="center",
                        va="center", fontsize=9, style="italic", color=_GREY)  # fmt: skip
                continue
            values += [v for v in (d, lo, hi) if v is not None]
            resolved = _resolved(lo, hi) or not verdicts
            color = _OURS if resolved else _GREY
            xerr = None if lo is None or hi is None else [[d - lo], [hi - d]]
            ax.errorbar(
                [d], [y], xerr=xerr, fmt="o", ms=7, color=color, ecolor=color, elinewidth=2,
                capsize=3, mfc=color if resolved else "white", mec=color, mew=1.5,
            )  # fmt: skip
        if paper_x:
            ax.plot(paper_x, paper_y, "D", ls="none", ms=6, color=_PAPER, label=PAPER_LABEL)
        ax.axvline(0.0, color="0.2", lw=1, zorder=0)
        pad = 0.08 * (max(values) - min(values)) or 1.0
        ax.set_xlim(min(values) - pad, max(values) + pad)
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize=11)
        ax.set_xlabel("with - without (percentage points)", fontsize=10)
        ax.tick_params(labelsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(n), [effect_label(e) for e in effects])
    axes[0].set_ylim(n - 0.4, -0.6)  # first effect on top
    handles = [Line2D([], [], marker="o", ls="-", color=_OURS, ms=7, label=OURS_LABEL)]
    if verdicts:
        handles.append(Line2D([], [], marker="o", ls="-", color=_GREY, mfc="white", ms=7,
                              label=UNRESOLVED_LABEL))  # fmt: skip
    if any(ax.get_legend_handles_labels()[1] for ax in axes):
        handles.append(Line2D([], [], marker="D", ls="none", color=_PAPER, ms=6, label=PAPER_LABEL))
    # below the panels, never over a row
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.45 / fig.get_size_inches()[1], 1, 1))
    return fig
