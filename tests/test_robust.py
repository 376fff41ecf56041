"""Robustness of the commands (issue 29, items 6, 8, 9, 12): ``train --resume`` refuses another
run's options before any data work; running out of memory, a full disk and a damaged
checkpoint are one line naming the file; SIGTERM during training writes a checkpoint like
Ctrl-C; options that would fail every case (or take hours) are refused once, up front."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deeptree.cli import main
from deeptree.phantom.cases import generate_cohort

ROOT = Path(__file__).resolve().parent.parent


# --- helpers ---------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    """``deeptree argv`` in this process: the exit status and the lines on stderr (warnings
    left out)."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.strip() and ": warning: " not in line]


def assert_one_error_line(lines: list[str], *needles: str) -> None:
    assert len(lines) == 1, lines
    assert ": error: " in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, Path]:
    """A smoke cohort of 3 phantoms and a finished 4-iteration run on it (1 validation case)."""
    root = tmp_path_factory.mktemp("smoke")
    data, out = root / "cohort", root / "s1"
    generate_cohort(data, "smoke", 3, seed=0, progress=False)
    status = main(["train", "--profile", "smoke", "--data", str(data), "--out", str(out),
                   "--device", "cpu", "--no-progress"])  # fmt: skip
    assert status == 0
    return data, out


def train_argv(data, out, *extra) -> list:
    return ["train", "--profile", "smoke", "--data", data, "--out", out, "--device", "cpu",
            "--no-progress", *extra]  # fmt: skip


# --- 6. --resume checks every option that defines the run, before any data work ------------------
def test_resume_with_another_val_is_refused_before_the_data_are_prepared(smoke_run, tmp_path, capsys):
    data, run = smoke_run
    out = shutil.copytree(run, tmp_path / "run")
    before = snapshot(out)
    cache = tmp_path / "cache"
    status, lines = run_cli(train_argv(data, out, "--resume", "--val", "2", "--cache", cache), capsys)
    assert status == 2
    # the case trained on (PHANTOM_001) would become a validation case: both splits named
    assert_one_error_line(
        lines, str(out / "last.pt"), "--val", "1 case(s) for validation (PHANTOM_002)",
        "this command 2 (PHANTOM_001, PHANTOM_002)",
    )  # fmt: skip
    assert not cache.exists()  # refused before any data preparation
    assert snapshot(out) == before


def test_resume_with_another_data_folder_is_refused(smoke_run, tmp_path, capsys):
    data, run = smoke_run
    out = shutil.copytree(run, tmp_path / "run")
    before = snapshot(out)
    # the same case ids in another folder, then a folder with one case more
    other = shutil.copytree(data, tmp_path / "other", ignore=shutil.ignore_patterns(".cache*"))
    status, lines = run_cli(train_argv(other, out, "--resume"), capsys)
    assert status == 2
    assert_one_error_line(lines, "--data", str(data.resolve()), str(other.resolve()))
    assert not (other / ".cache_stage1").exists()
    more = tmp_path / "more"
    generate_cohort(more, "smoke", 4, seed=0, progress=False)
    status, lines = run_cli(train_argv(more, out, "--resume"), capsys)
    assert status == 2
    assert_one_error_line(lines, "--data")
    assert not (more / ".cache_stage1").exists()
    assert snapshot(out) == before


def test_resume_record_names_the_new_case(smoke_run, tmp_path):
    from deeptree.checkpoints import load_checkpoint
    from deeptree.cli.train import check_resume
    from deeptree.io import InputError

    data, run = smoke_run
    state = load_checkpoint(run / "last.pt")
    record = dict(state["meta"]["run"])
    assert record["cases"] == ["PHANTOM_000", "PHANTOM_001", "PHANTOM_002"]
    assert record["val_cases"] == ["PHANTOM_002"] and record["data"] == str(data.resolve())
    check_resume(state, record, run / "last.pt")  # the same run: accepted
    record["cases"] = [*record["cases"], "PHANTOM_003"]
    with pytest.raises(InputError, match=r"--data .*3 cases then, 4 now, new: PHANTOM_003"):
        check_resume(state, record, run / "last.pt")


