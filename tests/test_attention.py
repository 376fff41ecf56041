"""Tests of deeptree.attention: the fast breakage attention against the literal definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from scipy.special import expit

from deeptree.attention import (
    attention_cutoff,
    breakage_attention,
    breakage_attention_naive,
    breakage_centres,
)
from deeptree.io import InputError, read_nifti
from deeptree.masks import label_components


def reference_h(mask: np.ndarray) -> np.ndarray:
    """Paper Eq. 2 written as plainly as possible: all D_k stacked, sorted, second row."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3)))
    if n < 2:
        return np.full(mask.shape, np.inf)
    distances = np.stack([ndi.distance_transform_edt(labels != k) for k in range(1, n + 1)])
    return np.sort(distances, axis=0)[1]


def assert_matches_definition(mask: np.ndarray, alpha: float, cutoff: float | None = None) -> None:
    """Fast H_bar == definition to 1e-6 over the whole volume; H exact below the cutoff."""
    h_ref = reference_h(mask)
    h_bar_ref = expit(alpha - h_ref)
    h_bar, h = breakage_attention(mask, alpha, return_h=True, cutoff=cutoff)
    assert h_bar.dtype == np.float32 and h.dtype == np.float32
    assert h_bar.shape == mask.shape == h.shape
    limit = attention_cutoff(alpha) if cutoff is None else cutoff
    below = h_ref < limit
    np.testing.assert_array_equal(h[below], h_ref[below].astype(np.float32))
    assert np.all(np.isinf(h[~below]))
    if cutoff is None:
        assert np.abs(h_bar.astype(np.float64) - h_bar_ref).max() <= 1e-6
    else:  # a custom cutoff: exact below it, and sigmoid(alpha - cutoff) at most beyond
        assert np.abs(h_bar.astype(np.float64) - h_bar_ref).max() <= expit(alpha - cutoff) + 1e-7


