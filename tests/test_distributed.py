"""Training on several processes: ``deeptree train`` under ``torchrun`` (gloo on the CPU).

What must be identical between 2 ranks with a global batch of 2 and one process with a batch
of 2: the patches (rank r reads items ``it * 2 + r``, one process items ``it * 2, it * 2 + 1``:
the same items, and item ``i`` depends only on ``(seed, i)``), the initial weights (same seed;
DDP also broadcasts rank 0's), and the gradient. DDP averages the ranks' gradients: the CE
and GUL terms are means over the batch, so the average of the two ranks' means is the mean
over the global batch; the batch Dice sums over the global batch through
``deeptree.distributed.batch_sum``. DynUNet normalises with instance norm (per sample), so
no batch statistics cross the ranks (no SyncBatchNorm needed; checked below).

What is not identical: the order of the floating-point sums (one process sums the two items'
weight gradients inside the convolution's backward pass, two ranks sum them in gloo's
all-reduce). Measured on this 2-core machine after 8 iterations of the smoke profile: the
logged losses agree to a relative 1.3e-7 (CE 3.4e-7, a few float32 ulps), the weights (up to
1.5 in size) to 3.5e-6, the validation figures exactly (2026-12-01). After issue 18 changed
the patch sampler and the initial weights, the same run's losses agree at the first
iteration and then drift apart with the iterations (SGD with momentum 0.99 carries each
ulp forward): 4.1e-6 relative at iteration 8, the weights 2.3e-5 (2026-12-02, AVX2). On an
AVX-512 machine of the same class the convolution kernels sum in another order and the drift
is ~25x larger (2026-12-07, CI failed on it): the CE term 1.1e-4 relative at iteration 5, the
summed loss 8.6e-6, the weights (up to 5.7 in size) 5.0e-5, the validation Dice of the
barely trained model (0.012) 1.1e-5 (one voxel's worth).

So the test separates what must be exact from what drifts. The first iteration sees the same
patches and the same weights, and no sum over ranks has been taken yet: its losses must agree
to a few ulps (measured on the AVX-512 machine: 8e-8 relative; tolerance 1e-6). The later
iterations carry the drift: losses to 1e-3 relative, validation to 1e-4, weights to 5e-4
(~10x the larger machine's figures) -- still far below a real difference: with each rank's
batch Dice taken over its own patch instead of the global batch, the first iteration's loss
is 3.318 instead of 3.818 (one of the two patches holds no airway), a relative 0.13.
A subtler bug, a backward pass of the Dice sums that does not all-reduce, moves the later
losses by only 2e-4 to 7e-4: the gradient itself is therefore compared to 1e-5 after one
step, where no drift has accumulated (test_one_step_on_two_ranks_has_the_gradient_...).

The second test kills rank 1 mid-run (torchrun then stops rank 0), restarts with --resume
and checks that the run continued from the last checkpoint and ended bit for bit where an
uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from docs_text import doc_page

from deeptree import distributed
from deeptree.checkpoints import load_checkpoint
from deeptree.io import InputError

ROOT = Path(__file__).resolve().parents[1]
ITERATIONS = 8  # the smoke profile checkpoints and validates every 4
FIRST_LOSS_RTOL = 1e-6  # the first iteration: same patches, same weights, no all-reduce yet
LOSS_RTOL = 1e-3  # later iterations: float drift (see the module docstring)
VAL_ATOL = 1e-4
WEIGHT_ATOL = 5e-4

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch built without gloo",
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env[distributed.TIMEOUT_VARIABLE] = "120"  # a hung collective fails the test, not CI
    return env


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-m", "deeptree", "train", "--stage", "1", "--profile", "smoke", "--data", str(data),
        "--out", str(out), "--batch-size", "2", "--iterations", str(ITERATIONS),
        "--device", "cpu", "--no-progress", *extra,
    ]  # fmt: skip


def _torchrun(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *_train_args(data, out, *extra),
    ]  # fmt: skip


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _losses(log: list[dict], key: str = "loss") -> np.ndarray:
    return np.array([e[key] for e in log if "loss" in e])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke cohort, one process with a batch of 2, and 2 ranks with 1 item each."""
    from deeptree.phantom import generate_cohort

    root = tmp_path_factory.mktemp("ddp")
    data = root / "cohort"
    generate_cohort(data, "smoke", 3, seed=0, progress=False)
    t0 = time.perf_counter()
    _run([sys.executable, *_train_args(data, root / "single")])
    t1 = time.perf_counter()
    ddp = _run(_torchrun(data, root / "ddp"))
    t2 = time.perf_counter()
    print(f"one process {t1 - t0:.1f} s, torchrun 2 ranks {t2 - t1:.1f} s")
    return {"data": data, "single": root / "single", "ddp": root / "ddp", "ddp_out": ddp}


