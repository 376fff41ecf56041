"""The paper's published tables (Table 1, Table 2) and how our summaries are set beside them:
table rows, the effects of each component, per-generation curves, method labels.

The published figures were measured on real CT (the BAS dataset, 20 test cases with curated
labels); they are printed *beside* ours, labelled :data:`PAPER_SOURCE`, and never ours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deeptree.config import CLDICE, LOSS_VARIANTS, VARIANTS
from deeptree.evaluation.stats import (
    HURTS,
    IMPROVES,
    NOT_RESOLVED,
    failed_models,
    paired_effect,
    seed_case_table,
    verdict,
)
from deeptree.io import InputError, list_cases

#: Label of every published figure: they come from real CT, not from this reproduction.
PAPER_SOURCE = "paper, real data (BAS, 20 test cases)"


#: The paper's Table 1 (percent, mean and standard deviation): method -> metric -> (mean, std).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "Juarez et al. [2]": {"BD": (69.2, 25.4), "TLD": (53.5, 20.9), "precision": (99.9, 0.1)},
    "UNet++ [25]": {"BD": (87.2, 10.9), "TLD": (74.2, 11.8), "precision": (99.3, 0.6)},
    "clDice [14]": {"BD": (88.0, 10.2), "TLD": (76.2, 11.1), "precision": (99.1, 0.7)},
    "nnUNet [3]": {"BD": (89.1, 5.5), "TLD": (76.1, 6.4), "precision": (99.9, 0.1)},
    "WingsNet [24]": {"BD": (89.2, 5.8), "TLD": (77.1, 5.7), "precision": (99.0, 0.8)},
    "Qin et al. [12]": {"BD": (90.9, 8.8), "TLD": (80.7, 9.9), "precision": (98.4, 1.0)},
    "Zheng et al. [23]": {"BD": (91.1, 5.5), "TLD": (80.1, 6.6), "precision": (98.9, 0.7)},
    "DeepTree": {"BD": (95.4, 3.6), "TLD": (88.9, 4.5), "precision": (97.2, 1.1)},
}


#: The paper's Table 2 (percent): (stage-1 variant, with stage 2) -> metric -> (mean, std).
PAPER_TABLE2: dict[tuple[str, bool], dict[str, tuple[float, float]]] = {
    ("plain", False): {"BD": (90.3, 5.1), "TLD": (78.1, 6.7), "precision": (99.8, 0.2)},
    ("amc", False): {"BD": (91.9, 4.7), "TLD": (81.0, 5.9), "precision": (99.4, 0.4)},
    ("gul", False): {"BD": (93.3, 4.4), "TLD": (83.1, 5.9), "precision": (98.8, 0.6)},
    ("amc+gul", False): {"BD": (95.1, 3.6), "TLD": (88.2, 4.7), "precision": (97.4, 1.1)},
    ("plain", True): {"BD": (91.2, 5.2), "TLD": (79.6, 6.5), "precision": (99.7, 0.3)},
    ("amc", True): {"BD": (92.5, 4.5), "TLD": (82.3, 5.7), "precision": (99.4, 0.4)},
    ("gul", True): {"BD": (94.1, 4.0), "TLD": (85.9, 5.8), "precision": (98.4, 0.7)},
    ("amc+gul", True): {"BD": (95.4, 3.6), "TLD": (88.9, 4.5), "precision": (97.2, 1.1)},
}


#: Metrics of the paper's tables (fractions in our rows, percent in the tables).
TABLE_METRICS: tuple[str, ...] = ("BD", "TLD", "precision")


#: The paper's split: 50 training, 20 validation, 20 test cases out of 90.
PAPER_SPLIT: tuple[int, int, int] = (50, 20, 20)


REGION_GROWING = "region-growing"


STAGE2_SUFFIX = "+stage2"


#: The paper's nnUNet* (its adapted nnU-Net, plain DiceCE): Table 2, first row. Table 1's
#: "nnUNet [3]" is the default nnU-Net, another network.
NNUNET_STAR = "nnUNet* (Table 2, row 1)"

#: Every published row our rows are set beside: Table 1's rows and Table 2's first row.
PAPER_ROWS: dict[str, dict[str, tuple[float, float]]] = {
    **PAPER_TABLE1,
    NNUNET_STAR: PAPER_TABLE2[("plain", False)],
}


#: Table 1 rows: (method id of our rows, our label, the paper's row beside it or None).
TABLE1_ROWS: tuple[tuple[str, str, str | None], ...] = (
    (REGION_GROWING, "classical: region growing (multi-threshold)", None),
    ("plain", "nnUNet* with DiceCE", NNUNET_STAR),
    (CLDICE, "clDice: nnUNet* with DiceCE + soft clDice", "clDice [14]"),
    ("gul", "GUL, the WingsNet loss: nnUNet* with DiceCE + GUL", "WingsNet [24]"),
    ("amc+gul" + STAGE2_SUFFIX, "DeepTree: AMC + GUL + stage 2", "DeepTree"),
)


def option_method(option: str) -> str:
    """Method id of DeepTree's stage 1 (amc+gul) repaired by the stage 2 trained with one
    option of ``deeptree.stage2.task.STAGE2_OPTIONS``: ``"amc+gul+stage2+<option>"``."""
    return f"amc+gul{STAGE2_SUFFIX}+{option}"


def method_ids(stage2: bool = True, options: Sequence[str] = ()) -> list[str]:
    """Ids of every evaluated method, in table order: the four variants, then each with
    ``+stage2`` (if ``stage2``), the stage-2 option rows, clDice, region growing."""

    ids = list(LOSS_VARIANTS)
    if stage2:
        ids += [v + STAGE2_SUFFIX for v in LOSS_VARIANTS]
        ids += [option_method(o) for o in options]
    return ids + [CLDICE, REGION_GROWING]


def paper_stage2_precision_cost() -> tuple[float, float]:
    """Smallest and largest precision cost (points) of the paper's stage 2 over the four
    stage-1 variants of its Table 2 (without minus with): (0.0, 0.4)."""
    costs = [
        PAPER_TABLE2[(v, False)]["precision"][0] - PAPER_TABLE2[(v, True)]["precision"][0]
        for v in LOSS_VARIANTS
    ]
    return round(min(costs), 2), round(max(costs), 2)


def interval_text(stats: dict, scale: float = 100.0, signed: bool = False) -> str:
    """``"72.0 [68.1, 75.3]"`` (percent of a fraction) from a ``mean``/``low``/``high`` dict;
    ``"72.0 [—]"`` when there is no interval, ``"—"`` when there is no mean (every model
    failed)."""
    fmt = "{:+.1f}" if signed else "{:.1f}"

    def f(x: float) -> str:  # no "-0.0" for a value that rounds to zero
        return fmt.format(round(scale * x, 1) + 0.0)

    if not np.isfinite(stats["mean"]):  # every model of the cell failed
        return "—"
    if not (np.isfinite(stats["low"]) and np.isfinite(stats["high"])):
        return f"{f(stats['mean'])} [—]"
    return f"{f(stats['mean'])} [{f(stats['low'])}, {f(stats['high'])}]"


def _paper(values: dict | None, key: str) -> str:
    if values is None:
        return "—"
    mean, std = values[key]
    return f"{mean:.1f} ± {std:.1f}"


def _counts(s: dict) -> dict:
    first = s[TABLE_METRICS[0]]
    return {
        "seeds": first["n_seeds"], "failed": first.get("n_failed", 0), "cases": first["n_cases"]
    }  # fmt: skip


def per_seed_text(stats: dict) -> str:
    """The per-seed values of one cell, in seed order (percent): ``"36.1, failed, 40.2"``
    (``failed``: the model of that seed is left out of the mean); ``"—"`` without them."""
    if "per_seed" not in stats:
        return "—"
    return ", ".join(
        "failed" if v is None else f"{round(100 * v, 1) + 0.0:.1f}" for _, v in stats["per_seed"]
    )


def _metric_cells(s: dict) -> dict:
    """The metric cells of a row: interval, then the per-seed values of each metric."""
    cells = {k: interval_text(s[k]) for k in TABLE_METRICS}
    cells.update({f"{k} per seed": per_seed_text(s[k]) for k in TABLE_METRICS})
    return cells


def table2_rows(summary: dict) -> list[dict]:
    """The ablation (paper Table 2): one row per (variant, stage 2) present in ``summary``.
    The stage-2 options (one seed in the cpu design) have a table of their own,
    :func:`option_rows`, beside their seed-matched baseline.

    Parameters
    ----------
    summary : dict
        :func:`~deeptree.evaluation.scoring.summarize_methods` output (one output rule).

    Returns
    -------
    list of dict
        ``method``, ``AMC``, ``GUL``, ``stage2`` (bools), ``seeds`` (models in the mean),
        ``failed`` (models left out: an empty prediction), ``cases``, ``BD``, ``TLD``,
        ``precision`` (ours: percent, mean over seeds of the case means with its 95%
        interval), ``BD per seed``, ``TLD per seed``, ``precision per seed``
        (:func:`per_seed_text`) and ``paper BD``, ``paper TLD``, ``paper precision``
        (:data:`PAPER_TABLE2`, percent, real data).
    """
    rows = []
    for with_stage2 in (False, True):
        for variant in LOSS_VARIANTS:
            method = variant + (STAGE2_SUFFIX if with_stage2 else "")
            if method not in summary:
                continue
            s = summary[method]
            paper = PAPER_TABLE2[(variant, with_stage2)]
            rows.append(
                {
                    "method": method,
                    "AMC": VARIANTS[variant].amc,
                    "GUL": VARIANTS[variant].gul,
                    "stage2": with_stage2,
                    **_counts(s),
                    **_metric_cells(s),
                    **{f"paper {k}": _paper(paper, k) for k in TABLE_METRICS},
                }
            )
    return rows


def option_rows(matched: dict, options: Sequence[str]) -> list[dict]:
    """The stage-2 options beside their seed-matched baseline: first the paper's stage 2 after
    amc+gul on exactly the training seeds the options were trained with (the same seed's
    paper model), then one row per option; never beside the means over more seeds.

    Parameters
    ----------
    matched : dict
        :func:`~deeptree.evaluation.scoring.summarize_methods` of the rows of the options'
        seeds only (``amc+gul+stage2`` and the option methods).
    options : sequence of str
        ``deeptree.stage2.task.STAGE2_OPTIONS`` names.

    Returns
    -------
    list of dict
        ``method``, ``stage-2 option`` ("— (the paper's stage 2, same seeds)" for the
        baseline), ``seeds``, ``failed``, ``cases``, the metric cells of
        :func:`table2_rows` (no paper columns: the options are not in the paper).
    """
    rows = []
    baseline = "amc+gul" + STAGE2_SUFFIX
    for option in (None, *options):
        method = baseline if option is None else option_method(option)
        if method not in matched or (option is not None and baseline not in matched):
            continue
        s = matched[method]
        rows.append(
            {
                "method": method,
                "stage-2 option": option or "— (the paper's stage 2, same seeds)",
                **_counts(s),
                **_metric_cells(s),
            }
        )
    return rows if len(rows) > 1 else []


def table1_rows(summary: dict, matched: dict | None = None) -> list[dict]:
    """The comparison (paper Table 1) for the methods built here, beside the paper's row of
    the same method (:data:`TABLE1_ROWS`; our nnUNet* beside the paper's nnUNet*, Table 2
    row 1). clDice, trained for fewer seeds than the others, is followed by nnUNet* on
    exactly clDice's seeds (from ``matched``), the row it can be compared with.

    Parameters
    ----------
    summary : dict
        :func:`~deeptree.evaluation.scoring.summarize_methods` output (one output rule).
    matched : dict, optional
        The same of the rows of clDice's seeds only (``plain`` and ``cldice``).

    Returns
    -------
    list of dict
        ``method`` (id), ``name``, ``seeds``, ``failed``, ``cases``, ``BD``, ``TLD``,
        ``precision`` (ours, percent with 95% interval), the per-seed values
        (:func:`table2_rows`), ``paper method`` and ``paper BD``/``TLD``/``precision``
        ("—" where the paper has no such row).
    """
    rows = []
    for method, name, paper_name in TABLE1_ROWS:
        if method not in summary:
            continue
        s = summary[method]
        paper = PAPER_ROWS.get(paper_name) if paper_name else None
        rows.append(
            {
                "method": method,
                "name": name,
                **_counts(s),
                **_metric_cells(s),
                "paper method": paper_name or "—",
                **{f"paper {k}": _paper(paper, k) for k in TABLE_METRICS},
            }
        )
        if method == CLDICE and matched and "plain" in matched:
            rows.append(
                {
                    "method": "plain",
                    "name": "nnUNet* with DiceCE on clDice's seed(s) only (seed-matched)",
                    **_counts(matched["plain"]),
                    **_metric_cells(matched["plain"]),
                    "paper method": "—",
                    **{f"paper {k}": "—" for k in TABLE_METRICS},
                }
            )
    return rows


def paper_table1_rows() -> list[dict]:
    """All rows of the paper's Table 1 as published (percent, real data)."""
    return [
        {"method": name, **{k: _paper(v, k) for k in TABLE_METRICS}}
        for name, v in PAPER_TABLE1.items()
    ]


