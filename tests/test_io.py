"""Tests of deeptree.io: NIfTI round trips, the ATM'22 layout, and one test per bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from deeptree import io
from deeptree.io import InputError


def _affine(spacing=(0.8, 0.8, 0.5)):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = (-100.0, -120.0, 30.0)
    return a


def _save(path: Path, array, affine=None) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(array), _affine() if affine is None else affine), str(path))
    return path


# ------------------------------------------------------------------------------- round trips
def test_write_read_round_trip_keeps_data_affine_and_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 1000
    path = io.write_nifti(tmp_path / "ct.nii.gz", data, _affine())
    volume = io.read_nifti(path)
    np.testing.assert_array_equal(volume.array, data)
    assert volume.array.dtype == np.int16
    np.testing.assert_allclose(volume.affine, _affine())
    assert volume.spacing == pytest.approx((0.8, 0.8, 0.5))


def test_write_bool_mask_is_stored_as_uint8(tmp_path):
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    volume = io.read_nifti(io.write_nifti(tmp_path / "m.nii.gz", mask, np.eye(4)))
    assert volume.array.dtype == np.uint8
    assert volume.array.sum() == 1


def test_write_leaves_no_temporary_file_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    io.write_nifti(target, np.zeros((2, 2, 2), np.uint8), np.eye(4))
    before = target.read_bytes()

    def failing_write(tmp):
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, failing_write)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


def test_read_does_not_modify_input_file(tmp_path, atm001_path):
    before = atm001_path.read_bytes()
    io.read_nifti(atm001_path)
    assert atm001_path.read_bytes() == before


# ------------------------------------------------------------------------------- real samples
def test_read_real_atm001_mask(atm001_path):
    volume = io.read_nifti(atm001_path)
    assert volume.array.shape == (512, 512, 679)
    assert volume.spacing == pytest.approx((0.82, 0.82, 0.5), abs=0.01)
    mask = io.check_binary_mask(volume.array, str(atm001_path))
    assert mask.dtype == bool and 10_000 < mask.sum() < 2_000_000


def test_load_real_cip_case_with_label(cip_ct64_dir):
    case = io.load_case(cip_ct64_dir / "ct.nii.gz", cip_ct64_dir / "airway.nii.gz")
    assert case.ct.shape == case.label.shape == (64, 64, 79)
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) <= {0, 1}
    # air in the trachea and lungs, soft tissue around: a real CT in HU
    assert case.ct.min() < -900 and case.ct.max() > 100
    assert case.id == "ct"


def test_read_real_totalseg_ct(totalseg_ct_path):
    volume = io.read_nifti(totalseg_ct_path)
    assert volume.array.shape == (120, 126, 164)
    assert volume.spacing == pytest.approx((1.5, 1.5, 1.5), abs=0.01)


# ------------------------------------------------------------------------------- layout
def test_atm22_layout_lists_cases_and_reports_missing_sides(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    ct = np.full((4, 4, 4), -1000, np.int16)
    label = np.zeros((4, 4, 4), np.uint8)
    label[1:3, 1:3, :] = 1
    for case_id in ("ATM_001", "ATM_002"):
        image_name, label_name = io.case_file_names(case_id)
        io.write_nifti(tmp_path / "imagesTr" / image_name, ct, _affine())
        io.write_nifti(tmp_path / "labelsTr" / label_name, label, _affine())
    io.write_nifti(tmp_path / "imagesTr" / "ATM_003_0000.nii.gz", ct, _affine())
    cases = io.list_cases(tmp_path)
    assert [c.id for c in cases] == ["ATM_001", "ATM_002", "ATM_003"]
    assert cases[2].label is None and cases[0].label.name == "ATM_001.nii.gz"
    loaded = list(io.iter_cases(tmp_path, require_label=False))
    assert [c.id for c in loaded] == ["ATM_001", "ATM_002", "ATM_003"]
    with pytest.raises(InputError, match="ATM_003 has no label"):
        list(io.iter_cases(tmp_path))


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(InputError, match="not a dataset in the ATM'22 layout"):
        io.list_cases(tmp_path)


def test_case_id_from_path():
    assert io.case_id_from_path("x/imagesTr/ATM_001_0000.nii.gz") == "ATM_001"
    assert io.case_id_from_path("labelsTr/ATM_001.nii.gz") == "ATM_001"
    assert io.case_id_from_path("PHANTOM_007.nii") == "PHANTOM_007"


# ------------------------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(InputError, match=r"nope\.nii\.gz: file not found"):
        io.read_nifti(path)


def test_not_nifti(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"this is not an image"))
    with pytest.raises(InputError, match=r"notes\.nii\.gz: not a readable NIfTI file"):
        io.read_nifti(path)


def test_text_file_with_other_extension(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"readme\.txt: not a readable NIfTI file"):
        io.read_nifti(path)


def test_2d_array_file(tmp_path):
    path = _save(tmp_path / "flat.nii.gz", np.zeros((8, 8), np.int16), np.eye(4))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: expected a 3D volume, got 2D"):
        io.read_nifti(path)


def test_4d_array_file(tmp_path):
    path = _save(tmp_path / "series.nii.gz", np.zeros((4, 4, 4, 3), np.int16))
    with pytest.raises(InputError, match=r"series\.nii\.gz: expected a 3D volume, got 4D"):
        io.read_nifti(path)


def test_4d_file_with_a_single_volume_is_accepted(tmp_path):
    path = _save(tmp_path / "single.nii.gz", np.zeros((4, 4, 4, 1), np.int16))
    assert io.read_nifti(path).array.shape == (4, 4, 4)


def test_nan_voxels(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = _save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: 1 voxels are NaN or infinite"):
        io.read_nifti(path)


def test_zero_spacing(tmp_path):
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), None)
    image.header["pixdim"][2] = 0.0  # a header that says a voxel is 0 mm wide
    path = tmp_path / "flat_voxels.nii.gz"
    nib.save(image, str(path))
    with pytest.raises(InputError, match=r"flat_voxels\.nii\.gz: spacing must be positive"):
        io.read_nifti(path)


def test_ct_label_shape_mismatch(tmp_path):
    ct = _save(tmp_path / "ct.nii.gz", np.zeros((4, 4, 4), np.int16))
    label = _save(tmp_path / "label.nii.gz", np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match=r"label\.nii\.gz: shape \(4, 4, 5\) does not match"):
        io.load_case(ct, label)


def test_ct_label_affine_mismatch(tmp_path):
    ct = _save(tmp_path / "ct.nii.gz", np.zeros((4, 4, 4), np.int16))
    shifted = _affine()
    shifted[0, 3] += 5.0
    label = _save(tmp_path / "label.nii.gz", np.zeros((4, 4, 4), np.uint8), shifted)
    with pytest.raises(InputError, match=r"label\.nii\.gz: affine does not match the CT"):
        io.load_case(ct, label)


def test_non_binary_label(tmp_path):
    ct = _save(tmp_path / "ct.nii.gz", np.zeros((4, 4, 4), np.int16))
    label = _save(tmp_path / "label.nii.gz", np.full((4, 4, 4), 2, np.uint8))
    with pytest.raises(
        InputError, match=r"label\.nii\.gz: expected a binary mask \(0/1\), found values 2"
    ):
        io.load_case(ct, label)


def test_check_binary_mask_empty_and_allowed_empty():
    with pytest.raises(InputError, match="gt: the mask is empty"):
        io.check_binary_mask(np.zeros((2, 2, 2), np.uint8), "gt")
    assert not io.check_binary_mask(np.zeros((2, 2, 2)), "gt", allow_empty=True).any()


def test_check_binary_mask_does_not_modify_input():
    mask = np.zeros((3, 3, 3), np.uint8)
    mask[0, 0, 0] = 1
    result = io.check_binary_mask(mask, "m")
    assert result.dtype == bool and mask.dtype == np.uint8 and mask.sum() == 1


@pytest.mark.parametrize("spacing", [(1, 1), (1, 0, 1), (1, -2, 1), (1, float("nan"), 1), "abc"])
def test_check_spacing_rejects(spacing):
    with pytest.raises(InputError, match="case7"):
        io.check_spacing(spacing, "case7")


def test_write_rejects_bad_name_and_affine(tmp_path):
    with pytest.raises(InputError, match=r"out\.png: output name must end with \.nii"):
        io.write_nifti(tmp_path / "out.png", np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(InputError, match="affine must be 4x4"):
        io.write_nifti(tmp_path / "out.nii.gz", np.zeros((2, 2, 2)), np.eye(3))
    assert list(tmp_path.iterdir()) == []


def test_nifti_inputs_file_folder_and_errors(tmp_path):
    a = io.write_nifti(tmp_path / "b.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    b = io.write_nifti(tmp_path / "a.nii", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    (tmp_path / "notes.txt").write_text("x")
    assert io.nifti_inputs(tmp_path) == [b, a]
    assert io.nifti_inputs(a) == [a]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty: no \.nii or \.nii\.gz files"):
        io.nifti_inputs(empty)
    with pytest.raises(InputError, match="missing: no such file or folder"):
        io.nifti_inputs(tmp_path / "missing")
