"""Realistic mistakes fed to the ``deeptree`` commands (issue 20): each gives exit status 2
(or 1 for a batch with failed cases), one line naming the file or option, no traceback, no
file left half-written, and inputs unchanged byte for byte."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from deeptree.checkpoints import save_checkpoint
from deeptree.cli import main
from deeptree.config import NetworkConfig, TrainConfig
from deeptree.io import InputError, atomic_write, nifti_inputs, write_nifti
from deeptree.networks import choose_device, stage1_network
from deeptree.stage1.losses import Stage1Loss, gul_distance_weight
from deeptree.train import TrainingTask, read_log, train

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
NET = NetworkConfig(filters=(2, 4, 8, 16), patch_size=(16, 16, 16))


# --- helpers ---------------------------------------------------------------------------------------
def tube_mask(shape=(16, 16, 30)) -> np.ndarray:
    """A straight 5 x 5 voxel rod along k: a valid airway mask of one branch (uint8)."""
    mask = np.zeros(shape, np.uint8)
    mask[5:10, 5:10, 5:25] = 1
    return mask


def tiny_ct(shape=(20, 20, 20)) -> np.ndarray:
    """Air (-1000 HU) around a soft-tissue block with an air tube inside (int16)."""
    ct = np.full(shape, -1000, np.int16)
    ct[3:-3, 3:-3, :] = 40
    ct[tube_mask(shape).astype(bool)] = -1000
    return ct


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.<random>.tmp...``) left under ``folder``."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    """``deeptree argv`` in this process: the exit status and the lines on stderr."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [line for line in err.splitlines() if line.strip()]


def assert_one_error_line(lines: list[str], *needles: str) -> None:
    assert len(lines) == 1, lines
    assert ": error: " in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def masks(tmp_path) -> Path:
    """A folder with two airway masks."""
    folder = tmp_path / "masks"
    for case in ("A_001", "A_002"):
        write_nifti(folder / f"{case}.nii.gz", tube_mask(), AFFINE, dtype="uint8")
    return folder


@pytest.fixture
def cts(tmp_path) -> Path:
    """A folder with two CTs in HU (``<id>_0000.nii.gz``)."""
    folder = tmp_path / "cts"
    for case in ("C_001", "C_002"):
        write_nifti(folder / f"{case}_0000.nii.gz", tiny_ct(), AFFINE)
    return folder


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """An untrained tiny stage-1 checkpoint (what it predicts does not matter here)."""
    torch.manual_seed(0)
    model = stage1_network(NET, "amc+gul")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    meta = {
        "stage": 1,
        "variant": "amc+gul",
        "filters": list(NET.filters),
        "patch_size": list(NET.patch_size),
        "overlap": 0.0,
    }
    return save_checkpoint(tmp_path / "run" / "last.pt", model, optimizer, 0, TrainConfig(), meta)


def predict_args(checkpoint, source, out, *extra):
    return ["predict", "--checkpoint", checkpoint, "--input", source, "--out", out, "--device", "cpu", *extra]


# --- 1. one error path ---------------------------------------------------------------------------
def test_device_that_is_no_device_is_refused_before_any_work(tmp_path, cts, checkpoint, capsys):
    before = snapshot(cts)
    argv = ["predict", "--checkpoint", checkpoint, "--input", cts, "--out", tmp_path / "pred"]
    status, lines = run_cli([*argv, "--device", "gpu0"], capsys)
    assert status == 2
    assert_one_error_line(lines, "--device gpu0", "not a device name")
    assert not (tmp_path / "pred").exists()
    assert snapshot(cts) == before


