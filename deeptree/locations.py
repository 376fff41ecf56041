"""Where the package finds its files and writes its runs, in a clone and when installed.

A clone (``git clone``, ``make setup``: an editable install, or ``PYTHONPATH`` pointing at the
clone) keeps the sample files in ``data/samples/`` and writes runs to ``runs/`` at its root.
A package installed from a wheel (``pip install .``) carries the same sample files inside
itself, as ``deeptree/samples/`` (``setup.py`` maps ``data/samples`` there), has no notebooks,
and writes runs under the current directory, never inside ``site-packages``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: The folder of the ``deeptree`` package.
PACKAGE_DIR: Path = Path(__file__).resolve().parent


def clone_root() -> Path | None:
    """The root of the repository clone this package is imported from, or None.

    Returns
    -------
    Path or None
        The folder above ``deeptree/`` when it holds ``pyproject.toml`` and ``notebooks/``
        (a clone); None for an installed package (``site-packages`` holds neither).
    """
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def samples_dir() -> Path:
    """The folder of the real sample files (see ``data/samples/README.md``).

    Returns
    -------
    Path
        ``deeptree/samples`` inside an installed package (found with
        :mod:`importlib.resources`), else ``data/samples`` of the clone. The folder may be
        missing in a broken checkout; callers that read from it say which file is missing.
    """
    installed = importlib.resources.files("deeptree") / "samples"
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / "data" / "samples"


def runs_root() -> Path:
    """The folder under which run folders are created by default.

    Returns
    -------
    Path
        ``runs/`` at the root of a clone; ``runs/`` under the current directory for an
        installed package (absolute, not created here).
    """
    root = clone_root()
    return (root if root is not None else Path.cwd()) / "runs"
