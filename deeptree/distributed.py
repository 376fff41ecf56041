"""Training on several processes with PyTorch's own engine: ``torchrun``, ``torch.distributed``
and ``DistributedDataParallel`` (DDP). No launcher of our own.

How a run is split (``deeptree train`` under ``torchrun --nproc_per_node N``):

* ``torchrun`` starts N processes (ranks) and gives each ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous address in its environment
  (:func:`from_env` reads them). :func:`init_from_env` joins the process group: NCCL on GPUs
  (rank ``r`` uses ``cuda:LOCAL_RANK``), gloo on CPUs.
* The profile's batch is the *global* batch: each rank trains on ``batch_size / N`` items
  (:func:`local_batch_size` refuses a batch that N does not divide). Item ``index`` of the
  dataset depends only on ``(seed, index)``; at iteration ``it`` rank ``r`` reads items
  ``it * B + r * b ... it * B + r * b + b - 1`` (``B`` global, ``b`` local batch), so the N
  ranks together read exactly the items one process would read, disjoint and deterministic,
  and a resume continues the same streams.
* DDP averages the gradients over the ranks. The losses of ``deeptree.stage1.losses`` are
  written so that the average equals one process's gradient on the global batch: the
  per-sample and per-voxel means (CE, GUL) average correctly as they are, and the *batch*
  Dice sums its intersections and volumes over the global batch with :func:`batch_sum` (a
  differentiable all-reduce, as nnU-Net v2 does for DDP). Weights and the learning-rate
  schedule are those of one process: N processes train the same model up to floating-point
  order.
* Rank 0 alone writes the checkpoints, the log and ``best.pt``, and runs validation; the
  other ranks wait for it at their next collective (the process-group timeout,
  :data:`TIMEOUT_VARIABLE`, must exceed a validation).
* A rank that dies makes ``torchrun`` stop the others; ``--resume`` (by hand, or through
  ``torchrun --max-restarts``) continues every rank from rank 0's last checkpoint.

The same functions are a no-op in a plain process (``WORLD_SIZE`` unset): one code path.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from deeptree.io import InputError
from deeptree.networks import choose_device

#: Seconds a rank waits at a collective (for a slow peer, or rank 0's validation) before
#: the run is declared failed. Default 1800 (30 minutes).
TIMEOUT_VARIABLE = "DEEPTREE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800

#: Most DataLoader workers a rank starts by default (the GPU runs of benchmarks/RESULTS.md
#: kept up with 12).
MAX_DEFAULT_WORKERS = 12


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a ``torchrun`` launch.

    Attributes
    ----------
    rank : int
        Global rank, 0 ... ``world_size - 1`` (0 in a plain process).
    world_size : int
        Number of processes of the run (1 in a plain process).
    local_rank : int
        Rank on this node (selects the GPU ``cuda:local_rank``).
    local_world_size : int
        Processes on this node (they share its CPUs).
    launched : bool
        True when started by ``torchrun`` (the variables were set), even with one process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launched: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that writes files and validates)."""
        return self.rank == 0


