"""The package's input error, in a module of its own so that :mod:`deeptree.io` and
:mod:`deeptree.io_checks` (which :mod:`deeptree.io` imports) both raise the one class.

Callers import it as ``deeptree.io.InputError`` (README, notebooks, tests).
"""

from __future__ import annotations


class InputError(ValueError):
    """A bad input file or array. The message names the file (or array) and the problem."""