def test_cuda_on_a_torch_without_cuda_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="--device cuda: .* use --device cpu"):
        choose_device("cuda")
    # train checks the device before it prepares (and caches) the data
    data = tmp_path / "data"
    write_nifti(data / "imagesTr" / "C_001_0000.nii.gz", tiny_ct(), AFFINE)
    write_nifti(data / "labelsTr" / "C_001.nii.gz", tube_mask(), AFFINE, dtype="uint8")
    before = snapshot(data)
    argv = ["train", "--profile", "smoke", "--data", data, "--out", tmp_path / "run"]
    status, lines = run_cli([*argv, "--device", "cuda:0", "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, "--device cuda:0")
    assert snapshot(data) == before and not (tmp_path / "run").exists()


def test_negative_workers_are_refused_before_any_work(tmp_path, capsys):
    argv = ["train", "--data", tmp_path, "--out", tmp_path / "run", "--workers", "-1"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, "--workers -1")


def test_debug_shows_the_traceback(tmp_path):
    argv = ["--debug", "evaluate", "--pred", tmp_path / "nope", "--gt", tmp_path, "--out", "x.csv"]
    with pytest.raises(InputError, match="nope"):
        main([str(a) for a in argv])


def test_out_below_a_file_is_one_line(tmp_path, masks, capsys):
    (tmp_path / "afile").write_text("not a folder")
    before = snapshot(masks)
    status, lines = run_cli(["attention", masks, "--out", tmp_path / "afile" / "sub", "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "afile"))
    assert snapshot(masks) == before


def test_out_that_is_a_file_where_a_folder_is_needed(tmp_path, masks, cts, checkpoint, capsys):
    (tmp_path / "afile").write_text("keep me")
    status, lines = run_cli(["attention", masks, "--out", tmp_path / "afile", "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "afile"), "this is a file")
    status, lines = run_cli(predict_args(checkpoint, cts, tmp_path / "afile"), capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "afile"), "this is a file")
    assert (tmp_path / "afile").read_text() == "keep me"


def test_evaluate_out_that_is_a_folder(tmp_path, masks, capsys):
    (tmp_path / "csvdir").mkdir()
    argv = ["evaluate", "--pred", masks, "--gt", masks, "--out", tmp_path / "csvdir"]
    status, lines = run_cli([*argv, "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "csvdir"), "--out is a folder")


def test_read_only_output_is_found_before_the_metrics(monkeypatch, tmp_path, masks, capsys):
    import deeptree.cli._cases as cases
    import deeptree.metrics

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def no_metrics(*args, **kwargs):
        raise AssertionError("metrics computed before the output was checked")

    monkeypatch.setattr(cases.tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(deeptree.metrics, "airway_metrics", no_metrics)
    out = tmp_path / "results" / "metrics.csv"
    argv = ["evaluate", "--pred", masks, "--gt", masks, "--out", out, "--no-progress"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "results"), "--out", "Read-only file system")
    assert not out.exists()


def test_an_os_error_of_one_case_is_reported_and_the_batch_goes_on(
    monkeypatch, tmp_path, masks, capsys
):
    """A file that cannot be written (permission, full disk) fails its case, not the batch."""
    import deeptree.cli.attention as attention

    real = attention.write_nifti

    def denied_for_a_001(path, *args, **kwargs):
        if "A_001" in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(attention, "write_nifti", denied_for_a_001)
    status, lines = run_cli(["attention", masks, "--out", tmp_path / "att", "--no-progress"], capsys)
    assert status == 1
    assert lines[0] == "deeptree attention: 1 mask(s) failed:"
    assert "A_001_attention.nii.gz" in lines[1] and "No space left on device" in lines[1]
    assert (tmp_path / "att" / "A_002_attention.nii.gz").is_file()
    assert leftovers(tmp_path) == []


# --- 2. outputs honour the umask -------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_write_gives_the_mode_of_an_ordinary_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as f:
            f.write("x")
        written = atomic_write(tmp_path / "atomic.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask


# --- 3. resume that always works -------------------------------------------------------------------
class TubeData(torch.utils.data.Dataset):
    """A noisy tube along k; item ``index`` depends only on ``index``."""

    def __len__(self):
        return 10**6

    def __getitem__(self, index):
        rng = np.random.default_rng([0, index])
        label = np.zeros((16, 16, 16), np.int64)
        label[6:10, 6:10, :] = 1
        image = (label == 0).astype(np.float32) + rng.normal(0, 0.3, label.shape).astype(np.float32)
        return {
            "image": torch.from_numpy(image)[None],
            "label": torch.from_numpy(label)[None],
            "distance": torch.from_numpy(gul_distance_weight(label))[None],
        }


def tiny_task() -> TrainingTask:
    torch.manual_seed(0)
    criterion = Stage1Loss("plain")
    return TrainingTask(
        model=stage1_network(NET, "plain"),
        loss_fn=lambda out, batch: criterion(out, batch["label"], batch["distance"]),
        dataset=TubeData(),
        meta={"stage": 1, "variant": "plain", "filters": list(NET.filters)},
    )


CFG = TrainConfig(iterations=2, batch_size=1, checkpoint_every=2, amp=False)


def test_torn_last_log_line_is_dropped_with_a_notice(tmp_path):
    def killed_at_3(iteration, entry):
        if iteration == 3:
            raise KeyboardInterrupt

    cfg = replace(CFG, iterations=3)
    with pytest.raises(KeyboardInterrupt):  # checkpoint at 2, log lines 1-3
        train(tiny_task(), cfg, tmp_path, device="cpu", progress=False, callback=killed_at_3)
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2]) + lines[2][:15])  # killed while appending line 3
    with pytest.warns(UserWarning, match=r"log\.jsonl: the last line \(line 3\) is cut short"):
        result = train(tiny_task(), cfg, tmp_path, device="cpu", progress=False, resume=True)
    assert result.iteration == 3
    assert [e["iteration"] for e in read_log(log)] == [1, 2, 3]
    assert log.read_text().startswith("".join(lines[:2]))


def test_a_damaged_log_line_before_the_end_names_the_file(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"iteration": 1}\nnot json\n{"iteration": 2}\n')
    with pytest.raises(InputError, match=r"log\.jsonl: line 2 is not JSON"):
        read_log(log)


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(tmp_path):
    # a run killed during its first checkpoint write: a log, an orphan temporary, no last.pt
    (tmp_path / "log.jsonl").write_text('{"iteration": 1, "loss": 1.0}\n')
    with pytest.warns(UserWarning, match=r"last\.pt: no checkpoint to resume from .* starts from scratch"):
        result = train(tiny_task(), CFG, tmp_path, device="cpu", progress=False, resume=True)
    assert result.iteration == 2
    assert [e["iteration"] for e in read_log(tmp_path / "log.jsonl")] == [1, 2]
    # a fresh folder: resume=True simply starts (the library's "resume if possible")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(tiny_task(), CFG, tmp_path / "fresh", device="cpu", progress=False, resume=True)


def test_cli_resume_in_an_empty_folder_says_it_starts_from_scratch(tmp_path, capsys):
    argv = ["train", "--data", tmp_path / "nodata", "--out", tmp_path / "run", "--resume", "--device", "cpu"]
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2  # the missing dataset stops it after the notice
    assert f"deeptree train: no checkpoint in {tmp_path / 'run'}; --resume starts from scratch" in err


# --- 4. no command overwrites its own inputs -------------------------------------------------------
def test_predict_out_is_the_input_ct(tmp_path, cts, checkpoint, capsys):
    ct = cts / "C_001_0000.nii.gz"
    before = snapshot(cts)
    status, lines = run_cli(predict_args(checkpoint, ct, ct), capsys)
    assert status == 2
    assert_one_error_line(lines, str(ct), "is the input file", "never overwrites")
    assert snapshot(cts) == before


def test_predict_out_is_the_input_folder(tmp_path, cts, checkpoint, capsys):
    before = snapshot(cts)
    status, lines = run_cli(predict_args(checkpoint, cts, cts), capsys)
    assert status == 2
    assert_one_error_line(lines, str(cts), "is the folder of the input")
    assert snapshot(cts) == before


def test_evaluate_out_is_the_ground_truth(tmp_path, masks, capsys):
    gt = masks / "A_001.nii.gz"
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "A_001.nii.gz").write_bytes(gt.read_bytes())
    before = snapshot(masks)
    argv = ["evaluate", "--pred", tmp_path / "pred", "--gt", masks, "--out", gt, "--no-progress"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(gt), "is the input file")
    assert snapshot(masks) == before


@pytest.mark.parametrize("command", ["attention", "simulate"])
def test_per_case_commands_refuse_the_input_folder_as_out(tmp_path, masks, command, capsys):
    before = snapshot(masks)
    status, lines = run_cli([command, masks, "--out", masks, "--profile", "smoke", "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(masks), "is the folder of the input")
    assert snapshot(masks) == before


def test_attention_dataset_layout_into_the_dataset_root_is_allowed(tmp_path, masks, capsys):
    """The ATM'22 layout writes attentionTr/ beside labelsTr/: not among the inputs."""
    root = tmp_path / "dataset"
    root.mkdir()
    masks.rename(root / "labelsTr")
    before = snapshot(root / "labelsTr")
    argv = ["attention", root, "--out", root, "--dataset-layout", "--profile", "smoke", "--no-progress"]
    status, _ = run_cli(argv, capsys)
    assert status == 0
    assert (root / "attentionTr" / "A_001.nii.gz").is_file()
    assert snapshot(root / "labelsTr") == before and not leftovers(root)


def test_train_refuses_a_folder_that_holds_a_run(tmp_path, checkpoint, capsys):
    run = checkpoint.parent
    (run / "log.jsonl").write_text('{"iteration": 1, "loss": 1.0}\n')
    before = snapshot(run)
    argv = ["train", "--profile", "smoke", "--data", tmp_path / "data", "--out", run, "--device", "cpu"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(run), "last.pt, log.jsonl", "--resume", "--overwrite")
    assert snapshot(run) == before
    status, lines = run_cli([*argv, "--resume", "--overwrite"], capsys)
    assert status == 2
    assert_one_error_line(lines, "--resume and --overwrite")
    # with --overwrite the refusal is gone: the next check (the missing dataset) speaks
    status, lines = run_cli([*argv, "--overwrite"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(tmp_path / "data"), "not a dataset")
    assert snapshot(run) == before


def test_train_refuses_the_dataset_as_its_run_folder(tmp_path, capsys):
    data = tmp_path / "data"
    write_nifti(data / "labelsTr" / "C_001.nii.gz", tube_mask(), AFFINE, dtype="uint8")
    argv = ["train", "--data", data, "--out", data / "labelsTr", "--device", "cpu"]
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, "--out is the dataset folder")


# --- 5. batches ------------------------------------------------------------------------------------
def test_hidden_and_temporary_files_are_not_inputs(tmp_path, cts):
    (cts / ".C_003_0000.nii.gz.k2j4.tmp.nii.gz").write_bytes(b"")  # a killed writer's leftover
    assert [p.name for p in nifti_inputs(cts)] == ["C_001_0000.nii.gz", "C_002_0000.nii.gz"]


def test_predict_batch_goes_on_after_a_bad_case_and_lists_it(tmp_path, cts, checkpoint, capsys):
    (cts / ".C_000_0000.nii.gz.x1.tmp.nii.gz").write_bytes(b"")  # hidden: ignored
    (cts / "C_000_0000.nii.gz").write_bytes(b"\x1f\x8b not really gzip")  # bad: reported
    before = snapshot(cts)
    out = tmp_path / "pred"
    status = main([str(a) for a in predict_args(checkpoint, cts, out)])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    assert "C_001_0000.nii.gz ->" in captured.out and "C_002_0000.nii.gz ->" in captured.out
    assert "deeptree predict: 1 CT(s) failed:" in captured.err
    assert "C_000: " in captured.err and "C_000_0000.nii.gz: not a readable NIfTI file" in captured.err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["C_001.nii.gz", "C_002.nii.gz"]
    assert snapshot(cts) == before and not leftovers(out)


def test_predict_refuses_two_inputs_with_one_output_name(tmp_path, cts, checkpoint, capsys):
    (cts / "C_001.nii.gz").write_bytes((cts / "C_001_0000.nii.gz").read_bytes())
    status, lines = run_cli(predict_args(checkpoint, cts, tmp_path / "pred"), capsys)
    assert status == 2
    assert_one_error_line(lines, "both give case id 'C_001'")
    assert not (tmp_path / "pred").exists()


def test_a_warning_is_one_line(tmp_path, masks, capsys):
    """Warnings of a command are one line too (here: a mask with a stray component)."""
    stray = tube_mask()
    stray[1, 1, 1] = 1
    write_nifti(masks / "A_001.nii.gz", stray, AFFINE, dtype="uint8")
    argv = ["evaluate", "--pred", masks, "--gt", masks, "--out", tmp_path / "m.csv", "--no-progress"]
    argv += ["--protocol", "atm22"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # what Python does outside pytest: print formatwarning's text on stderr
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: (
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
        )
        status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned and all(line.startswith("deeptree evaluate: warning: ") for line in warned)


def test_a_failed_evaluation_case_names_the_gt_file(tmp_path, masks, capsys):
    """A rod has no branch beyond the main bronchi: the paper protocol cannot score it."""
    out = tmp_path / "m.csv"
    argv = ["evaluate", "--pred", masks, "--gt", masks, "--out", out, "--no-progress"]
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert f"A_001: error: {masks / 'A_001.nii.gz'}: its parse has no branch beyond" in err
    assert out.is_file() and not leftovers(tmp_path)


def test_console_entry_exits_2_with_one_line(tmp_path, masks):
    """The real process: exit status 2, one line on stderr, no traceback."""
    import subprocess

    argv = [sys.executable, "-m", "deeptree", "evaluate", "--pred", str(masks), "--gt", str(masks)]
    argv += ["--out", str(masks / "A_001.nii.gz")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"deeptree evaluate: error: {masks / 'A_001.nii.gz'}: --out is the input file "
        f"{masks / 'A_001.nii.gz'}; a command never overwrites its inputs"
    ]


# --- 6. locks and orphan temporary files ----------------------------------------------------------
def test_a_second_writer_of_one_folder_is_refused(tmp_path, masks, capsys):
    from deeptree.files import LOCK_NAME, FolderLock

    out = tmp_path / "att"
    with FolderLock(out, "deeptree attention"):  # another process writing there now
        status, lines = run_cli(["attention", masks, "--out", out, "--no-progress"], capsys)
        assert (out / LOCK_NAME).is_file()
    assert status == 2
    assert_one_error_line(lines, str(out), "`deeptree attention` (process", "is writing to this folder")
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the lock removed on exit


def test_the_stale_lock_of_a_dead_process_is_taken_over(tmp_path, masks, capsys):
    import json
    import subprocess

    from deeptree.files import LOCK_NAME

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    out = tmp_path / "att"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "h", "command": "deeptree attention"}))
    status = main([str(a) for a in ["attention", masks, "--out", out, "--no-progress"]])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "took over the lock of a process that no longer runs" in err and str(pid) in err
    assert not (out / LOCK_NAME).exists()


def test_orphan_temporary_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import time

    from deeptree.files import clean_orphan_temporaries

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    alive = os.getppid()  # pytest's parent: runs
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    orphan = folder / f".deeptree-A.nii.gz.{dead}-k2j4x_9.tmp.nii.gz"
    deeper = folder / "sub" / f".deeptree-last.pt.{dead}-abc123.tmp.pt"
    writing = folder / f".deeptree-B.nii.gz.{alive}-zz9.tmp.nii.gz"
    old_style = folder / ".C.nii.gz.k2j4.tmp.nii.gz"  # an older version's, or another tool's
    keep = folder / ".hidden-but-mine.json"
    for path in (orphan, deeper, writing, old_style, keep):
        path.write_bytes(b"half")
    hour_ago = time.time() - 3700
    os.utime(old_style, (hour_ago, hour_ago))
    assert clean_orphan_temporaries(folder) == [orphan]  # sub/ is not a level it writes
    assert clean_orphan_temporaries(folder, ["sub"]) == [deeper]
    assert writing.exists() and old_style.exists() and keep.exists()


def test_atomic_write_puts_the_process_id_in_the_temporary_name(tmp_path):
    seen = []
    atomic_write(tmp_path / "x.json", lambda tmp: (seen.append(Path(tmp).name), Path(tmp).write_text("{}")))
    assert seen[0].startswith(f".deeptree-x.json.{os.getpid()}-") and ".tmp" in seen[0]


# --- 7. batches skip what is complete -------------------------------------------------------------
def test_batch_rerun_skips_complete_cases_and_redoes_the_rest(tmp_path, masks, capsys):
    out = tmp_path / "att"
    argv = ["attention", masks, "--out", out, "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    kept = (out / "A_001_attention.nii.gz").stat().st_mtime_ns
    (out / "A_002_centres.json").unlink()  # an incomplete case
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert "A_001: already complete, kept" in printed
    assert "A_002: 1 components" in printed and (out / "A_002_centres.json").is_file()
    assert (out / "A_001_attention.nii.gz").stat().st_mtime_ns == kept
    # an output changed by hand is not "complete": it is computed again
    (out / "A_001_attention.nii.gz").write_bytes(b"edited")
    assert main([str(a) for a in argv]) == 0
    assert "A_001: 1 components" in capsys.readouterr().out
    # --overwrite computes everything again
    assert main([str(a) for a in [*argv, "--overwrite"]]) == 0
    assert "already complete" not in capsys.readouterr().out


def test_batch_refuses_outputs_of_other_settings_without_overwrite(tmp_path, masks, capsys):
    out = tmp_path / "att"
    argv = ["attention", masks, "--out", out, "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    before = snapshot(out)
    status, lines = run_cli([*argv, "--alpha", "3"], capsys)
    assert status == 2
    assert_one_error_line(lines, str(out), "other settings (alpha)", "--overwrite")
    assert snapshot(out) == before
    assert main([str(a) for a in [*argv, "--alpha", "3", "--overwrite"]]) == 0


def test_predict_rerun_skips_complete_cases(tmp_path, cts, checkpoint, capsys):
    out = tmp_path / "pred"
    assert main([str(a) for a in predict_args(checkpoint, cts, out)]) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert main([str(a) for a in predict_args(checkpoint, cts, out)]) == 0
    printed = capsys.readouterr().out
    assert "C_001: already complete, kept" in printed and "C_002: already complete, kept" in printed
    assert snapshot(out) == before


# --- 8. plausibility checks -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "values, hint",
    [((0, 4095), "raw scanner values"), ((0.0, 1.0), "normalised to 0..1")],
    ids=["0..4095", "0..1"],
)
def test_a_ct_not_in_hounsfield_units_is_refused(tmp_path, cts, checkpoint, capsys, values, hint):
    low, high = values
    ct = np.where(tiny_ct() < -500, low, high).astype(np.float32 if high == 1.0 else np.int16)
    write_nifti(cts / "C_001_0000.nii.gz", ct, AFFINE)
    status = main([str(a) for a in predict_args(checkpoint, cts, tmp_path / "pred")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert f"{cts / 'C_001_0000.nii.gz'}: not a CT in Hounsfield units" in err and hint in err
    assert not (tmp_path / "pred" / "C_001.nii.gz").exists()
    assert (tmp_path / "pred" / "C_002.nii.gz").is_file()


def test_load_case_refuses_a_ct_not_in_hu(tmp_path):
    from deeptree.io import load_case

    write_nifti(tmp_path / "ct.nii.gz", tiny_ct() + 1024, AFFINE)
    with pytest.raises(InputError, match=r"ct\.nii\.gz: not a CT in Hounsfield units: values 24\.\.1064"):
        load_case(tmp_path / "ct.nii.gz")


def test_a_mask_filling_most_of_its_volume_is_refused(tmp_path, masks, capsys):
    write_nifti(masks / "A_001.nii.gz", np.ones((16, 16, 30), np.uint8), AFFINE, dtype="uint8")
    status = main([str(a) for a in ["labels", "--in", masks, "--out", tmp_path / "lab"]])
    err = capsys.readouterr()
    assert status == 1
    assert f"{masks / 'A_001.nii.gz'}: the mask fills 100% of its volume" in err.out
    assert "A_002.nii.gz: " in err.out and (tmp_path / "lab" / "A_002.nii.gz").is_file()
    assert not (tmp_path / "lab" / "A_001.nii.gz").exists()


def test_thick_slices_give_one_warning_that_says_what_it_changes(tmp_path, masks, capsys):
    thick = np.diag([0.5, 0.5, 5.0, 1.0])
    write_nifti(masks / "A_001.nii.gz", tube_mask(), thick, dtype="uint8")
    with pytest.warns(UserWarning) as caught:
        main([str(a) for a in ["labels", "--in", masks, "--out", tmp_path / "lab"]])
    texts = [str(w.message) for w in caught if "thicker than" in str(w.message)]
    assert len(texts) == 1
    assert str(masks / "A_001.nii.gz") in texts[0] and "0.5 x 0.5 x 5 mm" in texts[0]
    assert "anatomy classes" in texts[0]


def test_a_header_that_claims_more_data_than_the_file_holds(tmp_path, capsys):
    import nibabel as nib

    from deeptree.io import read_nifti

    image = nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), AFFINE)
    path = tmp_path / "big.nii"
    nib.save(image, str(path))
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw)))
    header.set_data_shape((20000, 20000, 20000))
    raw[:348] = header.binaryblock
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"big\.nii: its header declares 20000 x 20000 x 20000 voxels of int16 \(14\.6 TiB\), but the file holds only 1\.0 KiB"):
        read_nifti(path)
    gz = tmp_path / "big.nii.gz"
    import gzip

    gz.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match=r"more than a compressed file of .* can hold"):
        read_nifti(gz)
    status, lines = run_cli(["labels", "--in", tmp_path, "--out", tmp_path / "lab"], capsys)
    assert status == 1


