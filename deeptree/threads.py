"""CPU thread policy: torch's OpenMP threads stop spinning soon, or at once on a busy machine.

Why: torch runs its CPU kernels on an OpenMP thread pool, one thread per physical core by
default, and the OpenMP runtime of torch's Linux builds (GNU libgomp) lets a waiting thread
*spin* at each barrier (300,000 rounds by default) before it sleeps. The backward pass of a
small 3D convolution crosses thousands of barriers per step. When another process holds one
of the cores, every barrier then waits for a scheduler time slice: a cpu-profile training
step was measured 10-50x slower on a busy 2-core machine, and up to 400x slower beside other
torch jobs (``benchmarks/RESULTS.md``, "CPU thread policy"; ``benchmarks/bench_cpu_threads.py``).

What the policy sets, decided once when the process starts, from how many other tasks want a
CPU at that moment (Linux: the running-task count of ``/proc/loadavg``, median of a few
readings; elsewhere the 1-minute load average):

* **busy machine** (at least :data:`BUSY_LOAD` other task wants a CPU, so one of torch's
  threads, one per core, will share its core): ``OMP_WAIT_POLICY=PASSIVE``. A waiting thread
  sleeps at once and wakes when the work arrives; beside other jobs this was the fastest
  policy measured, by far;
* **idle machine**: ``GOMP_SPINCOUNT=10000``. A waiting thread spins briefly, which on an idle
  machine is as fast as the default (a passive wait costs 20-60% there: every barrier pays a
  wake-up), then sleeps, so that if the machine becomes busy later the step still runs several
  times faster than with the default.

Both keep the results bit for bit: the wait policy changes only how threads wait, not how the
work is split. The number of threads is left at torch's default on purpose: the thread count
changes the order of floating-point sums in the convolutions, so a count chosen from the
machine's load would make a training's weights depend on what else was running.

Applied once per process by ``import deeptree``, so by the ``deeptree`` command, by every
notebook kernel (the runner decides once for all its kernels, which inherit the variable), and
by a user's own notebook or script. The variables are read by the OpenMP runtime once, when
torch loads it:

* **before torch is imported** the policy takes effect, and child processes (DataLoader
  workers, notebook kernels, ``deeptree`` subprocesses) inherit it;
* **after torch was imported** the wait policy of this process can no longer change. The
  package then changes nothing and warns once (:class:`ThreadPolicyWarning`) with what to do
  instead: import deeptree before torch (restart the kernel), start Jupyter or Python with
  ``OMP_WAIT_POLICY=PASSIVE`` in its environment, or call ``torch.set_num_threads(1)``
  (one thread never waits for another).

An explicit user setting always wins: ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already in the
environment is left as it is; the package never calls ``torch.set_num_threads`` in a user's
process, so neither ``OMP_NUM_THREADS`` nor a user's ``torch.set_num_threads`` is ever changed
there (the training processes that ``deeptree.evaluation.fanout`` starts on a CPU set their
own share of the cores, and their checkpoints record it). The variable
``DEEPTREE_THREAD_POLICY`` chooses: unset or ``auto`` (by the load, as above), ``passive`` or
``spin`` (always that one), ``off`` (the runtime's defaults).

``GOMP_SPINCOUNT`` is read by GNU libgomp (torch's Linux wheels); LLVM's libomp (macOS builds)
ignores it, so there an idle-machine start keeps the runtime's default waiting.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field

#: ``auto`` (default), ``passive``, ``spin``, or ``off`` (or ``0``, ``no``, ``false``,
#: ``none``) to keep the OpenMP runtime's defaults.
OPT_OUT_VARIABLE = "DEEPTREE_THREAD_POLICY"

#: Set on a busy machine: waiting threads sleep at once.
PASSIVE: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}

#: Set on an idle machine: waiting threads spin for 10,000 rounds (libgomp's default is
#: 300,000), then sleep. Chosen from the measurements in ``benchmarks/RESULTS.md``.
SHORT_SPIN: dict[str, str] = {"GOMP_SPINCOUNT": "10000"}

#: Set beside the policy's variables, so that a child process (a notebook kernel) reports them
#: as inherited from deeptree rather than as the user's; holds the parent's decision.
INHERITED_VARIABLE = "DEEPTREE_THREAD_POLICY_APPLIED"

#: Other tasks wanting a CPU from which the machine counts as busy: one is enough for one of
#: torch's threads (one per core) to share its core. Counted now rather than as the 1-minute
#: load average, which still holds the load of a command that has just ended (a phantom
#: generation before a training, a benchmark's previous process) and would call an idle
#: machine busy.
BUSY_LOAD = 1.0

#: Variables that are the user's explicit choice of how OpenMP threads wait or how many run;
#: reported by :class:`ThreadPolicy`. ``GOMP_SPINCOUNT`` also decides the waiting, so a user
#: who set it keeps it and gets no ``OMP_WAIT_POLICY`` from the policy.
USER_VARIABLES: tuple[str, ...] = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")

_OFF_WORDS = {"off", "0", "no", "false", "none"}


class ThreadPolicyWarning(UserWarning):
    """The thread policy could not be applied because torch was imported first."""


@dataclass(frozen=True)
class ThreadPolicy:
    """What the policy did in one process.

    Attributes
    ----------
    set_variables : dict of str to str
        Environment variables the policy set (empty when it set none).
    user_variables : dict of str to str
        Thread variables that were already set (the user's); the policy left them alone.
    reason : str
        Why the policy did or did not act, in a few words.
    """

    set_variables: dict[str, str] = field(default_factory=dict)
    user_variables: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        """One line for logs and ``deeptree info``, e.g. ``OMP_WAIT_POLICY=PASSIVE; applied``."""
        parts = [f"{k}={v}" for k, v in self.set_variables.items()]
        parts += [f"{k}={v} (yours)" for k, v in self.user_variables.items()]
        return "; ".join([", ".join(parts), self.reason] if parts else [self.reason])


def machine_load(readings: int = 5, interval_s: float = 0.002) -> float | None:
    """How many tasks other than this one want a CPU now, or None where the OS cannot say.

    Linux: the running-task count of ``/proc/loadavg`` (its 4th field, ``running/total``,
    which counts this process too), the median of ``readings`` readings ``interval_s`` apart
    (a kernel thread's blip is not a job). Elsewhere: the 1-minute load average.

    Returns
    -------
    float or None
        Tasks (>= 0).
    """
    try:
        counts = []
        for i in range(readings):
            if i:
                time.sleep(interval_s)
            with open("/proc/loadavg", encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        return float(max(0, statistics.median(counts)))
    except (OSError, IndexError, ValueError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _inherited(environ: MutableMapping[str, str]) -> dict[str, str]:
    """The policy's variables that a deeptree parent process set, if they are unchanged."""
    record = environ.get(INHERITED_VARIABLE, "")
    names = {key for key in record.split("|", 1)[0].split(",") if key}
    for policy in (PASSIVE, SHORT_SPIN):
        if set(policy) == names and all(environ.get(k) == v for k, v in policy.items()):
            return dict(policy)
    return {}


def decide_policy(environ: MutableMapping[str, str], *, torch_loaded: bool,
                  load: float | None = None) -> ThreadPolicy:
    """Which variables the policy sets in ``environ``, without setting them.

    Parameters
    ----------
    environ : mapping of str to str
        The process environment.
    torch_loaded : bool
        Whether torch is already imported in this process (then nothing can take effect).
    load : float, optional
        Other tasks wanting a CPU; default: the machine's now (:func:`machine_load`). Used
        only in the ``auto`` mode; unknown counts as idle.

    Returns
    -------
    ThreadPolicy
        ``set_variables`` holds what to add to ``environ``.

    Raises
    ------
    ValueError
        ``DEEPTREE_THREAD_POLICY`` holds a word that is none of the modes.
    """
    user = {k: environ[k] for k in USER_VARIABLES if k in environ}
    mode = environ.get(OPT_OUT_VARIABLE, "").strip().lower() or "auto"
    if mode in _OFF_WORDS:
        return ThreadPolicy({}, user, f"off ({OPT_OUT_VARIABLE})")
    if mode not in ("auto", "passive", "spin"):
        raise ValueError(f"{OPT_OUT_VARIABLE}={environ[OPT_OUT_VARIABLE]!r}: use auto, "
                         "passive, spin or off")
    if torch_loaded:
        return ThreadPolicy({}, user, "not applied: torch was imported before deeptree")
    inherited = _inherited(environ)
    if inherited:
        rest = {k: v for k, v in user.items() if k not in inherited}
        values = ", ".join(f"{k}={v}" for k, v in inherited.items())
        parent = environ[INHERITED_VARIABLE].partition("|")[2]
        return ThreadPolicy({}, rest, f"{values} inherited from the parent process, {parent}")
    if "OMP_WAIT_POLICY" in user or "GOMP_SPINCOUNT" in user:
        return ThreadPolicy({}, user, "the user's setting kept")
    if mode == "passive":
        return ThreadPolicy(dict(PASSIVE), user, f"applied before torch loaded ({OPT_OUT_VARIABLE})")
    if mode == "spin":
        return ThreadPolicy(dict(SHORT_SPIN), user,
                            f"applied before torch loaded ({OPT_OUT_VARIABLE})")
    load = machine_load() if load is None else load
    if load is not None and load >= BUSY_LOAD:
        return ThreadPolicy(dict(PASSIVE), user,
                            f"applied before torch loaded (machine busy: {load:g} other tasks running)")
    state = "load unknown" if load is None else f"{load:g} other tasks running"
    return ThreadPolicy(dict(SHORT_SPIN), user,
                        f"applied before torch loaded (machine idle: {state})")


_APPLIED: ThreadPolicy | None = None


def apply_policy() -> ThreadPolicy:
    """Apply the policy to this process's environment, once; later calls return the first.

    Called by ``deeptree/__init__.py``, so that it runs before any deeptree module imports
    torch. Warns once (:class:`ThreadPolicyWarning`) when torch was imported first with more
    than one thread and no thread variable of the user's.

    Returns
    -------
    ThreadPolicy
        What was done; also :func:`current_policy`.
    """
    global _APPLIED
    if _APPLIED is not None:
        return _APPLIED
    torch = sys.modules.get("torch")
    try:
        policy = decide_policy(os.environ, torch_loaded=torch is not None)
    except ValueError as error:  # a mistyped mode: say so, keep the runtime's defaults
        warnings.warn(str(error), ThreadPolicyWarning, stacklevel=3)
        policy = ThreadPolicy({}, {}, f"not applied: {error}")
    os.environ.update(_with_record(policy))
    _APPLIED = policy
    if torch is not None and not policy.user_variables and policy.reason.startswith("not applied"):
        threads = torch.get_num_threads() if hasattr(torch, "get_num_threads") else 2
        if threads > 1:
            warnings.warn(
                "torch was imported before deeptree, so deeptree could not set its "
                "OpenMP wait policy for this process: on a busy machine, CPU training can be "
                "10x slower. Import deeptree before torch (restart the kernel), or start Python / "
                "Jupyter with OMP_WAIT_POLICY=PASSIVE, or call torch.set_num_threads(1).",
                ThreadPolicyWarning,
                stacklevel=3,
            )
    return policy


def apply_to_child_processes(environ: MutableMapping[str, str] | None = None) -> ThreadPolicy:
    """Put the policy into the environment that processes started from here inherit.

    Unlike :func:`apply_policy` this acts even when torch is already loaded in this process:
    a new process (a notebook kernel, a ``deeptree`` subprocess) loads its own OpenMP runtime.
    The user's own variables and ``DEEPTREE_THREAD_POLICY=off`` are respected as there.
    Used by the notebook runner before it starts the kernels.

    Parameters
    ----------
    environ : mutable mapping of str to str, optional
        Default ``os.environ``.

    Returns
    -------
    ThreadPolicy
        What was set.
    """
    target = os.environ if environ is None else environ
    _drop_stale(target)
    policy = decide_policy(target, torch_loaded=False)
    target.update(_with_record(policy))
    return policy


def _drop_stale(environ: MutableMapping[str, str]) -> None:
    """Remove the policy's variables from an earlier decision when the user has set a wait
    variable of their own since (e.g. ``OMP_WAIT_POLICY=ACTIVE`` after a run that set
    ``GOMP_SPINCOUNT``): theirs must reach the children alone."""
    inherited = _inherited(environ)
    user_wait = [k for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ and k not in inherited]
    if inherited and user_wait:
        for key in (*inherited, INHERITED_VARIABLE):
            environ.pop(key, None)


def _with_record(policy: ThreadPolicy) -> dict[str, str]:
    """The policy's variables plus :data:`INHERITED_VARIABLE` (none when it sets nothing)."""
    if not policy.set_variables:
        return {}
    names = ",".join(sorted(policy.set_variables))
    return {**policy.set_variables, INHERITED_VARIABLE: f"{names}|{policy.reason}"}


def current_policy() -> ThreadPolicy:
    """The policy that ``import deeptree`` applied in this process."""
    return apply_policy()


def cpu_description(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's model name and widest x86 vector extension, for run summaries.

    Why: the same cpu-profile step takes 2-3x longer on an AVX2 core than on an AVX-512 core
    of the same family (benchmarks/RESULTS.md, "Parallel trainings on the CPU"), and torch's
    kernels sum in another order, so a run's time and figures are only comparable on the same
    class of CPU.

    Parameters
    ----------
    cpuinfo : path-like
        A Linux ``/proc/cpuinfo`` (its first processor's ``model name`` and ``flags``).

    Returns
    -------
    str
        For example ``"AMD EPYC, AVX-512"`` or ``"AMD EPYC, AVX2 (no AVX-512)"``; ``"unknown
        CPU"`` where the file cannot be read (other systems).
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return "unknown CPU"
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    name = fields.get("model name", "unknown CPU")
    flags = set(fields.get("flags", "").split())
    if "avx512f" in flags:
        return f"{name}, AVX-512"
    if "avx2" in flags:
        return f"{name}, AVX2 (no AVX-512)"
    return name
