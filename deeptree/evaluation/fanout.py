"""Independent trainings in parallel, one per device: the cheap parallelism of an ablation.

A reproduction trains many models that do not talk to each other (the stage-1 variants x
seeds, stage 2 per seed). Spreading *them* over the GPUs of a node (one training per GPU)
needs no communication, keeps every training exactly the one-GPU training, and scales
perfectly as long as there are at least as many trainings as GPUs. ``torchrun`` with
DistributedDataParallel (``deeptree.distributed``) is for the other case: one training made
faster, which pays off only when GPUs outnumber the trainings left, and for the paper's
settings at most 2 ways (the gpu profile's batch of 2 patches split 1 + 1).

:func:`fan_out` runs picklable jobs ``job(device) -> result`` in a pool of processes (``spawn``,
so CUDA starts cleanly in each), one process per device, each process bound to its device for
its whole life, so that a device never runs two jobs at once. ``deeptree.evaluation.reproduce``
uses it (``reproduce(..., devices=[...])``, ``deeptree reproduce --devices``) to train its
models before evaluating them one by one; a statistical design with seeds adds its jobs the
same way: one picklable callable per (variant, seed).

On a CPU the "devices" are processes sharing the cores: ``["cpu", "cpu"]`` runs two trainings
side by side, each with its share of the cores as torch threads (:func:`cpu_threads`; one each
on a 2-core machine). Two one-thread trainings do more work per minute than one two-thread
training: a small 3D network's step does not split well over threads (thousands of barriers
per step), while two processes never wait for each other (``benchmarks/RESULTS.md``, "Parallel
trainings on the CPU"). The cpu reproduction trains that way by default
(``ReproduceSettings.cpu_trainings``).

Stopping. A job that fails stops the fan-out from starting more jobs (the running ones finish).
Ctrl-C or SIGTERM stops it at once: to the process group (``kill -- -PGID``, a terminal's
Ctrl-C), each running training receives the signal itself, writes its checkpoint and stops;
to the parent alone (``kill PID``), the parent passes SIGTERM on to its pool processes after
:data:`STOP_GRACE_S` seconds if they are still running (never at once: a second signal would
interrupt a training before its checkpoint, ``deeptree.train``). No queued job starts after
either, so the run resumes where it stopped (``--resume``; a reproduction skips finished
models).
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from typing import TypeVar

import torch

from deeptree.distributed import available_cpus
from deeptree.io import InputError
from deeptree.networks import choose_device

T = TypeVar("T")
_DEVICE: str | None = None  # the device of this pool process (set by _bind)
_STOP = None  # the fan-out's stop event, in each pool process (set by _bind)

#: Seconds an interrupted parent waits for its running jobs to stop on their own (the signal
#: reached the whole process group) before it passes SIGTERM on to them.
STOP_GRACE_S = 60.0


class NotStarted(RuntimeError):
    """A queued job the fan-out did not start because it was stopping."""


def parse_devices(text: str | None) -> list[str]:
    """The devices of ``--devices``.

    Parameters
    ----------
    text : str or None
        ``"all"`` (every visible GPU), or a comma-separated list such as
        ``"cuda:0,cuda:1"`` (``"cpu,cpu"`` runs two trainings on the CPU, for tests).

    Returns
    -------
    list of str
        Empty for None.

    Raises
    ------
    InputError
        ``all`` without a GPU, an unknown or absent device, or a GPU named twice.
    """
    if text is None:
        return []
    if text.strip() == "all":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError("--devices all: no CUDA GPU is visible")
        return [f"cuda:{i}" for i in range(count)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise InputError(f"--devices {text!r}: name at least one device")
    for device in devices:
        chosen = choose_device(device)
        if chosen.type == "cuda" and chosen.index is None:
            raise InputError(f"--devices {text!r}: give GPUs by index (cuda:0,cuda:1) or 'all'")
    gpus = [d for d in devices if d.startswith("cuda")]
    if len(set(gpus)) != len(gpus):
        raise InputError(f"--devices {text!r}: a GPU is named twice (one training per GPU)")
    return devices


def fan_out(
    jobs: Sequence[Callable[[str], T]], devices: Sequence[str], *, grace_s: float = STOP_GRACE_S
) -> list[T]:
    """Run ``job(device)`` for every job, in parallel, one job at a time per device.

    Parameters
    ----------
    jobs : sequence of callables
        Picklable (module-level functions or ``functools.partial`` of them): each runs in a
        fresh process started with ``spawn``.
    devices : sequence of str
        One pool process per entry; a job runs on the device of the process that takes it.
    grace_s : float
        After Ctrl-C or SIGTERM, seconds to wait for the running jobs to stop on their own
        before passing SIGTERM on to them (see the module docstring).

    Returns
    -------
    list
        The jobs' results, in the order of ``jobs``.

    Raises
    ------
    InputError
        No device given.
    Exception
        The first failing job's exception (the other running jobs finish first; the
        queued ones never start).
    KeyboardInterrupt
        Ctrl-C or SIGTERM (:class:`deeptree.signals.Terminated`), raised once the running
        jobs have stopped; the queued ones never start.
    """
    if not devices:
        raise InputError("fan_out: no device given")
    if not jobs:
        return []
    context = multiprocessing.get_context("spawn")
    devices_left, pids, stop = context.Queue(), context.Queue(), context.Event()
    for device in devices:
        devices_left.put(str(device))
    threads = cpu_threads(sum(1 for d in devices if not str(d).startswith("cuda")))
    with ProcessPoolExecutor(
        max_workers=len(devices), mp_context=context, initializer=_bind,
        initargs=(devices_left, threads, stop, pids),
    ) as pool:  # fmt: skip
        futures = [pool.submit(_run_job, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException as err:
            stop.set()  # a job already handed to a pool process must not start either
            for f in futures:
                f.cancel()
            if isinstance(err, KeyboardInterrupt):  # Ctrl-C, SIGTERM: stop the running ones
                _stop_running(futures, pids, grace_s)
            raise


def _stop_running(futures, pids, grace_s: float) -> None:
    """SIGTERM to the pool processes whose jobs have not stopped within ``grace_s``."""
    _, running = wait(futures, timeout=grace_s)
    if not running:
        return
    while True:
        try:
            pid = pids.get(timeout=1.0)
        except queue_module.Empty:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def cpu_threads(processes: int, cpus: int | None = None) -> int:
    """Torch threads of each of ``processes`` CPU trainings run side by side.

    Parameters
    ----------
    processes : int
        CPU "devices" of the fan-out (at least 1).
    cpus : int, optional
        Default :func:`deeptree.distributed.available_cpus`.

    Returns
    -------
    int
        ``max(1, cpus // processes)``: each process its share of the cores, so that the
        processes do not compete for a core (a waiting OpenMP thread whose core is taken
        slows every step many times, ``deeptree.threads``).
    """
    cpus = available_cpus() if cpus is None else cpus
    return max(1, cpus // max(1, processes))


def _bind(devices_left, threads: int, stop, pids) -> None:
    """Pool initializer: take one device for the life of this process (a CPU process: its
    share of the cores as torch threads); keep the fan-out's stop event; tell the parent
    this process's pid (for :func:`_stop_running`)."""
    global _DEVICE, _STOP
    _DEVICE, _STOP = devices_left.get(), stop
    pids.put(os.getpid())
    if _DEVICE.startswith("cuda"):
        torch.cuda.set_device(torch.device(_DEVICE))
    else:
        torch.set_num_threads(threads)


def _run_job(job: Callable[[str], T]) -> T:
    if _STOP.is_set():
        raise NotStarted("not started: the fan-out was stopping")
    try:
        return job(_DEVICE)
    except BaseException:
        _STOP.set()  # a failed or interrupted job: no pool process starts another
        raise


def current_device() -> str | None:
    """The device of this fan-out process (None outside :func:`fan_out`)."""
    return _DEVICE