def from_env(environ: dict | None = None) -> DistEnv:
    """Read ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``).

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    DistEnv
        ``launched=False`` and one process when ``WORLD_SIZE`` is not set.

    Raises
    ------
    InputError
        A variable that is not a whole number, or a rank outside ``[0, WORLD_SIZE)``.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return DistEnv()
    values = {}
    for name, default in (
        ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", None),
    ):  # fmt: skip
        text = environ.get(name, default)
        if text is None:
            continue
        try:
            values[name] = int(text)
        except ValueError:
            raise InputError(f"environment variable {name}={text!r}: not a whole number") from None
    world = values["WORLD_SIZE"]
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= values["RANK"] < world:
        raise InputError(f"RANK={values['RANK']}, WORLD_SIZE={world}: RANK must be in [0, {world})")
    if not 0 <= values["LOCAL_RANK"] < max(local_world, 1):
        raise InputError(
            f"LOCAL_RANK={values['LOCAL_RANK']}, LOCAL_WORLD_SIZE={local_world}: out of range"
        )
    return DistEnv(values["RANK"], world, values["LOCAL_RANK"], local_world, True)


def init_from_env(
    device: str | None = None, environ: dict | None = None
) -> tuple[DistEnv, torch.device]:
    """Join the process group of a ``torchrun`` launch and choose this rank's device.

    Parameters
    ----------
    device : str, optional
        ``"cpu"`` (gloo), ``"cuda"`` (NCCL, this rank's GPU ``cuda:LOCAL_RANK``) or None (CUDA if
        available). A device index (``cuda:1``) is refused under ``torchrun`` with more than
        one process: the local rank chooses the GPU.
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    env : DistEnv
    device : torch.device
        In a plain process (not launched by ``torchrun``) no group is joined and the device
        is ``deeptree.networks.choose_device(device)``.

    Raises
    ------
    InputError
        Bad variables, a device index under ``torchrun``, or CUDA asked for and absent.
    """
    env = from_env(environ)
    if not env.launched:
        return env, choose_device(device)
    if device is not None and device.startswith("cuda:") and env.world_size > 1:
        raise InputError(
            f"--device {device}: under torchrun each rank uses the GPU of its LOCAL_RANK; "
            "give --device cuda (or leave it out)"
        )
    chosen = choose_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, timeout=timeout())
    return env, chosen


def timeout() -> timedelta:
    """The collective timeout: ``DEEPTREE_DIST_TIMEOUT`` seconds, default 1800."""
    text = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        raise InputError(f"{TIMEOUT_VARIABLE}={text!r}: not a number of seconds") from None
    if seconds <= 0:
        raise InputError(f"{TIMEOUT_VARIABLE}={text!r}: must be > 0 seconds")
    return timedelta(seconds=seconds)


def shutdown() -> None:
    """Leave the process group (if joined)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def active() -> bool:
    """True when a process group is initialised (this process is one rank of a run)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    """Processes of the run (1 without a process group)."""
    return torch.distributed.get_world_size() if active() else 1


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if active():
        torch.distributed.barrier()


def local_batch_size(global_batch: int, world: int) -> int:
    """Items per rank and iteration.

    Parameters
    ----------
    global_batch : int
        The profile's batch size (what one process would train on).
    world : int
        Number of ranks.

    Returns
    -------
    int
        ``global_batch // world``.

    Raises
    ------
    InputError
        ``global_batch`` is not a multiple of ``world``: the ranks cannot train the global batch
        of the profile (give ``--batch-size`` a multiple of the process count, knowing that it
        changes the training, or fewer processes).
    """
    if world < 1 or global_batch < 1:
        raise InputError(f"batch size {global_batch} on {world} processes: both must be >= 1")
    if global_batch % world:
        raise InputError(
            f"batch size {global_batch} cannot be split over {world} processes "
            f"(torchrun --nproc_per_node x nodes): the global batch must be a multiple of the "
            f"process count. Use a process count that divides it ({_divisors(global_batch)}), or "
            "another --batch-size "
            "(which changes the training)"
        )
    return global_batch // world


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def rank_items(iteration: int, global_batch: int, rank_: int, world: int) -> range:
    """Dataset items of one rank at one iteration.

    Parameters
    ----------
    iteration : int
        0-based iteration.
    global_batch, rank_, world : int

    Returns
    -------
    range
        ``iteration * B + rank * b`` to ``iteration * B + (rank + 1) * b`` (exclusive), ``B`` the
        global and ``b`` the local batch. Over the ranks: exactly the items
        ``iteration * B ... iteration * B + B - 1`` of one process.
    """
    local = local_batch_size(global_batch, world)
    start = iteration * global_batch + rank_ * local
    return range(start, start + local)


# --------------------------------------------------------------------------------------------
# sums over the global batch (losses)
# --------------------------------------------------------------------------------------------
_REDUCE = contextvars.ContextVar("deeptree_batch_reduce", default=False)


@contextlib.contextmanager
def global_batch():
    """Within this block (the training step of a run on several ranks), :func:`batch_sum`
    sums over the ranks; elsewhere (validation on rank 0, tests, notebooks) it is the
    identity, so a loss computed on one rank alone never waits for the others."""
    token = _REDUCE.set(active())
    try:
        yield
    finally:
        _REDUCE.reset(token)


def batch_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over the ranks, differentiable (inside :func:`global_batch`).

    For a loss that sums over the batch (nnU-Net's batch Dice): every rank passes its local
    sums and gets the global ones, so every rank computes the loss of the global batch. The
    backward pass all-reduces the gradients too:
    each rank's local sums receive ``N x`` the gradient of the (identical) loss, which DDP's
    gradient average divides by ``N`` again: the gradient of one process on the global batch.

    Parameters
    ----------
    tensor : tensor, any shape, float

    Returns
    -------
    tensor, same shape and dtype
        ``tensor`` itself outside :func:`global_batch` or without a process group.
    """
    if not _REDUCE.get():
        return tensor
    return _AllReduceSum.apply(tensor)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks whose backward pass sums the gradients over the ranks too."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(total)
        return total


def mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Mean of each value over the ranks (the global-batch figure of a per-rank mean).

    Parameters
    ----------
    values : list of float
    device : torch.device
        Where the collective runs (this rank's GPU for NCCL).

    Returns
    -------
    list of float
        ``values`` unchanged without a process group.
    """
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return (t / world_size()).tolist()


def same_on_all_ranks(value: int, device: torch.device, what: str) -> None:
    """Check that every rank holds the same integer (e.g. the iteration it resumed from).

    Raises
    ------
    InputError
        When the ranks disagree (e.g. an output folder not shared by every node).
    """
    if not active():
        return
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    high, low = int(t[0]), -int(t[1])
    if high != low:
        raise InputError(
            f"{what}: the ranks disagree ({low} to {high}); the output folder must be one that "
            "every node sees (a shared filesystem)"
        )


# --------------------------------------------------------------------------------------------
# CPUs
# --------------------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(
    device: torch.device | str, processes_per_node: int = 1, cpus: int | None = None
) -> int:
    """DataLoader workers of one training process.

    On a GPU the data side must keep up with the network: each of the ``processes_per_node``
    training processes of this node gets an equal share of the available CPUs minus one for
    itself, at most :data:`MAX_DEFAULT_WORKERS`. On a CPU the cores run the network: 0
    (batches are prepared in the training process).

    Parameters
    ----------
    device : torch.device or str
    processes_per_node : int
        Training processes sharing this node's CPUs (``LOCAL_WORLD_SIZE`` under torchrun, the
        number of parallel trainings of a fan-out).
    cpus : int, optional
        Default :func:`available_cpus`.

    Returns
    -------
    int
        ``min(12, cpus // processes_per_node - 1)`` (at least 0) on CUDA, 0 on a CPU.
    """
    if torch.device(device).type != "cuda":
        return 0
    cpus = available_cpus() if cpus is None else cpus
    return max(0, min(MAX_DEFAULT_WORKERS, cpus // max(processes_per_node, 1) - 1))
