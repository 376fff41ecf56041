"""SIGTERM handled like Ctrl-C (SIGINT): what ``kill``, a batch scheduler (Slurm, Kubernetes)
or a closing terminal sends is turned into an exception, so that a command stops cleanly
(temporary files removed, a training checkpoint written) with one line instead of dying
silently.

* :class:`Terminated`: a ``KeyboardInterrupt`` that remembers it came from SIGTERM;
  ``deeptree`` exits with ``128 + signum`` (143), as a shell reports a process stopped by it.
* :func:`sigterm_as_interrupt`: while it is active, SIGTERM raises :class:`Terminated`
  (``deeptree.cli.main`` holds it for every command; ``deeptree.train`` defers it to the end
  of the running iteration, as it does Ctrl-C).

Nothing here imports the rest of the package.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM asked the process to stop (a ``KeyboardInterrupt``: whatever cleans up after
    Ctrl-C cleans up after it too).

    Attributes
    ----------
    signum : int
        ``signal.SIGTERM`` (15).
    """

    signum = int(signal.SIGTERM)


def raise_terminated(signum, frame) -> None:
    """A signal handler that raises :class:`Terminated`."""
    raise Terminated("terminated (SIGTERM)")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While active, SIGTERM raises :class:`Terminated` in the main thread (elsewhere, where
    no handler can be set, nothing changes). The previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