#: Comparisons behind "does each component help": (component, without, with).
EFFECT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("AMC", "plain", "amc"),
    ("AMC", "gul", "amc+gul"),
    ("GUL", "plain", "gul"),
    ("GUL", "amc", "amc+gul"),
    *(("stage 2", v, v + STAGE2_SUFFIX) for v in LOSS_VARIANTS),
)


def option_pairs(options: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    """(component, without, with) of each stage-2 option: the paper's stage 2 after amc+gul
    against the same with the option."""
    return tuple(
        (f"stage-2 option {o}", "amc+gul" + STAGE2_SUFFIX, option_method(o)) for o in options
    )


def _paper_mean(method: str, key: str) -> float | None:
    stage2 = method.endswith(STAGE2_SUFFIX)
    variant = method.removesuffix(STAGE2_SUFFIX)
    if (variant, stage2) not in PAPER_TABLE2:
        return None
    return PAPER_TABLE2[(variant, stage2)][key][0]


#: Verdict of an effect whose every seed has a failed model (nothing left to pair).
NO_PAIRS = "not measured (a failed model in every pair)"


def printed(points: float) -> float:
    """A value in points as the tables print it: rounded to 0.1 point, without a "-0.0"."""
    return round(points, 1) + 0.0


def component_effects(rows: Sequence[dict], options: Sequence[str] = (), **bootstrap) -> list[dict]:
    """Each component's effect as a paired difference (same training seed, same test case),
    with its 95% interval and verdict (``deeptree.evaluation.stats``), beside the paper's.

    A seed where either model failed (an empty prediction on a test case,
    ``deeptree.evaluation.stats.failed_models``) is left out of the pair and counted in
    ``failed``. The verdict is decided on the interval as printed (:func:`printed`, 0.1
    point), so that it always agrees with the numbers beside it.

    Parameters
    ----------
    rows : sequence of dict
        Per-case rows of one output rule with ``method``, ``seed``, ``case`` and the metrics
        (fractions; precision NaN for an empty prediction).
    options : sequence of str
        Stage-2 options whose rows are compared with the paper's stage 2 (:func:`option_pairs`)
        on the option's own seeds.
    **bootstrap
        Passed to :func:`deeptree.evaluation.stats.paired_effect`.

    Returns
    -------
    list of dict, one per pair present in ``rows``: ``component``, ``without``, ``with``,
    ``seeds`` (paired), ``failed`` (seeds left out), ``cases``; per metric ``d<metric>``,
    ``d<metric> low``, ``d<metric> high`` (points, 2 decimals; NaN when no seed is left),
    ``<metric> verdict``; ``paper d<metric>`` (points, None where the paper has no such row).
    """
    present = {r["method"] for r in rows}
    failed = failed_models(rows)
    out = []
    for component, without, with_ in (*EFFECT_PAIRS, *option_pairs(options)):
        if without not in present or with_ not in present:
            continue
        every = sorted({r["seed"] for r in rows if r["method"] == with_})
        seeds = [s for s in every if (with_, s) not in failed and (without, s) not in failed]
        cases = sorted({r["case"] for r in rows if r["method"] == with_})
        row = {"component": component, "without": without, "with": with_}
        row.update(seeds=len(seeds), failed=len(every) - len(seeds), cases=len(cases))
        for key in TABLE_METRICS:
            if seeds:
                a = seed_case_table(rows, with_, key, seeds, cases)
                b = seed_case_table(rows, without, key, seeds, cases)
                e = paired_effect(a, b, **bootstrap)
                d, lo, hi = (round(100 * e[k], 2) for k in ("mean", "low", "high"))
                word = verdict(printed(lo), printed(hi))
            else:
                d = lo = hi = float("nan")
                word = NO_PAIRS
            row[f"d{key}"], row[f"d{key} low"], row[f"d{key} high"] = d, lo, hi
            row[f"{key} verdict"] = word
            pw, pwo = _paper_mean(with_, key), _paper_mean(without, key)
            row[f"paper d{key}"] = None if pw is None or pwo is None else round(pw - pwo, 2)
        row["paired seeds"] = " ".join(str(s) for s in seeds)
        out.append(row)
    return out


def _points(e: dict, key: str) -> str:
    d, lo, hi = (printed(e[f"d{key}{s}"]) for s in ("", " low", " high"))
    if not np.isfinite(d):
        return "not measured"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{d:+.1f} points [no interval]"
    return f"{d:+.1f} points [95% CI {lo:+.1f}, {hi:+.1f}]"


def models_of_method(method: str) -> list[str]:
    """The trained models a method's rows come from, by their names in the run's convergence
    rows: ``"amc+gul+stage2+fragments"`` -> ``["amc+gul", "fragments"]``, ``"plain+stage2"``
    -> ``["plain", "stage2"]``, ``"amc"`` -> ``["amc"]`` (the option ``best`` is the paper's
    stage-2 training, checkpoint chosen on validation: ``stage2``)."""
    stage1, marker, option = method.partition(STAGE2_SUFFIX)
    if not marker:
        return [method]
    option = option.lstrip("+") or "stage2"
    return [stage1, "stage2" if option == "best" else option]


def effect_statements(
    effects: Sequence[dict], never_learned: Mapping[str, Sequence[int]] | None = None
) -> list[str]:
    """One sentence per :func:`component_effects` row: the paired differences with their
    intervals, the verdict per metric, and the paper's change (for stage 2 the paper's own
    precision bar, :func:`paper_stage2_precision_cost`).

    ``never_learned`` (model name -> training seeds, from
    :func:`deeptree.evaluation.convergence.never_learned`): a comparison with such a model on
    either side says so, since its difference is then about an untrained network, not about
    the component."""
    lo_cost, hi_cost = paper_stage2_precision_cost()
    lines = []
    for e in effects:
        parts = [f"{key} {_points(e, key)}: {e[f'{key} verdict']}" for key in TABLE_METRICS]
        paper = [
            f"{key} {e[f'paper d{key}']:+.1f}"
            for key in TABLE_METRICS
            if e[f"paper d{key}"] is not None
        ]
        left_out = f", {e['failed']} left out (a failed model)" if e.get("failed") else ""
        line = (
            f"{e['component']} ({e['without']} -> {e['with']}, {e['seeds']} training seeds"
            f"{left_out} x {e['cases']} synthetic test cases): " + "; ".join(parts)
        )
        line += f". Paper: {', '.join(paper)} points" if paper else ". Not in the paper"
        if e["component"] == "stage 2" or e["component"].startswith("stage-2 option"):
            line += f" (the paper's stage 2 costs {lo_cost:.1f} to {hi_cost:.1f} points of precision)"
        paired = e.get("paired seeds")  # absent in the rows of older runs: every seed
        paired = None if paired is None else {int(v) for v in str(paired).split()}
        silent = []
        for model in dict.fromkeys(models_of_method(e["without"]) + models_of_method(e["with"])):
            seeds = [
                s for s in (never_learned or {}).get(model, []) if paired is None or s in paired
            ]
            if seeds:
                silent.append(f"{model} of training seed(s) {', '.join(map(str, seeds))}")
        if silent:
            line += (
                f". Caution: the model {' and '.join(silent)} never learned (validation score 0 "
                "at every check), so this difference is about an untrained network, not about "
                "the component"
            )
        lines.append(line + ".")
    return lines


def bottom_line(effects: Sequence[dict], table2: Sequence[dict] = ()) -> list[str]:
    """The bottom line of a run in a few sentences, written from its effects (the takeaways
    of notebook 07): how many models failed, and which of the paper's TLD gains hold here with
    an interval above zero, which point the other way (an interval below zero), and which are
    not resolved.

    Parameters
    ----------
    effects : sequence of dict
        :func:`component_effects` rows.
    table2 : sequence of dict, optional
        :func:`table2_rows` (their ``failed`` counts).

    Returns
    -------
    list of str
    """
    failed = sum(int(r.get("failed") or 0) for r in table2)
    models = sum(int(r.get("seeds") or 0) + int(r.get("failed") or 0) for r in table2)
    lines = []
    if table2:
        lines.append(
            f"{failed} of the ablation's {models} (method, training seed) results come from a "
            "failed model (an empty prediction), left out of the means."
            if failed
            else f"No failed model: each of the ablation's {models} (method, training seed) "
            "results has an airway on every test case."
        )
    gains = [e for e in effects if e.get("paper dTLD") is not None and e["paper dTLD"] > 0]
    for word, label in ((IMPROVES, "hold here"), (HURTS, "point the other way here"),
                        (NOT_RESOLVED, "are not resolved at this scale"),
                        (NO_PAIRS, "are not measured (a failed model in every pair)")):  # fmt: skip
        mine = [e for e in gains if e["TLD verdict"] == word]
        if mine:
            named = "; ".join(
                f"{e['component']} ({e['without']} -> {e['with']}) {_points(e, 'TLD')}, "
                f"paper {e['paper dTLD']:+.1f}"
                for e in mine
            )
            lines.append(f"{len(mine)} of the paper's {len(gains)} TLD gains {label}: {named}.")
    return lines


def generation_curves(generation_rows: Sequence[dict]) -> list[dict]:
    """Per-generation TLD and BD per method, pooled over the test cases (skeleton voxels and
    branches summed before dividing).

    Returns
    -------
    list of dict
        ``method``, ``generation``, ``TLD``, ``BD`` (fractions), ``skeleton_total``,
        ``branches_total``, sorted by method then generation.
    """
    pooled: dict[tuple[str, int], list[int]] = {}
    for r in generation_rows:
        acc = pooled.setdefault((r["method"], int(r["generation"])), [0, 0, 0, 0])
        acc[0] += int(r["skeleton_covered"])
        acc[1] += int(r["skeleton_total"])
        acc[2] += int(r["branches_detected"])
        acc[3] += int(r["branches_total"])
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in generation_rows))}
    out = []
    for (method, gen), (cov, tot, det, btot) in sorted(
        pooled.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])
    ):
        out.append(
            {
                "method": method,
                "generation": gen,
                "TLD": cov / tot if tot else 0.0,
                "BD": det / btot if btot else 0.0,
                "skeleton_total": tot,
                "branches_total": btot,
            }
        )
    return out