def test_two_ranks_train_the_model_of_one_process(runs):
    single, ddp = _log(runs["single"]), _log(runs["ddp"])
    # rank 0 alone logs: every iteration once, validation once per validation point
    assert [e["iteration"] for e in ddp if "loss" in e] == list(range(1, ITERATIONS + 1))
    assert [e["iteration"] for e in ddp if "val" in e] == [4, 8]
    assert runs["ddp_out"].stdout.count("done:") == 1
    for key in ("loss", "dice", "ce", "gul"):
        two_ranks, one_process = _losses(ddp, key), _losses(single, key)
        np.testing.assert_allclose(two_ranks[0], one_process[0], rtol=FIRST_LOSS_RTOL)
        np.testing.assert_allclose(two_ranks, one_process, rtol=LOSS_RTOL)
    for a, b in zip((e for e in single if "val" in e), (e for e in ddp if "val" in e), strict=True):
        for metric, value in a["val"].items():
            assert b["val"][metric] == pytest.approx(value, abs=VAL_ATOL)
    one, two = load_checkpoint(runs["single"] / "last.pt"), load_checkpoint(runs["ddp"] / "last.pt")
    assert two["iteration"] == ITERATIONS
    assert one["model"].keys() == two["model"].keys()
    worst = max((one["model"][k] - two["model"][k]).abs().max().item() for k in one["model"])
    assert worst < WEIGHT_ATOL, f"weights differ by up to {worst}"
    # the same parameters were updated (the lowest deep-supervision head too, with zeros)
    assert one["optimizer"]["state"].keys() == two["optimizer"]["state"].keys()


