"""Results of notebook runs: the small JSON each notebook writes, and the ``summary.md``
that ``make reproduce`` collects from them.

A notebook ends with::

    report.save_results("05_stage1_training", {"TLD": 0.71, ...}, run_dir)

and ``deeptree notebooks --summary`` (called by ``make reproduce``) writes
``<run_dir>/summary.md`` with one section per notebook.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from deeptree.io import atomic_write
from deeptree.locations import runs_root
from deeptree.threads import current_policy

RESULTS_SUFFIX = ".results.json"


def results_dir(run_dir: str | os.PathLike | None) -> Path:
    """Folder for a notebook's outputs.

    Parameters
    ----------
    run_dir : path-like or None
        The run folder given by papermill (``-p run_dir ...``); None (an interactive
        session) means ``runs/interactive`` at the repository root (of a clone; under the
        current directory for an installed package).

    Returns
    -------
    Path
        Created if missing.
    """
    if run_dir is None:
        run_dir = runs_root() / "interactive"
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def jsonable(value):
    """A value with numpy scalars and arrays, paths, tuples and non-string keys turned into
    plain JSON types (lists, strings, numbers), recursively.

    Parameters
    ----------
    value : any
        Nested dicts, lists and tuples of numbers, strings, numpy values and paths.

    Returns
    -------
    The same structure with dict keys as ``str``, tuples and arrays as lists, numpy scalars as
    python numbers, paths as ``str``.
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def save_results(notebook: str, results: dict, run_dir: str | os.PathLike | None = None) -> Path:
    """Write a notebook's key figures as ``<run_dir>/<notebook>.results.json`` (atomically).

    Parameters
    ----------
    notebook : str
        Notebook name without extension, e.g. ``"00_overview"``.
    results : dict
        Flat or nested mapping of JSON-friendly values (numpy scalars are converted).
    run_dir : path-like or None
        See :func:`results_dir`.

    Returns
    -------
    Path
        The JSON file.
    """
    payload = {
        "notebook": notebook,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": jsonable(results),
    }
    path = results_dir(run_dir) / f"{notebook}{RESULTS_SUFFIX}"
    text = json.dumps(payload, indent=2, sort_keys=False)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def load_results(run_dir: str | os.PathLike) -> list[dict]:
    """All ``*.results.json`` of a run folder, sorted by notebook name."""
    return [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob(f"*{RESULTS_SUFFIX}"))]


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in value.items())
    return str(value)


def write_summary(run_dir: str | os.PathLike, header: str | None = None) -> Path:
    """Collect the results JSON of every notebook of a run into ``summary.md``.

    Parameters
    ----------
    run_dir : path-like
        A run folder with ``*.results.json`` files.
    header : str, optional
        Text placed under the title (profile, commit, timings).

    Returns
    -------
    Path
        ``<run_dir>/summary.md``; paths inside ``run_dir`` are written relative to it.
    """
    run_dir = Path(run_dir)
    lines = [f"# DeepTree run summary: {run_dir.name}", ""]
    if header:
        lines += [header, ""]
    entries = load_results(run_dir)
    if not entries:
        lines.append("No notebook wrote results.")
    for entry in entries:
        lines += [f"## {entry['notebook']}", ""]
        results = entry.get("results", {})
        if results:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {k} | {_format_value(v)} |" for k, v in results.items()]
        else:
            lines.append("(no figures)")
        lines.append("")
    # relative paths only: the summary is committed with the results, and the machine's
    # folders mean nothing elsewhere
    text = relative_paths("\n".join(lines), [run_dir])
    return atomic_write(run_dir / "summary.md", lambda tmp: Path(tmp).write_text(text))


def relative_paths(text: str, folders) -> str:
    """Write every path inside one of ``folders`` relative to it.

    ``/home/me/runs/x/05_stage1/last.pt`` -> ``05_stage1/last.pt`` for the folder
    ``/home/me/runs/x``; the folder itself becomes ``.``. The longest folder wins (a run folder
    inside the repository before the repository).

    Parameters
    ----------
    text : str
    folders : iterable of path-like
        Absolute folders (each is taken both as given and resolved).

    Returns
    -------
    str
    """
    prefixes = {str(f) for folder in folders for f in (Path(folder).absolute(),
                                                       Path(folder).resolve())}
    for prefix in sorted(prefixes, key=len, reverse=True):
        # the folder followed by a separator, or by the end of the path
        text = re.sub(re.escape(prefix) + r"(?:" + re.escape(os.sep) + r"|(?![\w.-]))",
                      lambda m: "" if m.group(0).endswith(os.sep) else ".", text)
    return text


def environment_report() -> dict[str, str]:
    """Versions of Python and the main libraries, the compute device and the CPU threads.

    Returns
    -------
    dict of str -> str
    """
    import monai
    import nibabel
    import numpy
    import scipy
    import skimage
    import torch

    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({os.cpu_count()} logical cores)"
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "nibabel": nibabel.__version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "device": device,
        # the CPU thread policy that `import deeptree` applied (deeptree/threads.py)
        "cpu threads": f"{torch.get_num_threads()} ({current_policy().describe()})",
    }
    try:
        import napari

        report["napari"] = napari.__version__
    except ImportError:  # napari comes with the 'napari' extra; a core install has none
        report["napari"] = "not installed"
    return report
