"""Training curves of a run's models: every model's ``log.jsonl`` (``deeptree.train``) turned
into a small table (training loss and airway probability averaged per window of iterations,
every validation entry) and drawn in one figure (notebooks 05 and 07, ``write_outputs``).

What to look for
    A collapse: ``airway_p`` (the batch mean of 1 - p(background)) falling towards 0 in the
    first iterations and the class Dice flat at 0. A training too short: loss or validation
    still rising (or falling) at the end.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from deeptree.config import VARIANTS
from deeptree.io import InputError
from deeptree.train import read_log

#: The validation figures a curve row carries (fractions in [0, 1]; ``deeptree.stage1.task``).
VAL_KEYS: tuple[str, ...] = ("TLD", "BD", "precision", "DSC", "dice_1", "dice_2", "dice_3")

#: The columns of a curve row, in CSV order.
CURVE_COLUMNS: tuple[str, ...] = (
    "seed", "method", "kind", "first_iteration", "iteration", "loss", "airway_p", *VAL_KEYS,
)  # fmt: skip

#: The panels of :func:`plot_training_curves`: column, title.
PANELS: tuple[tuple[str, str], ...] = (
    ("loss", "training loss (window mean)"),
    ("airway_p", "airway probability of the batch (window mean)"),
    ("TLD", "validation TLD"),
    ("dice_1", "validation Dice, class 1 (trachea + main bronchi)"),
    ("dice_2", "validation Dice, class 2 (bronchi > 2 mm)"),
    ("dice_3", "validation Dice, class 3 (bronchi <= 2 mm)"),
)


def model_key(name: str) -> tuple[int | None, str]:
    """``"seed0/amc+gul"`` -> ``(0, "amc+gul")``; a name without a ``seed<s>/`` prefix ->
    ``(None, name)``."""
    match = re.fullmatch(r"seed(\d+)/(.+)", name)
    return (int(match[1]), match[2]) if match else (None, name)


def _number(value) -> float | None:
    """A finite float, or None (missing, NaN, empty CSV cell, not a number)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _mean(values) -> float | None:
    finite = [v for v in (_number(x) for x in values) if v is not None]
    return round(float(np.mean(finite)), 6) if finite else None


def _model_rows(seed, method, entries: Sequence[dict], windows: int) -> list[dict]:
    blank = dict.fromkeys(CURVE_COLUMNS)
    steps = sorted((e for e in entries if "loss" in e), key=lambda e: e["iteration"])
    rows = []
    if steps:
        its = np.array([e["iteration"] for e in steps])
        k = min(windows, len(steps))
        # windows of equal iteration range over 1..last (a complete log: equal counts)
        edges = np.linspace(0, its.max(), k + 1)
        bins = np.clip(np.searchsorted(edges, its, side="left") - 1, 0, k - 1)
        for b in np.unique(bins):
            mine = [e for e, i in zip(steps, bins, strict=True) if i == b]
            rows.append({
                **blank, "seed": seed, "method": method, "kind": "train",
                "first_iteration": mine[0]["iteration"], "iteration": mine[-1]["iteration"],
                "loss": _mean(e["loss"] for e in mine),
                "airway_p": _mean(e.get("airway_p") for e in mine),
            })  # fmt: skip
    for e in sorted((e for e in entries if "val" in e), key=lambda e: e["iteration"]):
        row = {**blank, "seed": seed, "method": method, "kind": "val", "iteration": e["iteration"]}
        for key in VAL_KEYS:
            value = _number(e["val"].get(key))
            row[key] = None if value is None else round(value, 6)
        rows.append(row)
    return rows


def curve_rows(
    logs: Mapping[str, str | os.PathLike | Sequence[dict]],
    windows: int = 20,
    *,
    skip_damaged: bool = False,
) -> list[dict]:
    """The training curves of several models as rows (for a CSV and
    :func:`plot_training_curves`).

    Parameters
    ----------
    logs : mapping
        Model name (``"seed<s>/<method>"`` as ``reproduce`` names them, or any name: seed
        None) -> its ``log.jsonl`` path or its entries (:func:`deeptree.train.read_log`). A
        missing or empty log gives no rows; a torn last line is dropped with a warning.
    windows : int
        The training steps of each model are cut into this many windows of equal iteration
        range (1/``windows`` of its iterations each; one step per window when it has fewer
        steps), and loss and ``airway_p`` are averaged in each.
    skip_damaged : bool
        A log damaged before its last line: warn and leave the model out (a run's outputs go
        on) instead of raising.

    Returns
    -------
    list of dict
        Keys :data:`CURVE_COLUMNS`, per model in ``logs`` order: ``kind="train"`` rows
        (``first_iteration`` .. ``iteration``, inclusive, 1-based; ``loss`` the mean training
        loss, ``airway_p`` the mean batch airway probability 1 - p(background), a fraction;
        validation columns None), then ``kind="val"`` rows (``iteration`` of the validation;
        :data:`VAL_KEYS` fractions, None where not logged; ``loss``, ``airway_p`` None).

    Raises
    ------
    InputError
        A log line other than the last is not JSON (unless ``skip_damaged``), or
        ``windows < 1``.
    """
    if windows < 1:
        raise InputError(f"windows must be at least 1, got {windows}")
    rows = []
    for name, log in logs.items():
        if isinstance(log, (str, os.PathLike)):
            try:
                entries = read_log(log)
            except InputError as err:
                if not skip_damaged:
                    raise
                warnings.warn(f"{err}; the training curve of {name} is left out", stacklevel=2)
                continue
        else:
            entries = list(log)
        rows += _model_rows(*model_key(name), entries, windows)
    return rows