def test_case_ids_that_collide_are_refused(tmp_path):
    from deeptree.io import list_cases

    folder = tmp_path / "imagesTr"
    write_nifti(folder / "X_001_0000.nii.gz", tiny_ct(), AFFINE)
    write_nifti(folder / "X_001.nii.gz", tiny_ct(), AFFINE)
    with pytest.raises(InputError, match=r"X_001\.nii\.gz and X_001_0000\.nii\.gz both give case id 'X_001'"):
        list_cases(tmp_path)
    (folder / "X_001.nii.gz").unlink()
    write_nifti(folder / "x_001_0000.nii.gz", tiny_ct(), AFFINE)  # one file on a case-insensitive disk
    with pytest.raises(InputError, match="both give case id"):
        list_cases(tmp_path)


def test_running_out_of_memory_says_what_to_do(monkeypatch, tmp_path, masks, capsys):
    import deeptree.cli.attention as attention

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 14.6 TiB for an array")

    monkeypatch.setattr(attention, "attention_case", too_big)
    status, lines = run_cli(["attention", masks, "--out", tmp_path / "att", "--no-progress"], capsys)
    # a batch: each case that runs out of memory is reported (a smaller one may fit), exit 1
    assert status == 1
    failed = [line for line in lines if "out of memory on this machine" in line]
    assert [line.split(":")[0].strip() for line in failed] == ["A_001", "A_002"], lines
    for needle in ("(Unable to allocate 14.6 TiB", "--batch-size", "--profile", "close the other programs"):
        assert needle in failed[0]
    assert not (tmp_path / "att" / ".deeptree.lock").exists()


