"""Edited copies of a CT (deeptree.ct_edits) on small hand-built arrays."""

from __future__ import annotations

import numpy as np
import pytest

from deeptree.ct_edits import (
    add_contrast,
    add_noise,
    mediastinum_mask,
    remove_contrast,
    thick_slices,
)
from deeptree.io import InputError


def _unchanged_input(edit, ct, *args, **kwargs):
    """Run ``edit`` on ``ct`` and check that ``ct`` is untouched and the output is a float32
    array of its shape; return the output."""
    before = ct.copy()
    out = edit(ct, *args, **kwargs)
    assert np.array_equal(ct, before) and ct.dtype == before.dtype
    assert out.shape == ct.shape and out.dtype == np.float32
    assert not np.shares_memory(out, ct)
    return out


def test_remove_contrast_sets_what_is_brighter_than_the_threshold_to_blood():
    ct = np.array([-1000, -100, 40, 119, 120, 121, 300, 1500], np.int16).reshape(2, 2, 2)
    out = _unchanged_input(remove_contrast, ct, (1, 1, 1))
    assert out.ravel().tolist() == [-1000, -100, 40, 119, 120, 40, 40, 40]
    out = remove_contrast(ct, (1, 1, 1), threshold_hu=400, blood_hu=50)
    assert out.ravel().tolist() == [-1000, -100, 40, 119, 120, 121, 300, 50]
    with pytest.raises(InputError, match="3D"):
        remove_contrast(np.zeros((4, 4)), (1, 1, 1))
    with pytest.raises(InputError, match="spacing"):
        remove_contrast(ct, (1, 0, 1))


def _chest_row():
    """A chest along i (1 mm): air, wall, right lung, mediastinum with a fat block, left lung,
    wall, air; the same in every (j, k)."""
    row = np.full(85, 40.0)  # soft tissue / blood
    row[:5] = row[80:] = -1000.0  # air outside the body
    row[10:25] = row[60:75] = -850.0  # the lungs
    row[33:41] = -100.0  # mediastinal fat
    return np.broadcast_to(row[:, None, None], (85, 12, 12)).astype(np.int16)


def test_the_mediastinum_is_blood_density_tissue_between_the_lungs():
    ct = _chest_row()
    mask = mediastinum_mask(ct, (1, 1, 1), left_right_axis=0)
    assert mask.dtype == bool and mask.shape == ct.shape
    inside = mask[:, 6, 6]
    assert inside[50] and inside[28]  # blood between the lungs
    assert not inside[37]  # fat between the lungs
    assert not inside[:10].any() and not inside[75:].any()  # air and chest wall outside
    assert not inside[10:25].any() and not inside[60:75].any()  # the lungs
    # along another axis there are no lungs on both sides: nothing
    assert not mediastinum_mask(ct, (1, 1, 1), left_right_axis=1).any()


def test_add_contrast_raises_the_mediastinal_blood_and_keeps_its_noise():
    ct = _chest_row()
    out = _unchanged_input(add_contrast, ct, (1, 1, 1), enhanced_hu=300.0)
    row = out[:, 6, 6]
    assert row[50] == pytest.approx(300.0, abs=1e-3)  # far from every edge: the local mean is 40
    assert row[37] == -100 and row[7] == 40 and row[17] == -850 and row[2] == -1000
    noisy = ct.astype(np.float32)
    noisy[50, 6, 6] += 7.0  # one voxel off the local mean keeps its difference from it
    edited = add_contrast(noisy, (1, 1, 1), enhanced_hu=300.0)
    assert edited[50, 6, 6] - edited[49, 6, 6] == pytest.approx(7.0, abs=0.5)


def test_add_noise_is_seeded_with_the_asked_level_and_correlation():
    ct = np.zeros((40, 40, 40), np.int16)
    out = _unchanged_input(add_noise, ct, (0.5, 0.5, 0.5), sigma_hu=30.0, correlation_mm=0.8)
    assert np.array_equal(out, add_noise(ct, (0.5, 0.5, 0.5), sigma_hu=30.0, correlation_mm=0.8))
    assert not np.array_equal(out, add_noise(ct, (0.5,) * 3, sigma_hu=30.0, seed=1))
    assert out.std() == pytest.approx(30.0, rel=0.1)

    def neighbour_correlation(a):
        return np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]

    # Gaussian correlation of sigma s voxels: neighbours correlate as exp(-1 / (4 s^2))
    assert neighbour_correlation(out) == pytest.approx(np.exp(-1 / (4 * 1.6**2)), abs=0.05)
    white = add_noise(ct, (0.5, 0.5, 0.5), sigma_hu=30.0, correlation_mm=0.0)
    assert abs(neighbour_correlation(white)) < 0.05
    with pytest.raises(InputError, match=">= 0"):
        add_noise(ct, (1, 1, 1), sigma_hu=-1.0)


def test_thick_slices_average_slabs_and_interpolate_between_their_centres():
    # a ramp along k, 1 mm, slabs of 4 voxels: [0-3] [4-7] [8-11] [12-15] [16-17]
    ramp = np.broadcast_to(10.0 * np.arange(18), (3, 2, 18)).astype(np.int16)
    out = _unchanged_input(thick_slices, ramp, (1, 1, 1), thickness_mm=4.0, axis=2)
    # between the first and last slab centres (1.5 and 16.5) the ramp is kept exactly
    assert np.array_equal(out[:, :, 2:17], ramp[:, :, 2:17].astype(np.float32))
    # beyond them, each voxel takes its slab's mean (the ramp at the slab centre)
    assert out[0, 0, :2].tolist() == [15.0, 15.0] and out[0, 0, 17] == 165.0
    # a bright slice is spread over its slab of 3 (3.75 mm of 1.25 mm slices): a third of it
    # at the slab centre, falling linearly to the next slab centres
    spike = np.zeros((3, 2, 15), np.float32)
    spike[:, :, 4] = 300.0
    thick = thick_slices(spike, (0.5, 0.5, 1.25), thickness_mm=3.75, axis=2)
    third = 100 / 3
    expected = [0, 0, third, 2 * third, 100, 2 * third, third] + [0] * 8
    assert thick[0, 0, :].tolist() == pytest.approx(expected)
    # the axis is the one asked for; one voxel per slab is the CT itself
    along_i = thick_slices(np.moveaxis(ramp, 2, 0), (1, 1, 1), thickness_mm=4.0, axis=0)
    assert np.array_equal(along_i, np.moveaxis(out, 2, 0))
    assert np.array_equal(thick_slices(ramp, (1, 1, 5), thickness_mm=5.0), ramp.astype(np.float32))
    with pytest.raises(InputError, match="thickness_mm"):
        thick_slices(ramp, (1, 1, 1), thickness_mm=0.0)
