"""Tests of the classical region-growing baseline."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from deeptree import io
from deeptree.evaluation.baselines import find_trachea_seed, region_growing
from deeptree.phantom import generate_case
from deeptree.phantom.raster import Grid, centreline_voxels


def _toy_chest(rng, leak=False):
    """A 40x40x50 'chest' at 1 mm: body at 40 HU, two lungs at -860 HU with noise, a
    vertical trachea (-1000) at the centre that splits into two walled bronchi; one thin
    branch whose lumen is raised to -700 HU (partial volume); optionally a hole in the
    tracheal wall that opens the trachea into the right lung."""
    ct = np.full((40, 40, 50), -1000.0)
    i, j, k = np.meshgrid(np.arange(40), np.arange(40), np.arange(50), indexing="ij")
    body = (i - 19.5) ** 2 / 19**2 + (j - 19.5) ** 2 / 17**2 <= 1
    ct[body] = 40.0
    lungs = (
        body & (np.abs(i - 19.5) > 4) & (np.abs(i - 19.5) < 15) & (np.abs(j - 19.5) < 10) & (k < 40)
    )
    ct[lungs] = -860.0 + rng.normal(0, 15, lungs.sum())
    wall = ((i - 19.5) ** 2 + (j - 19.5) ** 2 <= 16) & (k >= 25)
    ct[wall] = 40.0
    trachea = ((i - 19.5) ** 2 + (j - 19.5) ** 2 <= 6.5) & (k >= 25)
    ct[trachea] = -1000.0
    for sign in (1, -1):  # bronchi: wall first, then lumen
        r2 = (i - 19.5 - sign * (25 - k) * 0.4) ** 2 + (j - 19.5) ** 2
        ct[(r2 <= 14) & (k >= 10) & (k < 26)] = 40.0
    bronchus_r = ((i - 19.5 - (25 - k) * 0.4) ** 2 + (j - 19.5) ** 2 <= 3) & (k >= 12) & (k < 26)
    bronchus_l = ((i - 19.5 + (25 - k) * 0.4) ** 2 + (j - 19.5) ** 2 <= 3) & (k >= 12) & (k < 26)
    ct[bronchus_r | bronchus_l] = -1000.0
    thin = (np.abs(i - 14) <= 0) & (np.abs(j - 19) <= 0) & (k >= 4) & (k < 13)
    ct[thin] = -700.0
    if leak:  # a hole in the wall: the lung touches the trachea
        ct[22:25, 19:21, 30:32] = -870.0
    return ct, (trachea | bronchus_r | bronchus_l) & (ct == -1000.0)


def test_seed_is_found_in_the_trachea():
    ct, airway = _toy_chest(np.random.default_rng(0))
    seed = find_trachea_seed(ct, (1.0, 1.0, 1.0))
    assert airway[seed]
    assert seed[2] == ct.shape[2] - 1  # the top slice


def test_region_growing_finds_the_large_airways_without_leaking():
    ct, airway = _toy_chest(np.random.default_rng(0))
    mask, info = region_growing(ct, (1.0, 1.0, 1.0), return_info=True)
    assert mask.dtype == np.uint8
    labels, _ = ndimage.label(airway, structure=np.ones((3, 3, 3)))
    connected = labels == labels[info["seed"]]
    assert connected.sum() > 0.95 * airway.sum()
    assert (mask[connected] == 1).all()  # trachea and both bronchi, every connected voxel
    assert mask.sum() <= airway.sum() * 1.05  # no leak into the lungs
    assert info["threshold_hu"] < -700  # stopped before the raised-density branch leaks
    assert mask[14, 19, 8] == 0  # the thin branch with raised density is missed


def test_region_growing_stops_before_a_leak():
    ct, airway = _toy_chest(np.random.default_rng(1), leak=True)
    mask, info = region_growing(ct, (1.0, 1.0, 1.0), return_info=True)
    lungs = (ct > -950) & (ct < -700)
    assert (mask.astype(bool) & lungs).sum() < 20
    assert info["volumes_ml"][-1][1] > 1.5 * info["volumes_ml"][-2][1]  # the explosion seen


def test_inputs_are_not_modified():
    ct, _ = _toy_chest(np.random.default_rng(0))
    before = ct.copy()
    region_growing(ct, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(ct, before)


def test_bad_inputs():
    ct, _ = _toy_chest(np.random.default_rng(0))
    with pytest.raises(io.InputError, match="outside the CT"):
        region_growing(ct, (1.0, 1.0, 1.0), seed=(99, 0, 0))
    with pytest.raises(io.InputError, match="spacing"):
        region_growing(ct, (1.0, 0.0, 1.0))
    with pytest.raises(io.InputError, match="3D"):
        region_growing(ct[:, :, 0], (1.0, 1.0, 1.0))
    with pytest.raises(io.InputError, match="no trachea found"):
        region_growing(np.full((30, 30, 30), 40.0), (1.0, 1.0, 1.0))


def test_on_a_phantom_finds_trachea_and_main_bronchi_but_not_everything():
    case = generate_case("cpu", seed=2)
    mask = region_growing(case.ct, case.spacing).astype(bool)
    gt = case.airway.astype(bool)
    grid = Grid(case.ct.shape, tuple(case.spacing), tuple(case.affine[:3, 3]))
    for b in case.tree.branches:
        if b.generation <= 1:
            idx = centreline_voxels(grid, b.start_mm, b.end_mm)
            assert mask[tuple(idx.T)].mean() > 0.95, (
                f"branch {b.id} (generation {b.generation}) missed"
            )
    recall = (mask & gt).sum() / gt.sum()
    precision = (mask & gt).sum() / mask.sum()
    assert precision > 0.9
    assert recall < 0.85  # the phantom is not trivial for a threshold


def test_on_the_real_ct_sample(cip_ct64_dir):
    ct = io.read_nifti(cip_ct64_dir / "ct.nii.gz")
    gt = io.read_nifti(cip_ct64_dir / "airway.nii.gz").array > 0
    mask = region_growing(ct.array, ct.spacing).astype(bool)
    assert mask.sum() > 0
    assert (mask & gt).sum() / mask.sum() > 0.9  # what it finds is airway