# --- hand-built cases -----------------------------------------------------------------------
def two_voxels(gap: int = 6, shape=(11, 11, 20)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[5, 5, 5] = mask[5, 5, 5 + gap] = True
    return mask


def test_two_voxels_values_by_hand():
    h_bar, h = breakage_attention(two_voxels(6), return_h=True)
    assert h[5, 5, 8] == 3.0  # midway: second-nearest component at 3 voxels
    assert h[5, 5, 5] == 6.0  # inside a component: distance to the other one
    assert h[5, 5, 0] == 11.0  # 5 to the near voxel, 11 to the far one
    assert h[5, 9, 8] == pytest.approx(5.0)  # sqrt(4^2 + 3^2)
    assert h_bar[5, 5, 8] == pytest.approx(expit(5.0 - 3.0), abs=1e-7)
    assert h_bar[5, 9, 8] == pytest.approx(0.5, abs=1e-7)  # H = alpha -> 0.5


def test_alpha_is_in_voxels_not_mm():
    # The map has no spacing argument: the same array gives the same map whatever the scan.
    h_bar = breakage_attention(two_voxels(6), alpha=3.0)
    assert h_bar[5, 5, 8] == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("fill", ["empty", "one_voxel", "one_blob", "diagonal_pair"])
def test_fewer_than_two_components_give_zero(fill):
    mask = np.zeros((8, 9, 10), dtype=np.uint8)
    if fill == "one_voxel":
        mask[3, 3, 3] = 1
    elif fill == "one_blob":
        mask[1:6, 2:5, 0:10] = 1
    elif fill == "diagonal_pair":  # touching by a corner: one 26-connected component
        mask[2, 2, 2] = mask[3, 3, 3] = 1
    for function in (breakage_attention, breakage_attention_naive):
        h_bar, h = function(mask, return_h=True)
        assert h_bar.dtype == np.float32 and not h_bar.any()
        assert np.all(np.isinf(h))


def test_bad_input_raises_clear_errors():
    mask = two_voxels().astype(np.uint8)
    with pytest.raises(InputError, match="binary"):
        breakage_attention(mask * 2, name="pred.nii.gz")
    with pytest.raises(InputError, match="pred.nii.gz"):
        breakage_attention(mask * 2, name="pred.nii.gz")
    with pytest.raises(InputError, match="3D"):
        breakage_attention(mask[0])
    with pytest.raises(InputError, match="alpha"):
        breakage_attention(mask, alpha=float("nan"))
    with pytest.raises(InputError, match="alpha"):
        breakage_attention(mask, alpha="five")
    with pytest.raises(InputError, match="cutoff"):
        breakage_attention(mask, cutoff=0)
    with pytest.raises(InputError, match="binary"):
        breakage_attention_naive(mask * 3)


def test_input_not_modified_and_dtypes_accepted():
    mask = two_voxels().astype(np.uint8)
    before = mask.copy()
    a = breakage_attention(mask)
    b = breakage_attention(mask.astype(bool))
    c = breakage_attention(mask.astype(np.float32))  # 0.0/1.0 floats are binary
    np.testing.assert_array_equal(mask, before)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_label_components_is_26_connected():
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[0, 0, 0] = mask[1, 1, 1] = True  # corner contact
    mask[4, 4, 4] = True
    labels, n = label_components(mask)
    assert n == 2 and labels.dtype == np.int32
    assert labels[0, 0, 0] == labels[1, 1, 1] != labels[4, 4, 4]


def test_naive_equals_plain_reference():
    rng = np.random.default_rng(3)
    mask = rng.random((15, 12, 10)) < 0.02
    h_bar, h = breakage_attention_naive(mask, return_h=True)
    np.testing.assert_array_equal(h, reference_h(mask).astype(np.float32))
    np.testing.assert_allclose(h_bar, expit(5.0 - reference_h(mask)), atol=1e-7, rtol=0)


# --- the fast computation equals the definition -----------------------------------------------
@st.composite
def masks(draw):
    """Small volumes of boxes (thin rods, thick blocks, single voxels), often on the border."""
    shape = tuple(draw(st.integers(1, 24)) for _ in range(3))
    mask = np.zeros(shape, dtype=bool)
    for _ in range(draw(st.integers(0, 7))):
        lo = [draw(st.integers(0, s - 1)) for s in shape]
        size = [draw(st.sampled_from([1, 1, 2, 3, 6, 12])) for _ in range(3)]
        mask[tuple(slice(a, a + b) for a, b in zip(lo, size, strict=True))] = True
    return mask


@settings(max_examples=80, deadline=None)
@given(mask=masks(), alpha=st.sampled_from([5.0, 0.0, 2.5, -1.0]))
def test_fast_equals_definition_default_cutoff(mask, alpha):
    assert_matches_definition(mask, alpha)


@settings(max_examples=80, deadline=None)
@given(mask=masks(), cutoff=st.floats(0.5, 8.0))
def test_fast_exact_below_small_cutoff(mask, cutoff):
    # A small cutoff makes the local boxes much smaller than these volumes: this exercises
    # the box clipping, the grouping and the left-out component of the fast path.
    assert_matches_definition(mask, 5.0, cutoff=cutoff)


@pytest.mark.parametrize("seed", range(4))
def test_fast_equals_definition_on_volumes_larger_than_the_boxes(seed):
    # Default cutoff (19 voxels): boxes of 2 x 19 voxels around each component only become
    # local on volumes of about 100 voxels; thin and thick parts, some on the border.
    rng = np.random.default_rng(seed)
    shape = (110, 60, 48)
    seeds = np.zeros(shape, dtype=bool)
    seeds[tuple(rng.integers(0, s, 12) for s in shape)] = True
    radius = int(rng.integers(0, 3))  # 0: single voxels (iterations=0 would fill the volume)
    mask = ndi.binary_dilation(seeds, iterations=radius) if radius else seeds
    mask[:, 30, 20] = True  # a long thin rod through the volume, touching two borders
    mask[0:4, 0:6, 0:5] = True  # a thick block in a corner
    assert label_components(mask)[1] >= 5
    assert_matches_definition(mask, 5.0)


@pytest.mark.slow
def test_fast_equals_definition_on_real_broken_airway(atm001_path):
    # A real peripheral region of ATM_001, cut by thin slabs into several fragments.
    mask = read_nifti(atm001_path).array[150:230, 200:280, 250:330] > 0
    for k in (20, 35, 50, 65):
        mask[:, :, k : k + 2] = False
    assert label_components(mask)[1] >= 4
    assert_matches_definition(mask, 5.0)


# --- centres ------------------------------------------------------------------------------------
def test_centres_one_per_gap_at_the_gap():
    mask = np.zeros((30, 30, 60), dtype=bool)
    mask[13:17, 13:17, 0:20] = True  # a rod broken at k = 20..25 ...
    mask[13:17, 13:17, 26:60] = True
    mask[0:3, 0:3, 0:3] = True  # ... and a blob far from everything: no gap there
    h_bar = breakage_attention(mask)
    centres = breakage_centres(h_bar)
    assert centres.dtype == np.int64 and centres.shape == (1, 3)
    i, j, k = centres[0]
    assert 14 <= i <= 15 and 14 <= j <= 15 and 22 <= k <= 23
    # the gap spans k = 20..25: at k = 22 or 23 the farther piece is 4 voxels away
    assert h_bar[i, j, k] == pytest.approx(expit(5.0 - 4.0), abs=1e-7)


def test_centres_of_two_gaps_and_none():
    mask = np.zeros((20, 20, 80), dtype=bool)
    mask[9:11, 9:11, :] = True
    mask[:, :, 20:23] = False
    mask[:, :, 55:57] = False
    centres = breakage_centres(breakage_attention(mask))
    assert len(centres) == 2
    assert sorted(c[2] for c in centres) == [21, 55] or sorted(c[2] for c in centres) == [21, 56]
    assert breakage_centres(np.zeros((4, 4, 4), np.float32)).shape == (0, 3)


def test_centres_bad_input():
    with pytest.raises(InputError, match="float"):
        breakage_centres(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        breakage_centres(np.full((4, 4, 4), 2.0))
    with pytest.raises(InputError, match="threshold"):
        breakage_centres(np.zeros((4, 4, 4)), threshold=1.5)
    with pytest.raises(InputError, match="3D"):
        breakage_centres(np.zeros((4, 4)))


def test_nearest_centre_distance():
    from deeptree.attention import nearest_centre_distance

    d = nearest_centre_distance([[0, 0, 0], [10, 0, 0]], [[3, 4, 0], [10, 0, 1]])
    np.testing.assert_allclose(d, [5.0, 1.0])
    assert np.all(np.isinf(nearest_centre_distance([[1, 2, 3]], np.zeros((0, 3)))))


def test_infinite_cutoff_gives_h_everywhere():
    rng = np.random.default_rng(11)
    mask = rng.random((30, 20, 25)) < 0.003
    h_bar, h = breakage_attention(mask, cutoff=np.inf, return_h=True)
    np.testing.assert_array_equal(h, reference_h(mask).astype(np.float32))
    np.testing.assert_array_equal(h_bar, breakage_attention_naive(mask))