def test_a_checkpoint_without_the_run_record_is_checked_on_what_it_holds(smoke_run):
    from deeptree.checkpoints import load_checkpoint
    from deeptree.cli.train import check_resume
    from deeptree.io import InputError

    _, run = smoke_run
    state = load_checkpoint(run / "last.pt")
    record = dict(state["meta"].pop("run"))  # as written before the record existed
    check_resume(state, {**record, "data": "/elsewhere"}, run / "last.pt")  # --data: not known
    with pytest.raises(InputError, match=r"--val .*held out 1 case\(s\) for validation, this command 2"):
        check_resume(state, {**record, "val_cases": ["PHANTOM_001", "PHANTOM_002"]}, run / "last.pt")
    with pytest.raises(InputError, match="--seed differs"):
        check_resume(state, {**record, "seed": 3}, run / "last.pt")


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [("--seed", "7", "the run has 0, this command 7"), ("--iterations", "8", "the run has 4, this command 8"),
     ("--variant", "plain", "the run has amc+gul, this command plain"),
     ("--batch-size", "2", "the run has 1, this command 2"),
     ("--profile", "cpu", "the run has smoke, this command cpu")],
)  # fmt: skip
def test_resume_with_other_options_is_refused_before_the_data_are_prepared(
    smoke_run, tmp_path, capsys, option, value, needle
):
    data, run = smoke_run
    out = shutil.copytree(run, tmp_path / "run")
    cache = tmp_path / "cache"
    argv = train_argv(data, out, "--resume", option, value, "--cache", cache)
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(out / "last.pt"), option, needle)
    assert not cache.exists()


def test_resume_with_the_same_options_goes_on(smoke_run, tmp_path, capsys):
    data, run = smoke_run
    out = shutil.copytree(run, tmp_path / "run")
    status = main([str(a) for a in train_argv(data, out, "--resume")])
    assert status == 0
    assert "done: 4 iterations" in capsys.readouterr().out


# --- 12. options checked once, up front --------------------------------------------------------
def test_negative_val_is_refused_up_front(smoke_run, tmp_path, capsys):
    data, _ = smoke_run
    cache = tmp_path / "cache"
    status, lines = run_cli(train_argv(data, tmp_path / "run", "--val", "-1", "--cache", cache), capsys)
    assert status == 2
    assert_one_error_line(lines, "--val -1", "0 or more")
    assert not cache.exists()
    status, lines = run_cli(train_argv(data, tmp_path / "run", "--val", "3", "--cache", cache), capsys)
    assert status == 2
    assert_one_error_line(lines, "--val 3", "3 case(s)", "at most 2")
    assert not cache.exists()


