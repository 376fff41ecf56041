"""Kill tests (issue 20): a command killed with SIGKILL in the middle of a file write, then run
again, ends with the same files, byte for byte, as an uninterrupted run.

The kill point is deterministic: the test hook ``DEEPTREE_TEST_KILL_AT=<file name>:<n>``
(:data:`deeptree.io.TEST_KILL_ENV`) makes the command kill itself during its n-th write of a
file of that name, after half of the temporary file reached the disk and before the rename:
what ``kill -9`` at that moment leaves. Each command runs in its own process, as a user runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeptree.files import TEST_KILL_ENV
from deeptree.io import write_nifti

ROOT = Path(__file__).resolve().parent.parent


def deeptree(*argv, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``python -m deeptree argv`` in a new process (this checkout's package, one thread)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(TEST_KILL_ENV, None)
    if kill_at is not None:
        env[TEST_KILL_ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "deeptree", *map(str, argv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def files(folder: Path, skip=()) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest), except ``skip``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def assert_killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


# --- phantom ---------------------------------------------------------------------------------------
def test_phantom_killed_mid_write_then_rerun_gives_the_same_cohort(tmp_path):
    args = ["phantom", "--profile", "smoke", "--n", "2", "--seed", "3", "--no-progress"]
    assert_ok(deeptree(*args, "--out", tmp_path / "whole"))
    cut = tmp_path / "cut"
    # the airway label of the second case: its CT is written, the label is torn
    assert_killed(deeptree(*args, "--out", cut, kill_at="PHANTOM_001.nii.gz:1"))
    assert temporaries(cut)  # the torn temporary file the kill left behind
    assert not (cut / "labelsTr" / "PHANTOM_001.nii.gz").exists()
    manifest = json.loads((cut / "cohort.json").read_text())
    assert sorted(manifest["cases"]) == ["PHANTOM_000"]  # the case done before the kill
    rerun = deeptree(*args, "--out", cut)
    assert_ok(rerun)
    assert "removed 1 temporary file(s)" in rerun.stderr
    assert temporaries(cut) == [] and not (cut / ".deeptree.lock").exists()
    assert files(cut) == files(tmp_path / "whole")


# --- labels ----------------------------------------------------------------------------------------
def test_labels_killed_mid_batch_then_rerun_gives_the_same_labels(tmp_path):
    masks = tmp_path / "masks"
    for i, length in enumerate((18, 22, 26)):
        mask = np.zeros((16, 16, 30), np.uint8)
        mask[5:10, 5:10, 2 : 2 + length] = 1
        mask[5:7, 5:12, 2 + length - 4 : 2 + length] = 1  # a side branch
        write_nifti(masks / f"M_{i:03d}.nii.gz", mask, np.diag([1.0, 1.0, 1.0, 1.0]))
    before = files(masks)
    assert_ok(deeptree("labels", "--in", masks, "--out", tmp_path / "whole"))
    cut = tmp_path / "cut"
    assert_killed(deeptree("labels", "--in", masks, "--out", cut, kill_at="M_001.nii.gz:1"))
    assert sorted(p.name for p in cut.iterdir() if not p.name.startswith(".")) == ["M_000.nii.gz"]
    assert temporaries(cut)
    rerun = deeptree("labels", "--in", masks, "--out", cut)
    assert_ok(rerun)
    assert "M_000.nii.gz: already complete, kept" in rerun.stdout
    assert "2 written, 1 already complete, 0 failed" in rerun.stdout
    assert temporaries(cut) == [] and not (cut / ".deeptree.lock").exists()
    assert files(cut) == files(tmp_path / "whole")
    assert files(masks) == before  # inputs unchanged


# --- train ---------------------------------------------------------------------------------------
def train_args(data: Path, out: Path) -> list:
    # smoke profile: a checkpoint every 4 iterations, so 8 iterations write last.pt twice
    return [
        "train", "--stage", "1", "--profile", "smoke", "--data", data, "--out", out,
        "--iterations", "8", "--val", "0", "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def log_without_times(path: Path) -> list[dict]:
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in entries]


@pytest.mark.slow
def test_train_killed_during_the_first_and_a_later_checkpoint_write_then_resumed(tmp_path):
    from deeptree.phantom import generate_cohort
    from deeptree.stage1.cache import load_cohort

    data = tmp_path / "cohort"
    generate_cohort(data, "smoke", 1, seed=0, progress=False)
    load_cohort(data, data / ".cache_stage1")  # prepared once here, not in the killed processes
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert_ok(deeptree(*train_args(data, whole)))

    # killed while writing its first checkpoint (iteration 4): nothing to resume from
    assert_killed(deeptree(*train_args(data, cut), kill_at="last.pt:1"))
    assert temporaries(cut) and not (cut / "last.pt").exists()
    # the rerun says so, starts again, and is killed while writing the last checkpoint (8)
    again = deeptree(*train_args(data, cut), "--resume", kill_at="last.pt:2")
    assert_killed(again)
    assert "no checkpoint to resume from" in again.stderr
    assert "removed 1 temporary file(s)" in again.stderr
    # resumed from the checkpoint of iteration 4
    resumed = deeptree(*train_args(data, cut), "--resume")
    assert_ok(resumed)
    assert "took over the lock of a process that no longer runs" in resumed.stderr
    assert temporaries(cut) == [] and not (cut / ".deeptree.lock").exists()
    # the checkpoint (weights, optimiser, random states) and the curves, byte for byte
    assert files(cut, skip={"log.jsonl"}) == files(whole, skip={"log.jsonl"})
    # the log: every entry the same but its wall-clock seconds
    assert log_without_times(cut / "log.jsonl") == log_without_times(whole / "log.jsonl")