def read_curves_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``training_curves.csv`` (:func:`curve_rows` as written), with numbers
    back as numbers (``seed`` and iterations int, figures float, empty cells None).

    Raises
    ------
    InputError
        The file misses a column of :data:`CURVE_COLUMNS` (not a training-curves table).
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        raw = list(reader)
        missing = [c for c in CURVE_COLUMNS if c not in (reader.fieldnames or [])]
    if raw and missing:
        raise InputError(f"{path}: not a training-curves table (no column {', '.join(missing)})")
    rows = []
    for r in raw:
        row = {c: _number(r[c]) for c in CURVE_COLUMNS}
        for c in ("seed", "first_iteration", "iteration"):
            row[c] = None if row[c] is None else int(row[c])
        row.update(method=r["method"], kind=r["kind"])
        rows.append(row)
    return rows


def _style(rows: Sequence[dict]) -> tuple[dict, dict]:
    """Colour per method (the variant table's order first) and line style per seed."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    known = list(VARIANTS)
    extra = [m for m in methods if m not in VARIANTS]
    slot = {m: known.index(m) if m in VARIANTS else len(known) + extra.index(m) for m in methods}
    colors = {m: f"C{slot[m] % 10}" for m in sorted(methods, key=slot.get)}
    seeds = sorted({r["seed"] for r in rows}, key=lambda s: (s is not None, s))
    # eight distinct dash patterns before one repeats (the recipe check draws five seeds)
    styles = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)), (0, (3, 1, 1, 3))]
    return colors, {s: styles[i % len(styles)] for i, s in enumerate(seeds)}


def plot_training_curves(
    rows: Sequence[dict], title: str | None = None, *, offscreen: bool = False
):
    """Every model's training curves in one figure: six panels (:data:`PANELS`: training
    loss, ``airway_p`` on a log scale, validation TLD, validation Dice of each anatomy class)
    against the iteration, one line per model in each panel where it has figures; colour by
    variant, line style by training seed.

    Parameters
    ----------
    rows : sequence of dict
        :func:`curve_rows` or :func:`read_curves_csv` output.
    title : str, optional
    offscreen : bool
        Draw on a bare Agg figure, outside pyplot (scripts, tests, ``write_outputs``);
        default: a pyplot figure for notebooks.

    Returns
    -------
    matplotlib Figure (2 x 3 panels; a training window is drawn at its middle iteration).
    """
    from matplotlib.lines import Line2D

    if offscreen:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(14, 7.5))
        axes = fig.subplots(2, 3)
    else:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    colors, styles = _style(rows)
    models = list(dict.fromkeys((r["seed"], r["method"]) for r in rows))
    last = max((r["iteration"] for r in rows), default=1)  # one iteration axis for all panels
    for ax, (key, panel_title) in zip(axes.flat, PANELS, strict=True):
        kind = "train" if key in ("loss", "airway_p") else "val"
        for seed, method in models:
            mine = [r for r in rows if (r["seed"], r["method"]) == (seed, method)
                    and r["kind"] == kind and _number(r[key]) is not None]  # fmt: skip
            if not mine:
                continue
            x = [(r["first_iteration"] + r["iteration"]) / 2 if kind == "train" else r["iteration"]
                 for r in mine]  # fmt: skip
            ax.plot(x, [_number(r[key]) for r in mine], linestyle=styles[seed], color=colors[method],
                    marker="o" if kind == "val" else None, ms=3, lw=1.2)  # fmt: skip
        ax.set(title=panel_title, xlabel="iteration", xlim=(0, 1.02 * last))
        if key == "airway_p":
            # a collapse: towards 0, decades below the start of 0.01 (an exact 0 drawn at the floor)
            ax.set_yscale("log", nonpositive="clip")
        elif key != "loss":
            ax.set_ylim(-0.02, 1.02)
        if not ax.lines:
            ax.text(0.5, 0.5, "no value logged (not validated, or class absent)",
                    ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, label=VARIANTS[m].label if m in VARIANTS else m)
               for m, c in colors.items()]  # fmt: skip
    if len(styles) > 1 or None not in styles:
        handles += [Line2D([], [], color="0.3", ls=ls, label="no seed" if s is None else f"seed {s}")
                    for s, ls in styles.items()]  # fmt: skip
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