# --- 9. SIGTERM during training: a checkpoint, one line, exit 143 ------------------------------
def deeptree_process(*argv) -> subprocess.Popen:
    """``python -m deeptree argv`` started in a new process (this checkout, one thread)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "deeptree", *map(str, argv)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_during_training_writes_a_checkpoint_and_says_so(smoke_run, tmp_path):
    import torch

    data, _ = smoke_run
    out = tmp_path / "run"
    proc = deeptree_process(*train_argv(data, out, "--iterations", "400", "--val", "0"))
    log = out / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "terminated" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("deeptree train: terminated (SIGTERM): training interrupted after")
    assert f"resume from {out / 'last.pt'}" in lines[0]
    done = torch.load(out / "last.pt", weights_only=True)["iteration"]
    logged = [json.loads(line)["iteration"] for line in log.read_text().splitlines()]
    assert 2 <= done < 400 and logged[-1] == done  # the checkpoint of the last logged iteration
    assert not (out / ".deeptree.lock").exists()


def test_sigterm_outside_training_is_one_line_and_143(monkeypatch, capsys, tmp_path):
    """Any command: SIGTERM is raised as an interrupt (temporaries removed), one line, 143."""
    import deeptree.cli.phantom as phantom_cli

    def work(args):
        signal.raise_signal(signal.SIGTERM)
        return 0

    def unhandled(signum, frame):  # without main's handler the test fails, pytest lives on
        raise AssertionError("SIGTERM reached the default handler")

    monkeypatch.setattr(phantom_cli, "run", work)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        status = main(["phantom", "--profile", "smoke", "--n", "1", "--out", str(tmp_path / "c")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 143
    assert capsys.readouterr().err.strip() == "deeptree phantom: terminated (SIGTERM)"

    def ctrl_c(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(phantom_cli, "run", ctrl_c)
    assert main(["phantom", "--profile", "smoke", "--n", "1", "--out", str(tmp_path / "c")]) == 130
    assert capsys.readouterr().err.strip() == "deeptree phantom: interrupted"


# --- 8. out of memory, full disk, damaged checkpoint: one line naming the file -----------------
def test_a_model_spacing_too_fine_is_refused_before_allocating(smoke_run, tmp_path, capsys, monkeypatch):
    import deeptree.resample as resample

    data, run = smoke_run
    ct = data / "imagesTr" / "PHANTOM_000_0000.nii.gz"
    monkeypatch.setattr(resample, "available_memory", lambda: 8 * 10**9)
    out = tmp_path / "pred.nii.gz"
    argv = ["predict", ct, out, "--checkpoint", run / "last.pt", "--model-spacing", "0.07", "--device", "cpu"]
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "GB" in line]
    assert len(lines) == 1, err
    for needle in ("PHANTOM_000", "72x53x59 voxels of 2.6x2.6x2.6 mm", "to 0.07x0.07x0.07 mm",
                   "2675x1969x2192 voxels", "230.9 GB", "8.0 GB are available", "--model-spacing"):  # fmt: skip
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()


def test_check_resample_memory_passes_what_fits(monkeypatch):
    import deeptree.resample as resample

    monkeypatch.setattr(resample, "available_memory", lambda: 10**9)
    assert resample.check_resample_memory((100, 100, 50), (1.0, 1.0, 2.0), (0.5,) * 3) == (200, 200, 200)
    with pytest.raises(resample.InputError, match=r"resampling ct\.nii\.gz .* 2\.5 GB of memory"):
        resample.check_resample_memory((100, 100, 50), (1.0, 1.0, 2.0), (0.2,) * 3, "ct.nii.gz")
    assert resample.available_memory() > 0  # this machine: /proc/meminfo


def torch_out_of_memory():
    """What torch's CPU allocator raises when memory runs out (as under ``ulimit -v``)."""
    import torch

    return torch.empty(1 << 50, dtype=torch.uint8)  # 1 PiB: RuntimeError, can't allocate memory


def test_torch_out_of_memory_is_one_line(monkeypatch, capsys, tmp_path):
    import deeptree.cli.phantom as phantom_cli

    monkeypatch.setattr(phantom_cli, "run", lambda args: torch_out_of_memory())
    status, lines = run_cli(["phantom", "--profile", "smoke", "--out", tmp_path / "c"], capsys)
    assert status == 2
    assert_one_error_line(lines, "out of memory on this machine", "can't allocate memory", "what helps")


def test_a_batch_reports_a_case_out_of_memory_and_goes_on(capsys):
    from deeptree.cli._cases import for_each_case

    def work(case_id, path):
        return torch_out_of_memory() if case_id == "A" else f"{case_id}: done"

    problems = for_each_case({"A": Path("a"), "B": Path("b")}, work, desc="x", progress=False)
    assert len(problems) == 1 and problems[0].startswith("A: out of memory on this machine")
    assert capsys.readouterr().out.splitlines() == ["B: done"]


def test_a_full_disk_during_a_checkpoint_names_the_file(smoke_run, tmp_path, capsys, monkeypatch):
    import deeptree.checkpoints as checkpoints

    data, _ = smoke_run
    out = tmp_path / "run"
    # the checkpoint's bytes go to /dev/full: every write fails with ENOSPC, as on a full disk
    monkeypatch.setattr(checkpoints, "open", lambda path, mode: open("/dev/full", mode), raising=False)
    status, lines = run_cli(train_argv(data, out, "--val", "0"), capsys)
    assert status == 2
    assert_one_error_line(lines, f"{out / 'last.pt'}: No space left on device")
    assert not (out / "last.pt").exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # no temporary file left


def test_atomic_write_and_the_log_name_the_file_on_a_full_disk(tmp_path):
    import errno

    from deeptree.files import atomic_write
    from deeptree.train import _append

    def full(tmp):
        with open("/dev/full", "w") as f:
            f.write("x" * 100_000)

    with pytest.raises(OSError) as caught:
        atomic_write(tmp_path / "out.json", full)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "out.json")
    log = open("/dev/full", "a")  # noqa: SIM115 (closed below; closing fails too)
    with pytest.raises(OSError) as caught:
        _append(log, [], {"iteration": 1, "loss": 1.0})
    with contextlib.suppress(OSError):
        log.close()  # its buffer cannot be written either
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"


