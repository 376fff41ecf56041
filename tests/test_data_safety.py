"""Nothing the tool did not create is deleted or replaced (issue 29, items 1-4, 10, 11).

Each data-loss case hashes every file of the user's folder before and after the command and
checks that they are byte-identical.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import (  # noqa: F401  (checkpoint, cts, masks: fixtures)
    AFFINE,
    assert_one_error_line,
    checkpoint,
    cts,
    masks,
    predict_args,
    run_cli,
    snapshot,
    tube_mask,
)

from deeptree.cli import main
from deeptree.io import write_nifti

ROOT = Path(__file__).resolve().parent.parent


def dead_pid() -> int:
    """The process id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.fixture
def cohort(tmp_path) -> Path:
    """A smoke phantom cohort of two cases."""
    from deeptree.phantom import generate_cohort

    root = tmp_path / "cohort"
    generate_cohort(root, "smoke", n=2, seed=0, progress=False)
    return root


@pytest.fixture
def dataset(tmp_path, cts) -> Path:  # noqa: F811
    """A real-looking dataset: ``imagesTr`` (the CTs) and ``labelsTr`` (their ground truth)."""
    root = tmp_path / "c2"
    for ct in sorted(cts.iterdir()):
        case_id = ct.name.removesuffix("_0000.nii.gz")
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "imagesTr" / ct.name).write_bytes(ct.read_bytes())
        write_nifti(root / "labelsTr" / f"{case_id}.nii.gz", tube_mask((20, 20, 20)), AFFINE, dtype="uint8")
    return root


# --- 1. the cache deletes only what it wrote ------------------------------------------------------
def test_train_cache_never_deletes_a_case_folder_it_did_not_create(tmp_path, cohort, capsys):
    mine = tmp_path / "mydata"
    (mine / "PHANTOM_000" / "dicom").mkdir(parents=True)
    (mine / "PHANTOM_000" / "dicom" / "IM0001.dcm").write_bytes(b"DICM precious")
    (mine / "PHANTOM_000" / "notes.txt").write_text("mine")
    before = snapshot(mine)
    argv = [
        "train", "--profile", "smoke", "--data", cohort, "--out", tmp_path / "s1", "--cache", mine,
        "--iterations", "1", "--val", "0", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(mine / "PHANTOM_000"), "not a folder of the stage-1 cache", "--cache")
    assert snapshot(mine) == before  # nothing deleted, nothing added


def test_cache_rebuilds_its_own_entries_and_only_its_own_files(tmp_path, cohort):
    from deeptree.io import list_cases
    from deeptree.stage1.cache import CACHE_MARKER, load_stage1_case

    case = list_cases(cohort)[0]
    cache = tmp_path / "cache"
    first = load_stage1_case(case, cache)
    entry = cache / case.id
    assert (entry / CACHE_MARKER).is_file()  # written with the entry: the cache's own folder
    (entry / "kept.txt").write_text("put here by hand")
    os.utime(case.label, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed input: rebuilt
    second = load_stage1_case(case, cache)
    assert np.array_equal(np.asarray(first.label), np.asarray(second.label))
    assert (entry / "kept.txt").read_text() == "put here by hand"
    # an entry of a version before the marker (only cache files in it) is rebuilt, not refused
    (entry / CACHE_MARKER).unlink()
    (entry / "kept.txt").unlink()
    os.utime(case.label, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    third = load_stage1_case(case, cache)
    assert np.array_equal(np.asarray(first.image), np.asarray(third.image))
    assert (entry / CACHE_MARKER).is_file()


# --- 2. no writing into a dataset, no replacing a file the command did not write ------------------
@pytest.mark.parametrize(
    "command",
    ["predict-folder", "predict-file", "segment", "labels", "phantom", "attention", "simulate", "evaluate"],
)
def test_no_command_writes_into_a_datasets_case_folders(tmp_path, dataset, checkpoint, masks, capsys, command):  # noqa: F811
    labels = dataset / "labelsTr"
    argv = {
        "predict-folder": predict_args(checkpoint, dataset / "imagesTr", labels),
        "predict-file": [
            "predict", dataset / "imagesTr" / "C_001_0000.nii.gz", labels / "C_009.nii.gz",
            "--checkpoint", checkpoint, "--device", "cpu",
        ],
        "segment": [
            "segment", dataset / "imagesTr" / "C_001_0000.nii.gz", labels / "C_009.nii.gz",
            "--checkpoint", checkpoint, "--gapfill", "straight", "--device", "cpu",
        ],
        "labels": ["labels", "--in", masks, "--out", labels],
        "simulate": ["simulate", masks, "--out", labels, "--no-progress"],
        "evaluate": ["evaluate", "--pred", masks, "--gt", masks, "--out", labels / "m.csv", "--no-progress"],
        "phantom": ["phantom", "--profile", "smoke", "--n", "1", "--out", labels, "--no-progress"],
        "attention": ["attention", masks, "--out", labels, "--no-progress"],
    }[command]  # fmt: skip
    before = snapshot(dataset)
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(labels), "labelsTr folder of a dataset", "another folder")
    assert snapshot(dataset) == before


def test_segment_refuses_an_existing_output_unless_overwrite(tmp_path, cts, checkpoint, capsys):  # noqa: F811
    existing = tmp_path / "existing.nii.gz"
    write_nifti(existing, tube_mask((20, 20, 20)), AFFINE, dtype="uint8")
    before = existing.read_bytes()
    argv = [
        "segment", cts / "C_001_0000.nii.gz", existing, "--checkpoint", checkpoint,
        "--gapfill", "straight", "--device", "cpu",
    ]  # fmt: skip
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(existing), "exists", "--overwrite")
    assert existing.read_bytes() == before
    status, _ = run_cli([*argv, "--overwrite"], capsys)
    assert status == 0 and existing.read_bytes() != before


