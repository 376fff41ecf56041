"""Tests of deeptree.evaluation.stats on hand-built (seed, case) tables with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from deeptree.evaluation.stats import (
    HURTS,
    IMPROVES,
    NOT_RESOLVED,
    paired_effect,
    seed_case_mean,
    seed_case_table,
    summarize_table,
    two_level_bootstrap,
    verdict,
)
from deeptree.io import InputError


def test_estimate_is_the_mean_over_seeds_of_the_case_means():
    values = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]  # case means 1 and 4
    assert seed_case_mean(values) == pytest.approx(2.5)
    assert seed_case_mean([0.2, 0.4]) == pytest.approx(0.3)  # one seed


def test_constant_table_has_a_point_interval():
    low, high = two_level_bootstrap(np.full((3, 10), 0.7))
    assert low == pytest.approx(0.7) and high == pytest.approx(0.7)


def test_cases_alone_two_values():
    """Rows identical (no seed effect), cases 0 and 1: the replicate mean of two drawn cases
    is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 95% bounds are 0 and 1."""
    low, high = two_level_bootstrap([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert (low, high) == (0.0, 1.0)


def test_seeds_alone_two_values():
    """Columns identical (no case effect): the seeds are resampled too, not only the cases."""
    low, high = two_level_bootstrap(np.array([[0.0] * 10, [1.0] * 10]))
    assert (low, high) == (0.0, 1.0)


def test_one_seed_and_one_case_gives_no_interval():
    low, high = two_level_bootstrap([[0.5]])
    assert np.isnan(low) and np.isnan(high)
    assert verdict(low, high) == NOT_RESOLVED


def test_interval_matches_the_normal_approximation_for_many_cases():
    """One seed, 400 cases from N(0, 1): the 95% interval of the mean is mean +- 1.96 / 20."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, 400)
    low, high = two_level_bootstrap(x, n_boot=8000)
    half = 1.96 * x.std(ddof=0) / np.sqrt(len(x))
    assert low == pytest.approx(x.mean() - half, abs=0.02)
    assert high == pytest.approx(x.mean() + half, abs=0.02)


def test_both_levels_widen_the_interval():
    """A seed effect adds to the case spread: resampling seeds gives a wider interval than the
    same table with the seed effect removed."""
    rng = np.random.default_rng(2)
    cases = rng.normal(0, 1, 12)
    seed_effect = np.array([-1.0, 0.0, 1.0])
    with_seeds = cases[None, :] + seed_effect[:, None]
    lo1, hi1 = two_level_bootstrap(with_seeds)
    lo0, hi0 = two_level_bootstrap(np.repeat(cases[None, :], 3, axis=0))
    assert hi1 - lo1 > 1.2 * (hi0 - lo0)


def test_interval_is_deterministic_and_contains_the_estimate():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.4, 0.9, (3, 10))
    assert two_level_bootstrap(values, seed=5) == two_level_bootstrap(values, seed=5)
    s = summarize_table(values)
    assert s["low"] <= s["mean"] <= s["high"] and (s["n_seeds"], s["n_cases"]) == (3, 10)


def test_pairing_resolves_a_small_constant_effect():
    """Cases differ widely, the component adds 0.02 to every (seed, case): the paired
    difference is exactly 0.02 (improves), although the two unpaired intervals overlap."""
    rng = np.random.default_rng(4)
    without = rng.uniform(0.3, 0.9, (3, 10))
    with_ = without + 0.02
    effect = paired_effect(with_, without)
    assert effect["mean"] == pytest.approx(0.02)
    assert effect["low"] == pytest.approx(0.02) and effect["high"] == pytest.approx(0.02)
    assert effect["verdict"] == IMPROVES
    a, b = summarize_table(with_), summarize_table(without)
    assert a["low"] < b["high"]  # unpaired, nothing could be said
    assert paired_effect(without, with_)["verdict"] == HURTS


def test_effect_that_changes_sign_is_not_resolved():
    without = np.zeros((3, 4))
    with_ = np.array([[0.1, -0.1, 0.1, -0.1]] * 3)
    assert paired_effect(with_, without)["verdict"] == NOT_RESOLVED


def test_verdict_thresholds():
    assert verdict(0.001, 0.2) == IMPROVES
    assert verdict(-0.2, -0.001) == HURTS
    assert verdict(0.0, 0.2) == NOT_RESOLVED  # touching zero is not above it
    assert verdict(-0.1, 0.1) == NOT_RESOLVED


def test_bad_tables_are_named():
    with pytest.raises(InputError, match="same seeds and cases"):
        paired_effect(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(InputError, match="finite"):
        seed_case_mean([[0.1, np.nan]])
    with pytest.raises(InputError, match="at least one cell"):
        seed_case_mean(np.zeros((0, 3)))
    with pytest.raises(InputError, match="n_boot"):
        two_level_bootstrap([1.0, 2.0], n_boot=10)


def test_seed_case_table_from_rows():
    rows = [
        {"method": "m", "seed": s, "case": c, "TLD": 10 * s + k}
        for s in (0, 1)
        for k, c in enumerate(("b", "a"))
    ] + [{"method": "rg", "seed": None, "case": c, "TLD": 0.5} for c in ("a", "b")]
    assert seed_case_table(rows, "m", "TLD").tolist() == [[1.0, 0.0], [11.0, 10.0]]
    assert seed_case_table(rows, "m", "TLD", seeds=[1], cases=["b"]).tolist() == [[10.0]]
    assert seed_case_table(rows, "rg", "TLD").shape == (1, 2)  # seed-free method: one row
    with pytest.raises(InputError, match="seed 2, case a"):
        seed_case_table(rows, "m", "TLD", seeds=[0, 2])
    with pytest.raises(InputError, match="no result rows"):
        seed_case_table(rows, "other", "TLD")
    with pytest.raises(InputError, match="scored twice"):
        seed_case_table(rows + rows[:1], "m", "TLD")
