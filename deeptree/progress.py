"""Progress bars for long steps: shown where someone watches, quiet under papermill.

Training, the held-out evaluation and sliding-window prediction take from seconds to hours. In
a notebook opened by a person they show a tqdm bar (``tqdm.auto``: a widget in Jupyter, text in
a terminal); in the notebooks that ``deeptree notebooks`` (papermill, ``make test``,
``make reproduce``) executes they stay quiet, so that the executed notebooks and the book hold
no half-drawn bars. The runner sets the environment variable ``DEEPTREE_PROGRESS``
(:data:`ENV`) to ``0`` for its kernels; a ``progress`` argument given by the caller wins over
it.

==========================  =================================================================
``progress=``               bar
==========================  =================================================================
``True``                    shown
``False``                   hidden
``None`` (the default)      shown, unless ``DEEPTREE_PROGRESS`` is ``0``
==========================  =================================================================
"""

from __future__ import annotations

import os

#: Environment variable: ``0`` (or ``false``, ``no``, ``off``) hides the bars whose caller
#: leaves ``progress`` at None; ``deeptree notebooks`` sets it to ``0`` for its kernels.
ENV = "DEEPTREE_PROGRESS"

_OFF = {"0", "false", "no", "off"}


def enabled(progress: bool | None = None) -> bool:
    """Whether to show a progress bar.

    Parameters
    ----------
    progress : bool or None
        The caller's choice; None: shown unless ``DEEPTREE_PROGRESS`` is ``0`` (set by the
        notebook runner for papermill kernels).

    Returns
    -------
    bool
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get(ENV, "1").strip().lower() not in _OFF


def progress_bar(iterable=None, *, progress: bool | None = None, **kwargs):
    """A ``tqdm.auto`` bar (a widget in Jupyter, text elsewhere), disabled per :func:`enabled`.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over (or None with ``total=`` and manual ``update``).
    progress : bool or None
        See :func:`enabled`.
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ``initial``, ...).

    Returns
    -------
    tqdm.auto.tqdm
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled(progress), **kwargs)
