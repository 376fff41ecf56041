"""The case-folder convention (deeptree.viz.case_folder) and ``deeptree view``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deeptree.io import InputError, write_nifti
from deeptree.viz import case_folder

needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"),
    reason="napari needs a display: run under xvfb-run (make test does)",
)

AFFINE = np.diag([0.8, 0.8, 0.5, 1.0])


def _tube_case(shape=(16, 16, 24)):
    gt = np.zeros(shape, np.uint8)
    gt[6:10, 6:10, 2:22] = 1
    broken = gt.copy()
    broken[:, :, 11:13] = 0  # a 2-slice gap between two pieces
    ct = np.where(gt == 1, -1000, -800).astype(np.int16)
    return ct, gt, broken


def _write_case_folder(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_nifti(folder / f"{name}.nii.gz", array, AFFINE)
    return folder


# --------------------------------------------------------------------------------------------
# finding and reading a case
# --------------------------------------------------------------------------------------------
def test_a_case_folder_is_read_with_spacing_and_missing_files_are_reported(tmp_path):
    ct, gt, broken = _tube_case()
    folder = _write_case_folder(tmp_path / "case", ct=ct, airway=gt, final=broken)
    case = case_folder.load_view_case(folder)
    assert case.id == "case" and case.spacing == pytest.approx((0.8, 0.8, 0.5))
    np.testing.assert_array_equal(case.ct, ct)
    np.testing.assert_array_equal(case.gt, gt)  # airway.nii.gz is an accepted ground-truth name
    assert list(case.predictions) == ["final"] and case.predictions["final"].dtype == np.uint8
    assert case.anatomy is None and case.attention is None and case.centres is None
    assert (
        f"{folder}: not found, skipped: lung, anatomy, broken, breakage, stage1, attention, centres"
        in case.messages
    )


def test_centres_come_from_the_attention_map_with_their_gap_sizes(tmp_path):
    from deeptree.attention import breakage_attention

    _, gt, broken = _tube_case()
    attention = breakage_attention(broken)
    folder = _write_case_folder(tmp_path / "c", gt=gt, stage1=broken, attention=attention)
    case = case_folder.load_view_case(folder)
    assert case.centres.shape == (1, 3)
    assert (
        tuple(case.centres[0][:2]) in {(7, 7), (7, 8), (8, 7), (8, 8)}
        and 11 <= case.centres[0][2] <= 12
    )
    assert case.gap_sizes.tolist() == [int((attention > 0.5).sum())]
    assert any("computed from the attention map" in m for m in case.messages)


def test_gap_sizes_match_each_centre_to_its_region():
    h_bar = np.zeros((10, 10, 10), np.float32)
    h_bar[1:3, 1:3, 1:3] = 0.9  # 8 voxels
    h_bar[6:9, 6:7, 6:7] = 0.8  # 3 voxels
    centres = np.array([[7, 6, 6], [2, 2, 2], [5, 5, 5]])  # the last lies outside: nearest region
    assert case_folder.gap_sizes(h_bar, centres).tolist() == [3, 8, 3]
    assert case_folder.gap_sizes(np.zeros((4, 4, 4)), centres[:1]).tolist() == [0]


@pytest.mark.parametrize(
    "name, text",
    [
        ("centres.json", json.dumps([[1, 2, 3], [4, 5, 6]])),
        ("centres.json", json.dumps({"centres": [[1, 2, 3], [4, 5, 6]], "sizes": [10, 20]})),
        (
            "centres.json",
            json.dumps([{"centre": [1, 2, 3], "size": 10}, {"centre": [4, 5, 6], "size": 20}]),
        ),
        ("centres.csv", "i,j,k,size\n1,2,3,10\n4,5,6,20\n"),
        ("centres.csv", "1,2,3\n4,5,6\n"),
    ],
)
def test_read_centres_formats(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    centres, sizes = case_folder.read_centres(path)
    np.testing.assert_array_equal(centres, [[1, 2, 3], [4, 5, 6]])
    assert centres.dtype == np.int64
    assert sizes is None or sizes.tolist() == [10, 20]


def test_bad_files_are_skipped_with_a_message(tmp_path):
    ct, gt, broken = _tube_case()
    folder = _write_case_folder(tmp_path / "case", ct=ct, gt=gt, anatomy=gt * 7)
    write_nifti(folder / "stage1.nii.gz", broken[:, :, :10], AFFINE)  # wrong grid
    (folder / "final.nii.gz").write_bytes(b"not a nifti")
    (folder / "centres.json").write_text("{broken")
    case = case_folder.load_view_case(folder)
    assert case.ct is not None and case.gt is not None
    assert case.anatomy is None and case.predictions == {} and case.centres is None
    text = "\n".join(case.messages)
    assert "anatomy.nii.gz: expected anatomy classes" in text
    assert "stage1.nii.gz: shape (16, 16, 10) does not match (16, 16, 24): skipped" in text
    assert "final.nii.gz: not a readable NIfTI file" in text
    assert "centres.json: not a breakage-centres file" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no readable volume"):
        case_folder.load_view_case(empty)
    with pytest.raises(InputError, match="no such file"):
        case_folder.load_view_case(tmp_path / "absent")


def test_a_case_of_an_atm22_dataset_with_prediction_folders(tmp_path):
    ct, gt, broken = _tube_case()
    root = tmp_path / "dataset"
    for case_id in ("ATM_001", "ATM_002"):
        write_nifti(root / "imagesTr" / f"{case_id}_0000.nii.gz", ct, AFFINE)
        write_nifti(root / "labelsTr" / f"{case_id}.nii.gz", gt, AFFINE)
    write_nifti(root / "predictions" / "stage1" / "ATM_002.nii.gz", broken, AFFINE)
    write_nifti(root / "lungsTr" / "ATM_002.nii.gz", gt, AFFINE)
    (root / "centres").mkdir()
    (root / "centres" / "ATM_002.json").write_text(
        json.dumps({"centres": [[8, 8, 12]], "sizes": [32]})
    )
    case = case_folder.load_view_case(root, "ATM_002")
    assert case.id == "ATM_002"
    assert sorted(case.paths) == ["centres", "ct", "gt", "lung", "stage1"]
    np.testing.assert_array_equal(case.predictions["stage1"], broken)
    assert case.centres.tolist() == [[8, 8, 12]] and case.gap_sizes.tolist() == [32]
    first = case_folder.load_view_case(root)
    assert first.id == "ATM_001" and any("2 cases, showing ATM_001" in m for m in first.messages)
    with pytest.raises(InputError, match="no case 'ATM_009'"):
        case_folder.load_view_case(root, "ATM_009")


def test_files_kept_elsewhere_are_added_by_kind(tmp_path):
    ct, gt, broken = _tube_case()
    root = tmp_path / "dataset"
    write_nifti(root / "imagesTr" / "P_000_0000.nii.gz", ct, AFFINE)
    write_nifti(root / "labelsTr" / "P_000.nii.gz", gt, AFFINE)
    # deeptree simulate / attention without --dataset-layout, written into the dataset root
    write_nifti(root / "P_000_broken.nii.gz", broken, AFFINE)
    write_nifti(root / "P_000_breakage.nii.gz", gt - broken, AFFINE)
    (root / "P_000_centres.json").write_text(json.dumps({"case": "P_000", "centres": [[8, 8, 11]]}))
    # deeptree predict --out: <id>.nii.gz, and --classes: <id>_classes.nii.gz
    write_nifti(tmp_path / "pred" / "P_000.nii.gz", broken, AFFINE)
    write_nifti(tmp_path / "pred" / "P_000_classes.nii.gz", gt * 3, AFFINE)
    extra = {"stage1": tmp_path / "pred", "anatomy": tmp_path / "pred"}
    case = case_folder.load_view_case(root, "P_000", extra)
    assert case.paths["stage1"] == tmp_path / "pred" / "P_000.nii.gz"
    assert case.paths["anatomy"] == tmp_path / "pred" / "P_000_classes.nii.gz"
    assert list(case.predictions) == ["broken", "stage1"]
    np.testing.assert_array_equal(case.breakage, gt - broken)
    assert case.centres.tolist() == [[8, 8, 11]] and case.gap_sizes is None  # no attention map
    with pytest.raises(InputError, match="unknown kind"):
        case_folder.load_view_case(root, "P_000", {"stage3": tmp_path})
    empty = tmp_path / "empty"
    empty.mkdir()
    case = case_folder.load_view_case(root, "P_000", {"final": empty})
    assert any("--add final=" in m and "no file for case P_000" in m for m in case.messages)


def test_a_run_folder_of_case_folders(tmp_path):
    ct, gt, broken = _tube_case()
    run = tmp_path / "run"
    _write_case_folder(run / "case_a", gt=gt)
    _write_case_folder(run / "case_b", gt=gt, final=broken)
    (run / "logs").mkdir()
    case = case_folder.load_view_case(run, "case_b")
    assert case.id == "case_b" and list(case.predictions) == ["final"]
    first = case_folder.load_view_case(run)
    assert first.id == "case_a" and any(
        "2 case folders, showing case_a" in m for m in first.messages
    )
    with pytest.raises(InputError, match="no case folder 'logs'"):
        case_folder.load_view_case(run, "logs")


def test_kinds_from_file_names_and_values(tmp_path):
    guess = case_folder.guess_kind_from_name
    assert guess("case/gt.nii.gz") == "gt" and guess("case/airway.nii") == "gt"
    assert guess("d/imagesTr/ATM_001_0000.nii.gz") == "ct"
    assert guess("d/labelsTr/ATM_001.nii.gz") == "gt"
    assert guess("d/lungsTr/ATM_001.nii.gz") == "lung"
    assert guess("d/predictions/final/ATM_001.nii.gz") == "final"
    assert guess("somewhere/scan.nii.gz") is None
    by_values = case_folder.guess_kind_from_array
    assert by_values(np.array([[[0, 1]]], np.uint8)) == "gt"
    assert by_values(np.array([[[0, 3]]], np.uint8)) == "anatomy"
    assert by_values(np.array([[[0.0, 0.3]]], np.float32)) == "attention"
    assert by_values(np.array([[[-1000, 40]]], np.int16)) == "ct"
    # one unnamed file opens with the kind its values say
    write_nifti(tmp_path / "scan.nii.gz", np.full((4, 4, 4), -900, np.int16), AFFINE)
    case = case_folder.load_view_case(tmp_path / "scan.nii.gz")
    assert case.ct is not None and case.id == "scan"


def test_the_real_samples_are_case_folders(cip_ct64_dir, atm001_path):
    case = case_folder.load_view_case(cip_ct64_dir)
    assert sorted(case.paths) == ["ct", "gt", "lung"]
    assert case.ct.shape == case.gt.shape == case.lung.shape == (64, 64, 79)
    assert case.spacing[0] == pytest.approx(4.17, abs=0.01)
    _, files, _ = case_folder.find_case_files(atm001_path.parent)  # (not read: 178 M voxels)
    assert files == {"gt": atm001_path}


# --------------------------------------------------------------------------------------------
# deeptree view
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_case_folder(tmp_path_factory):
    """A smoke phantom as a case folder with a broken stage-1 prediction, the final (= GT)
    prediction, the attention map and centres.json."""
    from deeptree.attention import breakage_attention, breakage_centres
    from deeptree.phantom import generate_case

    case = generate_case("smoke", 0)
    gt = case.airway
    k = np.argwhere(gt).mean(axis=0).round().astype(int)[2]
    stage1 = gt.copy()
    stage1[:, :, k : k + 2] = 0  # cut the tree across two slices
    attention = breakage_attention(stage1)
    centres = breakage_centres(attention)
    folder = tmp_path_factory.mktemp("phantom") / case.id
    folder.mkdir()
    for name, array in (
        ("ct", case.ct),
        ("gt", gt),
        ("stage1", stage1),
        ("final", gt),
        ("attention", attention),
    ):
        write_nifti(folder / f"{name}.nii.gz", array, case.affine)
    (folder / "centres.json").write_text(json.dumps({"centres": centres.tolist()}))
    return folder


@needs_display
@pytest.mark.gui
def test_deeptree_view_opens_and_closes_a_phantom_case_headless(
    phantom_case_folder, tmp_path, capsys
):
    import matplotlib.image as mpimg
    import napari

    from deeptree.cli import main

    png = tmp_path / "out" / "view.png"
    assert (
        main(["view", str(phantom_case_folder), "--screenshot", str(png), "--size", "300", "400"])
        == 0
    )
    out, err = capsys.readouterr()
    assert "not found, skipped: lung, anatomy, broken, breakage" in err
    assert "attention, centres, ct, final, gt, stage1" in out
    picture = mpimg.imread(png)
    assert picture.shape[:2] == (300, 400) and picture[..., :3].std() > 0.02
    assert [p.name for p in png.parent.iterdir()] == ["view.png"]  # written atomically
    assert napari.current_viewer() is None  # the viewer was closed
    # and at a breakage centre, in 2D
    png2 = tmp_path / "gap.png"
    assert (
        main(
            [
                "view",
                str(phantom_case_folder),
                "--screenshot",
                str(png2),
                "--ndisplay",
                "2",
                "--breakage",
                "1",
                "--size",
                "300",
                "400",
            ]
        )
        == 0
    )
    assert "breakage 1/" in capsys.readouterr().out
    assert mpimg.imread(png2)[..., :3].std() > 0.02


def test_deeptree_view_reports_a_missing_folder(tmp_path, capsys):
    from deeptree.cli import main

    assert main(["view", str(tmp_path / "nowhere"), "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    assert main(["view", str(tmp_path), "--add", "stage1"]) == 2
    assert "expected KIND=PATH" in capsys.readouterr().err