def method_label(method: str) -> str:
    """A readable name of a method id (``"amc+gul+stage2"`` -> ``"nnUNet* + AMC + GUL + stage 2"``,
    ``"amc+gul+stage2+negatives"`` -> ``"... + stage 2 + option negatives"``)."""
    if method == REGION_GROWING:
        return "region growing"
    head, sep, option = method.partition(STAGE2_SUFFIX + "+")
    if sep:
        return method_label(head + STAGE2_SUFFIX) + f" + option {option}"
    label = VARIANTS[method.removesuffix(STAGE2_SUFFIX)].label
    return label + " + stage 2" if method.endswith(STAGE2_SUFFIX) else label


def split_sizes(n: int) -> tuple[int, int, int]:
    """Training, validation and test sizes for ``n`` cases in the paper's 50/20/20 proportions.

    ``n_test = n_val = floor(2 n / 9 + 1/2)``; at least 1 test case; at least 1 validation
    case when ``n >= 3``; the rest trains (see the module docstring).

    Parameters
    ----------
    n : int
        Number of cases (>= 2).

    Returns
    -------
    (n_train, n_val, n_test) : tuple of int, summing to ``n``.

    Raises
    ------
    InputError
        Fewer than 2 cases (one to train, one to test).
    """
    n = int(n)
    if n < 2:
        raise InputError(f"reproduce: need at least 2 cases (1 training, 1 test), got {n}")
    share = PAPER_SPLIT[2] / sum(PAPER_SPLIT)
    n_test = max(1, math.floor(n * share + 0.5))
    n_val = max(1 if n >= 3 else 0, math.floor(n * share + 0.5))
    while n - n_test - n_val < 1:  # small n: training keeps at least one case
        if n_val > (1 if n >= 3 else 0):
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


@dataclass(frozen=True)
class Split:
    """Cases of each part (``deeptree.io.CasePaths``, id order)."""

    train: list
    val: list
    test: list

    def ids(self) -> dict[str, list[str]]:
        """``{"train": [...], "val": [...], "test": [...]}`` case ids."""
        return {k: [c.id for c in getattr(self, k)] for k in ("train", "val", "test")}


def split_dataset(root: str | os.PathLike) -> Split:
    """List an ATM'22-layout dataset and split it with :func:`split_sizes`.

    Parameters
    ----------
    root : path-like
        ``imagesTr/ID_0000.nii.gz`` + ``labelsTr/ID.nii.gz``.

    Raises
    ------
    InputError
        An empty dataset, fewer than 2 cases, or a case without its CT or label.
    """

    cases = list_cases(root)
    for c in cases:
        if c.image is None or c.label is None:
            missing = "CT" if c.image is None else "label"
            raise InputError(f"{root}: case {c.id} has no {missing} (imagesTr/labelsTr)")
    n_train, n_val, _ = split_sizes(len(cases))
    return Split(cases[:n_train], cases[n_train : n_train + n_val], cases[n_train + n_val :])
