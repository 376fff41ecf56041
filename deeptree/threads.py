"""CPU thread policy: torch's OpenMP threads sleep instead of spinning while they wait.

Why: torch runs its CPU kernels on an OpenMP thread pool, one thread per physical core by
default, and the OpenMP runtime of torch's Linux builds (GNU libgomp) lets a waiting thread
*spin* for a while at each barrier. The backward pass of a small 3D convolution crosses
thousands of barriers per step. When another process holds one of the cores, every barrier
then waits for a scheduler time slice: a cpu-profile training step was measured 10-50x slower
on a busy 2-core machine. With ``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps and wakes
when the work arrives, and the same step runs at nearly its idle speed (figures and the
candidates measured: ``benchmarks/RESULTS.md``, "CPU thread policy";
``benchmarks/bench_cpu_threads.py``).

The number of threads is left at torch's default on purpose: the thread count changes the
order of floating-point sums in the convolutions, so a count chosen from the machine's load
would make a training's weights depend on what else was running. With the default count a
run on the same machine gives the same numbers as before the policy existed.

Applied once per process by ``import deeptree``, so by the ``deeptree`` command, by every
notebook kernel (the runner's kernels also inherit the variable), and by a user's own notebook
or script. The variable is read by the OpenMP runtime once, when torch loads it:

* **before torch is imported** the policy takes effect, and child processes (DataLoader
  workers, notebook kernels, ``deeptree`` subprocesses) inherit it;
* **after torch was imported** the wait policy of this process can no longer change. The
  package then changes nothing and warns once (:class:`ThreadPolicyWarning`) with what to do
  instead: import deeptree before torch (restart the kernel), start Jupyter or Python with
  ``OMP_WAIT_POLICY=PASSIVE`` in its environment, or call ``torch.set_num_threads(1)``
  (one thread never waits for another).

An explicit user setting always wins: ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already in the
environment is left as it is; the package never calls ``torch.set_num_threads``, so neither
``OMP_NUM_THREADS`` nor a user's ``torch.set_num_threads`` is ever changed; and
``DEEPTREE_THREAD_POLICY=off`` switches the policy off (the runtime's defaults).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass, field

#: Set to ``off`` (or ``0``, ``no``, ``false``, ``none``) to keep the OpenMP runtime's defaults.
OPT_OUT_VARIABLE = "DEEPTREE_THREAD_POLICY"

#: The variables of the policy, with the values it sets.
POLICY: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}

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


def decide_policy(environ: MutableMapping[str, str], *, torch_loaded: bool) -> ThreadPolicy:
    """Which variables the policy sets in ``environ``, without setting them.

    Parameters
    ----------
    environ : mapping of str to str
        The process environment.
    torch_loaded : bool
        Whether torch is already imported in this process (then nothing can take effect).

    Returns
    -------
    ThreadPolicy
        ``set_variables`` holds what to add to ``environ``.
    """
    user = {k: environ[k] for k in USER_VARIABLES if k in environ}
    if environ.get(OPT_OUT_VARIABLE, "").strip().lower() in _OFF_WORDS:
        return ThreadPolicy({}, user, f"off ({OPT_OUT_VARIABLE})")
    if torch_loaded:
        return ThreadPolicy({}, user, "not applied: torch was imported before deeptree")
    if "OMP_WAIT_POLICY" in user or "GOMP_SPINCOUNT" in user:
        return ThreadPolicy({}, user, "the user's setting kept")
    return ThreadPolicy(dict(POLICY), user, "applied before torch loaded")


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
    policy = decide_policy(os.environ, torch_loaded=torch is not None)
    os.environ.update(policy.set_variables)
    _APPLIED = policy
    if torch is not None and not policy.user_variables and policy.reason.startswith("not applied"):
        threads = torch.get_num_threads() if hasattr(torch, "get_num_threads") else 2
        if threads > 1:
            warnings.warn(
                "torch was imported before deeptree, so deeptree could not set "
                "OMP_WAIT_POLICY=PASSIVE for this process: on a busy machine, CPU training can be "
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
    policy = decide_policy(target, torch_loaded=False)
    target.update(policy.set_variables)
    return policy


def current_policy() -> ThreadPolicy:
    """The policy that ``import deeptree`` applied in this process."""
    return apply_policy()