def test_the_lock_file_is_removed_when_writing_it_fails(tmp_path, monkeypatch):
    import errno

    from deeptree.files import LOCK_NAME, FolderLock

    real_write = os.write

    def write(fd, data):
        if data.startswith(b'{"pid"'):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError) as caught:
        FolderLock(tmp_path / "out", "deeptree test").acquire()
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "out" / LOCK_NAME)
    assert not (tmp_path / "out" / LOCK_NAME).exists()


@pytest.mark.parametrize("key", ["filters", "patch_size", "variant"])
def test_a_checkpoint_missing_a_network_key_is_one_line(smoke_run, tmp_path, capsys, key):
    import torch

    data, run = smoke_run
    state = torch.load(run / "last.pt", weights_only=True)
    del state["meta"][key]
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    ct = data / "imagesTr" / "PHANTOM_000_0000.nii.gz"
    argv = ["predict", ct, tmp_path / "pred.nii.gz", "--checkpoint", bad, "--device", "cpu"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, f"{bad}: its metadata has no '{key}'")


# --- 12. options that would fail every case, or take hours: refused once, up front ------------
@pytest.fixture
def masks(tmp_path) -> Path:
    """A folder with two airway masks (straight rods of one branch)."""
    import numpy as np

    from deeptree.io import write_nifti

    folder = tmp_path / "masks"
    for case in ("A_001", "A_002"):
        mask = np.zeros((16, 16, 30), np.uint8)
        mask[5:10, 5:10, 5:25] = 1
        write_nifti(folder / f"{case}.nii.gz", mask, np.diag([2.0, 2.0, 2.0, 1.0]), dtype="uint8")
    return folder


@pytest.mark.parametrize(
    ("command", "option", "needle"),
    [("attention", ["--alpha", "nan"], "--alpha must be finite (voxels), got nan"),
     ("simulate", ["--run-fraction", "0.3", "0.1"], "--run-fraction must satisfy 0 < low <= high < 1, got (0.3, 0.1)"),
     ("simulate", ["--branch-fraction", "2"], "--branch-fraction must be in [0, 1], got 2.0")],
)  # fmt: skip
def test_a_bad_option_of_a_batch_is_refused_once_up_front(masks, tmp_path, capsys, command, option, needle):
    out = tmp_path / "out"
    status, lines = run_cli([command, masks, "--out", out, "--profile", "smoke", "--no-progress", *option], capsys)
    assert status == 2
    assert_one_error_line(lines, needle)
    assert not out.exists()  # nothing started


@pytest.mark.parametrize("command", ["predict", "segment"])
@pytest.mark.parametrize(
    ("value", "needle"),
    [("0.97", "--overlap 0.97: must be between 0 and 0.9 (4,630 times the windows of 0.5)"),
     ("-0.1", "--overlap -0.1: must be between 0 and 0.9;"), ("nan", "--overlap nan: must be")],
)  # fmt: skip
def test_an_overlap_that_explodes_the_window_count_is_refused_up_front(smoke_run, tmp_path, capsys, command, value, needle):
    data, run = smoke_run
    ct = data / "imagesTr" / "PHANTOM_000_0000.nii.gz"
    out = tmp_path / "out" / "mask.nii.gz"
    argv = [command, ct, out, "--checkpoint", run / "last.pt", "--overlap", value, "--device", "cpu"]
    if command == "segment":
        argv[argv.index("--checkpoint") : argv.index("--checkpoint") + 2] = []  # the demo weights
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, needle)
    assert not out.parent.exists()


def test_overlap_up_to_the_bound_is_accepted():
    from deeptree.cli.predict import MAX_OVERLAP, check_overlap

    for value in (None, 0.0, 0.5, MAX_OVERLAP):
        check_overlap(value)


def test_a_checkpoint_of_the_other_stage_is_named_as_such():
    from deeptree.demo import demo_checkpoints
    from deeptree.io import InputError
    from deeptree.stage1.predict import load_stage1_model

    _, stage2 = demo_checkpoints()  # no 'variant': a stage-2 checkpoint, said as such
    with pytest.raises(InputError, match=r"stage2\.pt: not a stage-1 checkpoint \(stage 2\)"):
        load_stage1_model(stage2, "cpu")
