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
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

from deeptree.distributed import available_cpus
from deeptree.io import InputError
from deeptree.networks import choose_device

T = TypeVar("T")
_DEVICE: str | None = None  # the device of this pool process (set by _bind)


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


def fan_out(jobs: Sequence[Callable[[str], T]], devices: Sequence[str]) -> list[T]:
    """Run ``job(device)`` for every job, in parallel, one job at a time per device.

    Parameters
    ----------
    jobs : sequence of callables
        Picklable (module-level functions or ``functools.partial`` of them): each runs in a
        fresh process started with ``spawn``.
    devices : sequence of str
        One pool process per entry; a job runs on the device of the process that takes it.

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
        queued ones are cancelled).
    """
    if not devices:
        raise InputError("fan_out: no device given")
    if not jobs:
        return []
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    for device in devices:
        queue.put(str(device))
    threads = cpu_threads(sum(1 for d in devices if not str(d).startswith("cuda")))
    with ProcessPoolExecutor(
        max_workers=len(devices), mp_context=context, initializer=_bind,
        initargs=(queue, threads),
    ) as pool:  # fmt: skip
        futures = [pool.submit(_run_job, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


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


def _bind(queue, threads: int = 1) -> None:
    """Pool initializer: take one device for the life of this process (a CPU process: its
    share of the cores as torch threads)."""
    global _DEVICE
    _DEVICE = queue.get()
    if _DEVICE.startswith("cuda"):
        torch.cuda.set_device(torch.device(_DEVICE))
    else:
        torch.set_num_threads(threads)


def _run_job(job: Callable[[str], T]) -> T:
    return job(_DEVICE)


def current_device() -> str | None:
    """The device of this fan-out process (None outside :func:`fan_out`)."""
    return _DEVICE
