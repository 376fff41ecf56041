"""Confidence intervals of a reproduction over training seeds and test cases.

A reproduction trains every model with several training seeds and scores each model on the
same test cases, so each method has a table ``values[s, c]``: the metric of the model of
training seed ``s`` on test case ``c``. Seeds and cases are *crossed* (every seed sees every
case), and both are samples: another seed gives another model, another phantom another
case.

Estimate (:func:`seed_case_mean`)
    The mean over seeds of the case means, ``values.mean(axis=1).mean()``: with every cell
    present this is the grand mean.

Interval (:func:`two_level_bootstrap`)
    A two-level (crossed) percentile bootstrap: each replicate draws ``n_seeds`` seeds with
    replacement *and* ``n_cases`` cases with replacement, and takes the estimate on the
    drawn rows and columns, ``values[seeds][:, cases]``. The same drawn cases serve every
    drawn seed, as in the experiment. The 95% interval is the 2.5th and 97.5th percentile of
    the replicates. A level with a single member (one seed, or one case) is not resampled:
    it adds no spread it could estimate; with one seed *and* one case there is no interval
    (NaN bounds).

Paired effects (:func:`paired_effect`)
    The effect of a component is the difference ``with[s, c] - without[s, c]`` of two
    methods on the same case with the same training seed (the same initial weights and the
    same patches, ``deeptree.stage1.task``); its interval is the two-level bootstrap of that
    difference table. Pairing removes what seed and case contribute to both methods alike,
    which is most of the spread.

Verdict (:func:`verdict`)
    ``"improves"`` when the whole interval lies above zero, ``"hurts"`` when below, and
    ``"not resolved at this scale"`` otherwise (also when there is no interval). The tables
    decide on the interval as printed (rounded to 0.1 point,
    ``deeptree.evaluation.paper.component_effects``), so that no "hurts" stands beside an
    upper bound printed as +0.0.

Failed models (:func:`failed_models`)
    A model with an empty prediction on a test case has no precision there (NaN, not 0); it
    is counted as failed and left out of every mean and interval, never averaged in as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deeptree.io import InputError

#: Bootstrap replicates of every interval (the percentile bounds move by < 0.1 point at 4000).
N_BOOTSTRAP = 4000

#: Coverage of every interval.
CONFIDENCE = 0.95

IMPROVES = "improves"
HURTS = "hurts"
NOT_RESOLVED = "not resolved at this scale"


def _table(values, name: str = "values") -> np.ndarray:
    """``values`` as a float (n_seeds, n_cases) array with every cell finite, else InputError."""
    table = np.asarray(values, dtype=float)
    if table.ndim == 1:
        table = table[None, :]
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1:
        raise InputError(
            f"{name}: expected a (seeds, cases) table with at least one cell, got shape "
            f"{np.shape(values)}"
        )
    if not np.isfinite(table).all():
        raise InputError(f"{name}: every (seed, case) cell must be a finite number")
    return table


def seed_case_mean(values) -> float:
    """Mean over training seeds of the mean over test cases.

    Parameters
    ----------
    values : array-like, shape (n_seeds, n_cases) or (n_cases,)
        Metric per (seed, case) (a 1-D array is one seed).

    Returns
    -------
    float
    """
    return float(_table(values).mean(axis=1).mean())


def two_level_bootstrap(
    values,
    *,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of :func:`seed_case_mean`, resampling seeds and cases (crossed).

    Parameters
    ----------
    values : array-like, shape (n_seeds, n_cases) or (n_cases,)
        Metric per (seed, case).
    n_boot : int
        Replicates (>= 100).
    confidence : float in (0, 1)
    seed : int
        Seeds the resampling (the interval is a pure function of the inputs and ``seed``).

    Returns
    -------
    (low, high) : float
        NaN, NaN with a single seed and a single case (nothing to resample).

    Raises
    ------
    InputError
        Empty or non-finite table, ``n_boot < 100``, confidence outside (0, 1).
    """
    table = _table(values)
    if int(n_boot) < 100:
        raise InputError(f"bootstrap: n_boot must be at least 100, got {n_boot}")
    if not 0 < confidence < 1:
        raise InputError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    n_seeds, n_cases = table.shape
    if n_seeds == 1 and n_cases == 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    seeds = (
        rng.integers(n_seeds, size=(n_boot, n_seeds))
        if n_seeds > 1
        else np.zeros((n_boot, 1), int)
    )
    cases = (
        rng.integers(n_cases, size=(n_boot, n_cases))
        if n_cases > 1
        else np.zeros((n_boot, 1), int)
    )
    # replicate b: table[seeds[b]][:, cases[b]].mean() (balanced, so the grand mean)
    rows = table[seeds]  # (n_boot, n_seeds, n_cases)
    picked = np.take_along_axis(rows, cases[:, None, :].repeat(rows.shape[1], axis=1), axis=2)
    replicates = picked.mean(axis=(1, 2))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def verdict(low: float, high: float) -> str:
    """``"improves"`` if ``low > 0``, ``"hurts"`` if ``high < 0``, else
    ``"not resolved at this scale"`` (also for NaN bounds)."""
    if np.isfinite(low) and low > 0:
        return IMPROVES
    if np.isfinite(high) and high < 0:
        return HURTS
    return NOT_RESOLVED