def test_the_network_has_no_batch_statistics():
    from deeptree.config import get_config
    from deeptree.networks import stage1_network

    model = stage1_network(get_config("smoke").stage1_net, "amc+gul")
    norms = [m for m in model.modules() if "Norm" in type(m).__name__]
    assert norms and all(isinstance(m, torch.nn.InstanceNorm3d) for m in norms)
    assert not any(getattr(m, "track_running_stats", False) for m in norms)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_pid(torchrun_pid: int, rank: int) -> int | None:
    for pid in _children(torchrun_pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_a_killed_rank_stops_the_run_and_resume_loses_nothing(runs, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _torchrun(runs["data"], out), env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        victim = None
        while time.monotonic() < deadline and proc.poll() is None:
            victim = victim or _rank_pid(proc.pid, 1)  # found early: the stop below is at once
            if victim is not None and (out / "log.jsonl").is_file():
                logged = [e for e in _log_lenient(out) if "loss" in e]
                if logged and logged[-1]["iteration"] >= 5:  # past the checkpoint of iteration 4
                    break
            time.sleep(0.02)
        assert victim is not None and proc.poll() is None, "the run ended before the kill"
        os.kill(victim, signal.SIGSTOP)  # freeze it: rank 0 can go at most one step further
        os.kill(victim, signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output[-2000:]
    stopped = load_checkpoint(out / "last.pt")["iteration"]
    assert stopped == 4, f"checkpoint at iteration {stopped}"
    before = [e["iteration"] for e in _log_lenient(out) if "loss" in e]
    assert before[-1] >= 5  # iterations after the checkpoint were lost with the kill ...

    _run(_torchrun(runs["data"], out, "--resume"))
    log, reference = _log(out), _log(runs["ddp"])
    # ... and done again: every iteration once, in order, and validation once per point
    assert [e["iteration"] for e in log if "loss" in e] == list(range(1, ITERATIONS + 1))
    assert [e["iteration"] for e in log if "val" in e] == [4, 8]
    # the resumed run ends where the uninterrupted one ends, bit for bit
    np.testing.assert_array_equal(_losses(log), _losses(reference))
    ours, theirs = load_checkpoint(out / "last.pt"), load_checkpoint(runs["ddp"] / "last.pt")
    assert ours["iteration"] == ITERATIONS
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key


def _log_lenient(out: Path) -> list[dict]:
    """The log while it is being written (a torn last line is skipped)."""
    entries = []
    for line in (out / "log.jsonl").read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return entries


# --------------------------------------------------------------------------------------------
# the pieces, in this process
# --------------------------------------------------------------------------------------------
def test_torchrun_environment():
    assert distributed.from_env({}) == distributed.DistEnv()
    env = distributed.from_env(
        {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 8, 1, 2)
    assert env.launched and not env.is_main
    with pytest.raises(InputError, match="RANK must be in"):
        distributed.from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(InputError, match="not a whole number"):
        distributed.from_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_global_batch_is_split_into_disjoint_rank_streams():
    assert distributed.local_batch_size(8, 4) == 2
    with pytest.raises(InputError, match="cannot be split over 3 processes"):
        distributed.local_batch_size(2, 3)
    for it in range(3):
        items = [list(distributed.rank_items(it, 4, r, 2)) for r in range(2)]
        assert items[0] + items[1] == list(range(it * 4, it * 4 + 4))


def test_train_refuses_a_batch_the_ranks_cannot_share(monkeypatch, tmp_path, capsys):
    from deeptree.cli import main

    monkeypatch.setattr(
        distributed,
        "init_from_env",
        lambda device=None: (distributed.DistEnv(0, 4, 0, 4, True), torch.device("cpu")),
    )
    args = ["train", "--profile", "smoke", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*args, "--batch-size", "2"]) == 2
    assert "batch size 2 cannot be split over 4 processes" in capsys.readouterr().err


ONE_STEP_SCRIPT = """
import sys

import torch

from deeptree import distributed
from deeptree.stage1.losses import DiceCELoss


def batch():
    # a batch of 2 where class 3 is in the second item only (its Dice spans the ranks)
    gen = torch.Generator().manual_seed(7)
    image = torch.randn(2, 1, 6, 6, 6, generator=gen)
    target = torch.zeros(2, 1, 6, 6, 6, dtype=torch.long)
    target[0, 0, 1:4, 1:4, 1:4] = 1
    target[1, 0, 2:5, 2:5, 2:5] = 2
    target[1, 0, 0, 0, :3] = 3
    return image, target


def model():
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 4, 3, padding=1)


def gradients(net, image, target):
    with distributed.global_batch():
        dice, ce = DiceCELoss()(net(image), target)
        (dice + ce).backward()
    bare = net.module if hasattr(net, "module") else net
    return [p.grad.detach().clone() for p in bare.parameters()]


if __name__ == "__main__":  # one rank of 2 under torchrun: DDP on its own item of the batch
    torch.set_num_threads(1)
    env, device = distributed.init_from_env("cpu")
    image, target = batch()
    r = env.rank
    grads = gradients(torch.nn.parallel.DistributedDataParallel(model()), image[r:r + 1], target[r:r + 1])
    if r == 0:
        torch.save(grads, sys.argv[1])
    distributed.barrier()
    distributed.shutdown()
"""


def test_one_step_on_two_ranks_has_the_gradient_of_the_global_batch(tmp_path):
    """The exact form of the training test above: one backward pass, no drift to carry.

    The batch Dice of class 3 exists only through the second rank's item, and its sums must
    cross the ranks forward and backward (``batch_sum``). A backward pass that did not
    all-reduce (each rank's Dice gradient 1/2 of the global one) moved the 8-iteration
    training test by 7e-4 relative (measured 2026-12-07), within float drift's reach on some
    CPUs; here it is a gross difference, while the two summation orders agree to ~1e-7.
    """
    import runpy

    script = tmp_path / "one_step.py"
    script.write_text(ONE_STEP_SCRIPT)
    one_process = runpy.run_path(str(script))  # its functions, without a process group
    torch.set_num_threads(1)
    image, target = one_process["batch"]()
    expected = one_process["gradients"](one_process["model"](), image, target)
    out = tmp_path / "rank0.pt"
    _run([
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), str(out),
    ])  # fmt: skip
    for got, want in zip(torch.load(out), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_batch_sum_is_the_identity_in_one_process():
    t = torch.arange(3.0)
    with distributed.global_batch():
        assert distributed.batch_sum(t) is t


def test_workers_follow_the_cpus():
    assert distributed.default_workers("cpu", 1, cpus=16) == 0
    assert distributed.default_workers("cuda", 1, cpus=16) == 12
    assert distributed.default_workers("cuda", 4, cpus=16) == 3
    assert distributed.default_workers("cuda", 8, cpus=4) == 0


# --------------------------------------------------------------------------------------------
# fan-out: independent trainings, one per device
# --------------------------------------------------------------------------------------------
def _where(tag: int, device: str) -> tuple[int, str, int, float, float]:
    start = time.time()
    time.sleep(0.3)
    return tag, device, os.getpid(), start, time.time()


def _fail(tag: int, device: str):
    raise ValueError(f"job {tag} failed on {device}")


def test_fan_out_runs_one_job_at_a_time_per_device():
    import functools

    from deeptree.evaluation.fanout import fan_out

    jobs = [functools.partial(_where, tag) for tag in range(5)]
    results = fan_out(jobs, ["cpu", "cpu"])
    assert [r[0] for r in results] == list(range(5))  # in the order of the jobs
    assert {r[1] for r in results} == {"cpu"}
    by_process = {}
    for _, _, pid, start, end in results:
        by_process.setdefault(pid, []).append((start, end))
    assert len(by_process) <= 2  # one process per device
    for spans in by_process.values():  # a process (a device) never runs two jobs at once
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def _threads(device: str) -> int:
    return torch.get_num_threads()


def test_cpu_processes_of_a_fan_out_share_the_cores():
    """Two CPU 'devices': each training process takes its share of the cores as torch
    threads (one each on 2 cores), so that the two never wait for each other's core."""
    from deeptree.evaluation.fanout import cpu_threads, fan_out

    assert (cpu_threads(2, cpus=2), cpu_threads(2, cpus=16), cpu_threads(3, cpus=2)) == (1, 8, 1)
    assert cpu_threads(1, cpus=4) == 4
    assert fan_out([_threads, _threads], ["cpu", "cpu"]) == [cpu_threads(2)] * 2
    assert fan_out([_threads], ["cpu"]) == [cpu_threads(1)]


def test_fan_out_raises_the_failing_job_error():
    import functools

    from deeptree.evaluation.fanout import fan_out

    with pytest.raises(InputError, match="no device"):
        fan_out([functools.partial(_where, 0)], [])
    with pytest.raises(ValueError, match="job 1 failed on cpu"):
        fan_out([functools.partial(_where, 0), functools.partial(_fail, 1)], ["cpu"])


FAN_OUT_SCRIPT = """
import functools, os, signal, sys, time
from pathlib import Path

from deeptree.evaluation.fanout import fan_out
from deeptree.signals import Terminated, sigterm_as_interrupt


def job(folder, i, device):
    # stands for a training: counts the SIGTERMs it receives, stops on the first after
    # writing its "checkpoint" (1 s), so a second signal would show in its count
    folder, received = Path(folder), []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    (folder / f"started-{i}").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    (folder / f"stopped-{i}").write_text(str(len(received)))
    raise Terminated("terminated (SIGTERM)")


if __name__ == "__main__":
    folder, grace = sys.argv[1], float(sys.argv[2])
    jobs = [functools.partial(job, folder, i) for i in range(4)]
    with sigterm_as_interrupt():
        try:
            fan_out(jobs, ["cpu", "cpu"], grace_s=grace)
        except KeyboardInterrupt:
            sys.exit(143)
"""


@pytest.mark.parametrize("to_group", [True, False], ids=["process group", "parent alone"])
def test_a_stopped_fan_out_starts_no_queued_job_and_signals_each_training_once(tmp_path, to_group):
    """SIGTERM to a fan-out of 4 jobs on 2 processes (the reference run, 2026-12-07: killed,
    its pool went on to start the next two trainings, and its parent waited for them).
    To the process group: each running job gets the signal itself, and the parent, within its
    grace (30 s here), passes nothing on. To the parent alone: after its grace (1 s) it passes
    SIGTERM on. Either way each running job receives exactly one signal, no queued job
    starts, and the command exits 143."""
    script = tmp_path / "fan_out_script.py"
    script.write_text(FAN_OUT_SCRIPT)
    grace = "30" if to_group else "1"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), grace], env=_env(), start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"started-{i}").exists() for i in (0, 1)):
            assert proc.poll() is None and time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.1)
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert sorted(p.name for p in tmp_path.glob("started-*")) == ["started-0", "started-1"]
    assert [(tmp_path / f"stopped-{i}").read_text() for i in (0, 1)] == ["1", "1"]