# --- 9. a read-only dataset -----------------------------------------------------------------------
def test_train_cache_goes_to_the_user_cache_when_the_dataset_is_read_only(monkeypatch, tmp_path, capsys):
    import deeptree.cli.train as cli_train

    data, out = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    real = cli_train._writable
    monkeypatch.setattr(cli_train, "_writable", lambda folder: not folder.is_relative_to(data) and real(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = cli_train.stage1_cache_dir(data, out)
    assert folder.parent == tmp_path / "xdg" / "deeptree" and folder.name.startswith("stage1-")
    assert "cannot be written" in capsys.readouterr().err
    assert not (data / ".cache_stage1").exists()
    # no user cache either: under --out
    monkeypatch.setattr(cli_train, "_writable", lambda folder: folder.is_relative_to(out) and real(folder))
    assert cli_train.stage1_cache_dir(data, out) == out / "cache_stage1"
    # a writable dataset keeps its cache beside the data
    monkeypatch.setattr(cli_train, "_writable", real)
    assert cli_train.stage1_cache_dir(data, out) == data / ".cache_stage1"


# --- 10. the phantom cohort manifest --------------------------------------------------------------
def test_phantom_refuses_a_cohort_of_another_profile_or_seed(tmp_path, capsys):
    import json

    out = tmp_path / "cohort"
    argv = ["phantom", "--profile", "smoke", "--n", "1", "--seed", "0", "--out", out, "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "cohort.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["seed"] == 0
    assert manifest["generator_version"] >= 1 and sorted(manifest["cases"]["PHANTOM_000"]) == ["image", "label", "lung", "tree"]
    before = snapshot(out)
    status, lines = run_cli([*argv[:6], "1", "--out", out, "--no-progress"], capsys)  # seed 1
    assert status == 2
    assert_one_error_line(lines, str(out / "cohort.json"), "seed 0", "this run asks for 1")
    status, lines = run_cli(["phantom", "--profile", "cpu", "--n", "1", "--out", out, "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, "profile 'smoke'", "this run asks for 'cpu'")
    # a cohort written before manifests: its trees say what made it
    (out / "cohort.json").unlink()
    status, lines = run_cli([*argv[:6], "5", "--out", out, "--no-progress"], capsys)
    assert status == 2
    assert_one_error_line(lines, "PHANTOM_000.json", "seed [0, 0]", "mixed")
    assert main([str(a) for a in argv]) == 0  # same settings: adopted, nothing regenerated
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != "cohort.json"} == before_without(before, "cohort.json")
    # a file changed since it was written is never overwritten silently
    label = out / "labelsTr" / "PHANTOM_000.nii.gz"
    data = label.read_bytes()
    label.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    status, lines = run_cli(argv, capsys)
    assert status == 2
    assert_one_error_line(lines, str(label), "changed since it was generated")


def before_without(snap: dict, name: str) -> dict:
    return {k: v for k, v in snap.items() if k != name}


def test_a_cohort_without_manifest_of_another_voxel_size_is_refused(tmp_path):
    """An older cohort (no cohort.json) made when the profile had another spacing."""
    import json

    from deeptree.phantom import generate_cohort

    generate_cohort(tmp_path, "smoke", 1, seed=0, progress=False)
    (tmp_path / "cohort.json").unlink()
    tree = tmp_path / "treesTr" / "PHANTOM_000.json"
    data = json.loads(tree.read_text())
    data["meta"]["spacing_mm"] = [1.5, 1.5, 1.5]
    tree.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"PHANTOM_000\.json: case PHANTOM_000 .* has voxels of \[1\.5, 1\.5, 1\.5\] mm, the 'smoke' profile now makes 2\.6 mm"):
        generate_cohort(tmp_path, "smoke", 2, seed=0, progress=False)
    assert not (tmp_path / "imagesTr" / "PHANTOM_001_0000.nii.gz").exists()