def test_predict_never_replaces_a_file_of_its_out_folder_it_did_not_write(tmp_path, cts, checkpoint, capsys):  # noqa: F811
    out = tmp_path / "pred"
    write_nifti(out / "C_001.nii.gz", tube_mask((20, 20, 20)), AFFINE, dtype="uint8")  # the user's
    before = (out / "C_001.nii.gz").read_bytes()
    status, lines = run_cli(predict_args(checkpoint, cts, out), capsys)
    assert status == 1  # that case fails, the other is done
    assert any(
        str(out / "C_001.nii.gz") in line and "not written by an earlier run" in line and "--overwrite" in line
        for line in lines
    ), lines
    assert (out / "C_001.nii.gz").read_bytes() == before and (out / "C_002.nii.gz").is_file()
    # a rerun keeps its own output and still refuses the user's file
    assert main([str(a) for a in predict_args(checkpoint, cts, out)]) == 1
    printed = capsys.readouterr()
    assert "C_002: already complete, kept" in printed.out and "not written by" in printed.err
    assert (out / "C_001.nii.gz").read_bytes() == before
    # --overwrite replaces it
    assert main([str(a) for a in predict_args(checkpoint, cts, out, "--overwrite")]) == 0
    assert (out / "C_001.nii.gz").read_bytes() != before


def test_predict_of_one_ct_refuses_an_existing_output_unless_overwrite(tmp_path, cts, checkpoint, capsys):  # noqa: F811
    existing = tmp_path / "mask.nii.gz"
    existing.write_bytes(b"not mine to replace")
    argv = ["predict", cts / "C_001_0000.nii.gz", existing, "--checkpoint", checkpoint, "--device", "cpu"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(existing), "exists", "--overwrite")
    assert existing.read_bytes() == b"not mine to replace"
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0


@pytest.mark.parametrize("command", ["labels", "attention", "simulate"])
def test_batch_commands_never_replace_a_file_they_did_not_write(tmp_path, masks, capsys, command):  # noqa: F811
    out = tmp_path / "out"
    name = {"labels": "A_001.nii.gz", "attention": "A_001_attention.nii.gz", "simulate": "A_001_gaps.json"}
    user_file = out / name[command]
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b"the user's")
    argv = {
        "labels": ["labels", "--in", masks, "--out", out],
        "attention": ["attention", masks, "--out", out, "--no-progress"],
        "simulate": ["simulate", masks, "--out", out, "--no-progress"],
    }[command]
    status = main([str(a) for a in argv])
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()  # labels says it on stdout
    assert status == 1 and "Traceback" not in printed.err  # that case fails, the other is done
    assert any(str(user_file) in line and "not written by" in line and "--overwrite" in line for line in lines), lines
    assert user_file.read_bytes() == b"the user's"
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0
    assert user_file.read_bytes() != b"the user's"


# --- 3. the clean-up removes only its own temporaries ---------------------------------------------
def test_clean_up_leaves_other_tools_hidden_temporary_files(tmp_path, masks, capsys):  # noqa: F811
    out = tmp_path / "att"
    pid = dead_pid()
    others = [
        out / "notes" / ".report.md.tmp",
        out / "other_tool" / f".cache.{pid}-abc.tmp",
        out / f".cache.{pid}-abc.tmp",
        out / ".report.md.tmp",
    ]
    for path in others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("another tool's")
        two_hours_ago = time.time() - 7200
        os.utime(path, (two_hours_ago, two_hours_ago))
    mine = out / f".deeptree-A_001_attention.nii.gz.{pid}-k2j4x_9.tmp.nii.gz"  # a killed run's
    mine.write_bytes(b"half")
    before = snapshot(out)
    assert main([str(a) for a in ["attention", masks, "--out", out, "--no-progress"]]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().err
    assert not mine.exists()
    after = snapshot(out)
    assert {p: after[p] for p in before if p != mine.name} == {p: before[p] for p in before if p != mine.name}


# --- 4. phantoms are never mixed into a real dataset ----------------------------------------------
def test_phantom_refuses_an_out_holding_another_dataset(tmp_path, dataset, capsys):
    before = snapshot(dataset)
    argv = ["phantom", "--profile", "smoke", "--n", "1", "--out", dataset, "--no-progress"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(dataset / "imagesTr" / "C_001_0000.nii.gz"), "not a phantom case", "new folder")
    assert snapshot(dataset) == before


# --- 10. evaluate skips the classes files of predict ----------------------------------------------
def test_evaluate_skips_the_classes_files_predict_writes_beside_the_masks(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    mask = tube_mask()
    write_nifti(gt / "A_001.nii.gz", mask, AFFINE, dtype="uint8")
    write_nifti(pred / "A_001.nii.gz", mask, AFFINE, dtype="uint8")
    write_nifti(pred / "A_001_classes.nii.gz", mask * 2, AFFINE, dtype="uint8")  # predict --classes
    status, lines = run_cli(["evaluate", "--pred", pred, "--gt", gt, "--out", tmp_path / "m.csv", "--protocol", "atm22", "--no-progress"], capsys)
    assert status == 0, lines
    with open(tmp_path / "m.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["case"] != "summary"]
    assert [(r["case"], r["status"]) for r in rows if r["status"]] == [("A_001", "ok")]


# --- 11. view without a display -------------------------------------------------------------------
def test_view_without_a_display_is_one_line_not_a_qt_abort(tmp_path):
    ct = tmp_path / "A_001.nii.gz"
    write_nifti(ct, tube_mask(), AFFINE, dtype="uint8")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "deeptree", "view", str(ct)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert_one_error_line(lines, "deeptree view: error: napari needs a display", "desktop", "xvfb-run")