def test_parse_devices():
    from deeptree.evaluation.fanout import parse_devices

    assert parse_devices(None) == []
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    with pytest.raises(InputError, match="at least one"):
        parse_devices(" , ")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            parse_devices("all")


# --------------------------------------------------------------------------------------------
# the wall-time estimate of docs/training-at-scale.md (the README's "Training at scale")
# --------------------------------------------------------------------------------------------
def _scale_estimate():
    import importlib.util

    path = ROOT / "benchmarks" / "scale_estimate.py"
    spec = importlib.util.spec_from_file_location("scale_estimate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_scale_estimate_schedule():
    est = _scale_estimate()
    a = est.Assumptions()
    hours = est.trainings(a)
    one = 125_000 / 12.8 / 3600
    assert len(hours) == 18 and hours[0] == pytest.approx(one)
    assert est.schedule(hours, 1, a)["hours"] == pytest.approx(18 * one)
    eight = est.schedule(hours, 8, a)  # 8 + 8 one-GPU runs, then 2 runs on 2 GPUs each
    assert eight["ddp_trainings"] == 2
    assert eight["hours"] == pytest.approx(2 * one + one / (2 * 0.9))
    assert est.schedule(hours, 32, a)["hours"] == pytest.approx(one)  # 14 pairs + 4 singles


def test_readme_table_is_the_script_output(capsys):
    _scale_estimate().main([])
    table = capsys.readouterr().out.splitlines()[2:]
    page = doc_page("training-at-scale.md")
    for line in table:
        assert line in page, line
