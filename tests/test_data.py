"""Tests of deeptree.stage1.data: normalisation, patch sampling ratios, padding, augmentation,
determinism, case preparation and its cache, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeptree.io import CasePaths, InputError, read_nifti, write_nifti
from deeptree.stage1.cache import load_stage1_case
from deeptree.stage1.data import (
    AugmentConfig,
    Stage1Case,
    Stage1PatchDataset,
    check_ratios,
    choose_centre,
    class_locations,
    crop_patch,
    normalize_ct,
    resample_patch,
    resample_patches,
    sample_patch,
    split_cases,
)
from deeptree.stage1.losses import gul_distance_weight


def hand_case(shape=(48, 48, 40), label=None) -> Stage1Case:
    """A case with one tube per class: class 1 thick, class 3 thin (far from class 1)."""
    if label is None:
        label = np.zeros(shape, np.uint8)
        label[18:24, 18:24, :] = 1
        label[5:8, 5:8, 5:35] = 2
        label[44:46, 44, 5:30] = 3
    image = normalize_ct(np.where(label > 0, -1000, -850).astype(np.int16))
    return Stage1Case(
        id="hand",
        image=image,
        label=label,
        distance=gul_distance_weight(label),
        locations=class_locations(label, np.random.default_rng(0)),
        spacing=(1.0, 1.0, 1.0),
        affine=np.eye(4),
    )


def test_normalize_ct_window_and_input_untouched():
    ct = np.array([[[-2000, -1000, 200, 600, 3000]]], dtype=np.int16)
    before = ct.copy()
    out = normalize_ct(ct)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0, 0, 0.75, 1, 1])
    assert np.array_equal(ct, before)


def test_choose_centre_returns_requested_class_ratios():
    case = hand_case()
    rng = np.random.default_rng(1)
    ratios = (0.1, 0.2, 0.3, 0.4)
    chosen = []
    for _ in range(4000):
        centre, c = choose_centre(case.locations, case.label.shape, ratios, rng)
        if c > 0:
            assert case.label[tuple(centre)] == c  # centred on a voxel of the drawn class
        chosen.append(c)
    freq = np.bincount(chosen, minlength=4) / len(chosen)
    np.testing.assert_allclose(freq, ratios, atol=0.03)


def test_absent_class_is_left_out_and_ratios_renormalised():
    case = hand_case()
    case.locations[3] = np.zeros((0, 3), np.int32)
    rng = np.random.default_rng(0)
    shape = case.label.shape
    assert all(choose_centre(case.locations, shape, (0, 0, 0, 1), rng)[1] == 0 for _ in range(5))
    chosen = [
        choose_centre(case.locations, shape, (0.2, 0.2, 0.2, 0.4), rng)[1] for _ in range(3000)
    ]
    freq = np.bincount(chosen, minlength=4) / len(chosen)
    np.testing.assert_allclose(freq, [1 / 3, 1 / 3, 1 / 3, 0], atol=0.03)
    with pytest.raises(InputError, match="ratios"):
        check_ratios((1, 2, 3))


def test_patches_contain_the_small_class_as_often_as_asked():
    case = hand_case()
    ds = Stage1PatchDataset([case], (16, 16, 16), ratios=(0, 0, 0, 1), augment=AugmentConfig())
    items = [ds[i] for i in range(40)]
    assert all((it["label"] == 3).any() for it in items)
    ds = Stage1PatchDataset([case], (16, 16, 16), ratios=(0, 1, 0, 0), augment=None)
    assert not any((ds[i]["label"] == 3).any() for i in range(20))


def test_items_shapes_and_determinism():
    case = hand_case()
    ds = Stage1PatchDataset([case], (16, 24, 16), seed=3)
    a, b = ds[7], ds[7]
    assert a["image"].shape == (1, 16, 24, 16) and a["image"].dtype == torch.float32
    assert a["label"].dtype == torch.int64 and a["distance"].shape == (1, 16, 24, 16)
    assert all(torch.equal(a[k], b[k]) for k in ("image", "label", "distance"))
    assert not torch.equal(ds[8]["image"], a["image"]) or not torch.equal(
        ds[9]["image"], a["image"]
    )
    batch = torch.utils.data.default_collate([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 1, 16, 24, 16)


def test_ct_smaller_than_patch_is_padded():
    label = np.zeros((12, 40, 10), np.uint8)
    label[4:8, 4:8, :] = 1
    case = hand_case(label=label)
    item = sample_patch(case, (16, 16, 16), (0, 1, 0, 0), np.random.default_rng(0), augment=None)
    assert item["image"].shape == (1, 16, 16, 16)
    assert (item["label"] == 1).any()
    # padding is air (0) in the image, background in the label, 1 in the distance
    assert float(item["image"][0, 0, 0, -1]) == 0.0 and int(item["label"][0, 0, 0, -1]) == 0
    assert float(item["distance"][0, 0, 0, -1]) == 1.0


def test_crop_patch_outside_and_inside():
    vol = np.arange(27).reshape(3, 3, 3)
    np.testing.assert_array_equal(crop_patch(vol, (0, 0, 0), (3, 3, 3)), vol)
    out = crop_patch(vol, (-1, 0, 0), (2, 1, 1), fill=-5)
    np.testing.assert_array_equal(out.ravel(), [-5, 0])
    assert (crop_patch(vol, (5, 5, 5), (2, 2, 2), fill=9) == 9).all()


def test_resample_identity_equals_crop_and_rotation_keeps_labels():
    case = hand_case()
    centre = np.array([20, 20, 20])
    same = resample_patch(case.label, centre, (16, 16, 16), np.eye(3), order=0, fill=0)
    np.testing.assert_array_equal(same, crop_patch(case.label, centre - 8, (16, 16, 16)))
    # 90 degrees about k: a tube along k stays the same tube, moved to its rotated position
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    turned = resample_patch(case.label, centre + 0.5, (16, 16, 16), rot, order=0, fill=0)
    assert set(np.unique(turned)) <= {0, 1, 2, 3}
    assert (turned == 1).sum() == (crop_patch(case.label, centre - 7, (16, 16, 16)) == 1).sum()


def test_resample_patches_share_one_grid_and_match_a_hand_computed_point():
    rng = np.random.default_rng(0)
    image = rng.random((30, 28, 26)).astype(np.float32)
    label = (rng.random((30, 28, 26)) > 0.7).astype(np.uint8)
    angle = np.deg2rad(20.0)
    matrix = 1.1 * np.array(
        [[1.0, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    centre = np.array([15.3, 13.7, 12.2])
    together = resample_patches([(image, 1, 0.0), (label, 0, 0)], centre, (9, 8, 7), matrix)
    alone = [
        resample_patch(image, centre, (9, 8, 7), matrix, 1, 0.0),
        resample_patch(label, centre, (9, 8, 7), matrix, 0, 0),
    ]
    for a, b in zip(together, alone, strict=True):
        assert a.shape == (9, 8, 7) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # output voxel (x, y, z) samples the input at centre + matrix @ ((x, y, z) - (size - 1) / 2):
    # check one point by trilinear interpolation by hand
    from scipy.ndimage import map_coordinates

    out_index = np.array([2, 5, 1])
    pos = centre + matrix @ (out_index - (np.array([9, 8, 7]) - 1) / 2.0)
    expected = map_coordinates(image, pos[:, None], order=1)[0]
    assert abs(together[0][tuple(out_index)] - expected) < 1e-5


def test_split_cases():
    assert split_cases([1, 2, 3, 4], 1) == ([1, 2, 3], [4])
    assert split_cases([1, 2], 0) == ([1, 2], [])
    with pytest.raises(InputError, match="at least 3 cases"):
        split_cases([1, 2], 2)


def test_missing_label_and_other_shape_are_clear_errors(tmp_path):
    ct = tmp_path / "imagesTr" / "P_0000.nii.gz"
    write_nifti(ct, np.full((8, 8, 8), -1000, np.int16), np.eye(4))
    with pytest.raises(InputError, match="no label"):
        load_stage1_case(CasePaths("P", ct, None))
    lab = tmp_path / "labelsTr" / "P.nii.gz"
    write_nifti(lab, np.zeros((8, 8, 6), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="does not match"):
        load_stage1_case(CasePaths("P", ct, lab))
    write_nifti(lab, np.zeros((8, 8, 8), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="empty"):
        load_stage1_case(CasePaths("P", ct, lab))
    with pytest.raises(InputError, match="no CT"):
        load_stage1_case(CasePaths("P", None, lab))


def test_prepare_real_case_and_cache(tmp_path, cip_ct64_dir):
    from deeptree.orientation import to_ras
    from deeptree.stage1.cache import load_cohort
    from deeptree.stage1.data import class_frequencies

    root = tmp_path / "ds"
    for name, target in (("ct", "imagesTr/CIP_0000.nii.gz"), ("airway", "labelsTr/CIP.nii.gz")):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / target).write_bytes((cip_ct64_dir / f"{name}.nii.gz").read_bytes())
    cases = load_cohort(root, tmp_path / "cache")
    case = cases[0]
    label = read_nifti(cip_ct64_dir / "airway.nii.gz")  # stored LPS: prepared in RAS
    airway = to_ras(label.array > 0, label.affine)[0]
    assert case.image.dtype == np.float32 and 0 <= case.image.min() and case.image.max() <= 1
    np.testing.assert_array_equal(case.label > 0, airway)  # the classes cover exactly the airway
    assert set(np.unique(case.label)) >= {0, 1}
    assert case.distance.shape == airway.shape and np.all(case.distance[~airway] == 1)
    assert all(np.all(case.label[tuple(loc.T)] == c) for c, loc in enumerate(case.locations) if c)
    freq = class_frequencies(cases)
    assert sum(freq.values()) == airway.size and freq[1] > 0
    again = load_cohort(root, tmp_path / "cache")[0]  # from the cache: memory-mapped, same bytes
    assert isinstance(again.image, np.memmap)
    np.testing.assert_array_equal(again.label, case.label)
    item = Stage1PatchDataset(cases, (32, 32, 32), seed=0)[0]
    assert item["image"].shape == (1, 32, 32, 32)
