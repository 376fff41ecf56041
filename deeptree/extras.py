"""The optional parts of the package and a clear error when one is missing.

A core install (``pip install deeptree``) runs every step of the method from the command line
(``deeptree phantom``, ``labels``, ``train``, ``predict``, ``segment``, ``evaluate`` ...) and
needs no Qt and no Jupyter. The rest comes with extras (``pyproject.toml``):

============  ===============================================================================
extra         what it adds
============  ===============================================================================
napari        3D views: ``deeptree view``, ``viz.render_3d``, napari's File > Open of cases
notebooks     the tutorial notebooks (napari included) and ``deeptree notebooks`` (papermill)
test          pytest, hypothesis, ruff (and the notebooks extra: the suite covers them)
book          ``make book`` (MkDocs) and its browser check
all           all of the above (what ``make setup`` installs)
============  ===============================================================================

Modules of an extra are imported where they are used, through :func:`require`, never at the
import of ``deeptree`` or of a command-line module.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """A module of an optional extra is not installed. The message names the extra."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import a module of an optional extra, or fail with a message naming the extra.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"napari"`` or ``"papermill"``.
    extra : str
        The extra of ``pyproject.toml`` that installs it (``"napari"``, ``"notebooks"``,
        ``"book"``).
    purpose : str
        What needs it, for the message (e.g. ``"deeptree view"``).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingExtraError
        When the module (or a package it imports) is not installed. Other import errors (a
        broken installation, a missing system library) keep their own message.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or module
        raise MissingExtraError(
            f"{purpose} needs {missing}, which is not installed: it comes with the "
            f"'{extra}' extra: pip install 'deeptree[{extra}]' (in a clone: make setup)",
            name=missing,
        ) from err
