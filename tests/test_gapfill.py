"""Tests of deeptree.stage2.gapfill, the non-learned gap filler."""

from __future__ import annotations

import numpy as np
import pytest

from deeptree.attention import breakage_attention, breakage_centres
from deeptree.io import InputError, read_nifti
from deeptree.masks import label_components
from deeptree.stage2.gapfill import fill_gaps


def two_tubes(gap: int = 6, radius: int = 1):
    """Two collinear tubes along k with a gap of ``gap`` voxels between them."""
    mask = np.zeros((21, 21, 60), bool)
    i, j = np.mgrid[:21, :21]
    disc = (i - 10) ** 2 + (j - 10) ** 2 <= radius**2
    mask[disc, 5:25] = True
    mask[disc, 25 + gap : 55] = True
    return mask


def test_straight_join_reconnects_two_tubes():
    mask = two_tubes(gap=6, radius=2)
    before = mask.copy()
    centres = breakage_centres(breakage_attention(mask))
    assert len(centres) == 1
    result = fill_gaps(mask, centres)
    assert np.array_equal(mask, before)  # input untouched
    assert len(result.joins) == 1 and result.skipped == 0
    join = result.joins[0]
    assert sorted([join.start, join.end]) == [(10, 10, 24), (10, 10, 31)]
    assert join.length == pytest.approx(7.0)
    # the axis of a radius-2 digital disc is sqrt(5) from the background; minus half a voxel
    assert join.radius == pytest.approx(np.sqrt(5) - 0.5)
    # the tube fills the gap on the axis and stays within the radius
    assert result.added[10, 10, 25:31].all()
    assert not (result.added & mask).any()
    assert np.nonzero(result.added)[2].min() >= 25 and np.nonzero(result.added)[2].max() <= 30
    ii, jj, _ = np.nonzero(result.added)
    assert np.hypot(ii - 10, jj - 10).max() <= join.radius
    assert result.added[10, 11, 25:31].all()  # the tube is more than a line
    _, n = label_components(mask | result.added)
    assert n == 1
    assert join.n_voxels == int(result.added.sum())


def test_gap_longer_than_max_distance_stays_open():
    mask = two_tubes(gap=12)
    centres = np.array([[10, 10, 30]])
    result = fill_gaps(mask, centres, max_distance=10)
    assert not result.added.any() and result.skipped == 1 and not result.joins
    assert fill_gaps(mask, centres, max_distance=14).joins


def test_components_are_joined_once():
    mask = two_tubes(gap=4)
    centres = np.array([[10, 10, 26], [10, 10, 27], [10, 10, 27]])
    result = fill_gaps(mask, centres)
    assert len(result.joins) == 1 and result.skipped == 2


def test_intensity_path_follows_the_dark_lumen():
    """Two tubes offset sideways, with a dark bent lumen between them: the minimal-intensity
    path goes through the lumen, the straight one cuts across the bright tissue."""
    mask = np.zeros((30, 21, 60), bool)
    mask[5, 10, 5:25] = True
    mask[15, 10, 35:55] = True
    image = np.full(mask.shape, 0.5, np.float32)
    image[mask] = 0.0
    image[5, 10, 25:30] = 0.0  # lumen: down from the first tube, across, then on
    image[5:16, 10, 30] = 0.0
    image[15, 10, 30:35] = 0.0
    centres = np.array([[10, 10, 30]])
    dark = fill_gaps(mask, centres, image, path="intensity")
    straight = fill_gaps(mask, centres, image, path="straight")
    assert len(dark.joins) == len(straight.joins) == 1
    assert image[dark.added].max() == 0.0  # every added voxel is lumen
    assert image[straight.added].mean() > 0.3
    for result in (dark, straight):
        assert label_components(mask | result.added)[1] == 1


def test_no_centres_or_one_component():
    mask = two_tubes()
    assert not fill_gaps(mask, np.zeros((0, 3))).added.any()
    single = np.zeros((10, 10, 10), bool)
    single[5, 5, 2:8] = True
    result = fill_gaps(single, np.array([[5, 5, 5]]))
    assert not result.added.any() and result.skipped == 1


def test_bad_input():
    mask = two_tubes()
    with pytest.raises(InputError, match="centres"):
        fill_gaps(mask, np.zeros((2, 2)))
    with pytest.raises(InputError, match="path"):
        fill_gaps(mask, np.zeros((0, 3)), path="curved")
    with pytest.raises(InputError, match="image"):
        fill_gaps(mask, np.zeros((0, 3)), path="intensity")
    with pytest.raises(InputError, match="shape"):
        fill_gaps(mask, np.zeros((0, 3)), np.zeros((3, 3, 3)), path="intensity")
    with pytest.raises(InputError, match="binary"):
        fill_gaps(mask * 2.5, np.zeros((0, 3)))


def test_real_ct_simulated_gaps_are_filled(cip_ct64_dir):
    """Gaps cut into the real coarse airway of cip_ct64 are closed by the filler, through
    the real CT's dark lumen with the intensity path."""
    from deeptree.config import Stage2DataConfig
    from deeptree.stage2.data import prepare_stage2_source, simulate_stage2_sample

    ct = read_nifti(cip_ct64_dir / "ct.nii.gz")
    airway = read_nifti(cip_ct64_dir / "airway.nii.gz")
    src = prepare_stage2_source(ct.array, airway.array, ct.spacing, "cip_ct64")
    cfg = Stage2DataConfig(min_generation=1, fragments_per_gap=0.0)
    sample = simulate_stage2_sample(src, np.random.default_rng(0), cfg)
    assert sample.gaps
    centres = breakage_centres(sample.h_bar)
    for path in ("straight", "intensity"):
        result = fill_gaps(sample.mask, centres, src.image, path=path)
        labels, _ = label_components(sample.mask | result.added)
        repaired = [labels[g.proximal_voxel] == labels[g.distal_voxel] for g in sample.gaps]
        assert sum(repaired) >= 1, path
        # it adds little beyond the removed voxels
        assert result.added.sum() <= 3 * sample.label.sum()