def summarize_table(values, **bootstrap) -> dict:
    """Estimate and interval of one method and metric.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high`` (same unit as ``values``), ``n_seeds``, ``n_cases``.
    """
    table = _table(values)
    low, high = two_level_bootstrap(table, **bootstrap)
    return {
        "mean": seed_case_mean(table),
        "low": low,
        "high": high,
        "n_seeds": int(table.shape[0]),
        "n_cases": int(table.shape[1]),
    }


def paired_effect(with_, without, **bootstrap) -> dict:
    """Effect of a component: the paired difference ``with_ - without`` (same seed, same case).

    Parameters
    ----------
    with_, without : array-like, shape (n_seeds, n_cases)
        The two methods' metrics, cell by cell on the same (seed, case).

    Returns
    -------
    dict
        :func:`summarize_table` of the difference plus ``verdict``.

    Raises
    ------
    InputError
        Tables of different shapes (not paired).
    """
    a, b = _table(with_, "with"), _table(without, "without")
    if a.shape != b.shape:
        raise InputError(
            f"paired effect: the two methods must be scored on the same seeds and cases, got "
            f"tables of shape {a.shape} and {b.shape}"
        )
    out = summarize_table(a - b, **bootstrap)
    out["verdict"] = verdict(out["low"], out["high"])
    return out


def failed_models(rows: Sequence[dict]) -> dict[tuple, int]:
    """The failed models among per-case rows: those with an empty prediction on a test case.

    Parameters
    ----------
    rows : sequence of dict
        Per-case rows of one output rule, with ``method``, ``seed`` and ``precision`` (NaN
        where the prediction is empty, :func:`evaluate_case`).

    Returns
    -------
    dict (method, seed) -> int
        The number of test cases on which that model predicted nothing (only models with at
        least one).
    """
    out: dict[tuple, int] = {}
    for r in rows:
        if not np.isfinite(float(r["precision"])):
            key = (r["method"], r.get("seed", 0))
            out[key] = out.get(key, 0) + 1
    return out


def seed_case_table(
    rows: Sequence[dict],
    method: str,
    metric: str,
    seeds: Sequence | None = None,
    cases: Sequence[str] | None = None,
) -> np.ndarray:
    """The (n_seeds, n_cases) table of one method and metric from per-case result rows.

    Parameters
    ----------
    rows : sequence of dict
        Each with ``method``, ``seed``, ``case`` and ``metric``. A method scored once per
        case whatever the seed (``seed`` None, e.g. region growing) gives one row of cells.
    method, metric : str
    seeds, cases : sequence, optional
        Row and column order (default: sorted as found).

    Returns
    -------
    ndarray of float, shape (n_seeds, n_cases)

    Raises
    ------
    InputError
        No row of ``method``, a missing or repeated (seed, case) cell.
    """
    mine = [r for r in rows if r["method"] == method]
    if not mine:
        raise InputError(f"no result rows of method {method!r}")
    found_seeds = sorted({r["seed"] for r in mine}, key=lambda s: (s is None, s))
    seeds = list(seeds) if seeds is not None else found_seeds
    if found_seeds == [None]:
        seeds = [None]
    cases = list(cases) if cases is not None else sorted({r["case"] for r in mine})
    index = {(s, c): (i, j) for i, s in enumerate(seeds) for j, c in enumerate(cases)}
    table = np.full((len(seeds), len(cases)), np.nan)
    for r in mine:
        key = (r["seed"], r["case"])
        if key not in index:
            continue
        i, j = index[key]
        if not np.isnan(table[i, j]):
            raise InputError(f"method {method!r}: seed {key[0]}, case {key[1]} scored twice")
        table[i, j] = float(r[metric])
    missing = np.argwhere(np.isnan(table))
    if len(missing):
        i, j = missing[0]
        raise InputError(
            f"method {method!r}: no {metric} for seed {seeds[i]}, case {cases[j]} "
            f"({len(missing)} cells missing)"
        )
    return table
