"""Execute the tutorial notebooks with papermill, each in a fresh kernel.

Used by ``make test`` (``--profile smoke``, executed copies in ``runs/ci/``) and by
``make reproduce`` (``--profile cpu|gpu``, a dated run folder with HTML exports and a
``summary.md``). Every notebook receives two papermill parameters: ``profile`` and
``run_dir`` (the absolute run folder, where it writes its outputs and results JSON).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deeptree.config import check_profile
from deeptree.extras import require
from deeptree.io import atomic_write
from deeptree.progress import ENV as PROGRESS_ENV
from deeptree.report import write_summary
from deeptree.threads import apply_to_child_processes, cpu_description

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

#: Longest a single cell may run before the notebook fails (s): a hung cell must fail CI,
#: not block it. None = no limit (long GPU training cells). cpu: notebook 07's reproduction
#: is one cell, estimated at about 1 h on the AVX-512 machine and 2 h on an AVX2 one
#: (deeptree.evaluation.budget; a test keeps the limit above the AVX2 estimate x 1.5).
CELL_TIMEOUT_S: dict[str, int | None] = {"smoke": 600, "cpu": 4 * 3600, "gpu": None}


@dataclass
class NotebookRun:
    """Outcome of one executed notebook."""

    name: str
    seconds: float
    ok: bool
    error: str = ""


def list_notebooks(folder: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks (``NN_*.ipynb``) of ``folder``, in order."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if p.is_file())


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def export_html(notebook: Path) -> Path:
    """Write ``notebook`` as HTML beside it (atomically) and return the HTML path."""
    nbformat = require("nbformat", "notebooks", "the HTML export of notebooks")
    HTMLExporter = require("nbconvert", "notebooks", "the HTML export of notebooks").HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    return atomic_write(target, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))


def run_notebooks(
    profile: str,
    out_dir: str | os.PathLike,
    notebooks: list[Path] | None = None,
    *,
    html: bool = False,
    summary: bool = False,
    stop_on_error: bool = False,
) -> list[NotebookRun]:
    """Execute notebooks in order with papermill, each in a fresh kernel.

    Parameters
    ----------
    profile : str
        Run profile passed to every notebook (``smoke``, ``cpu``, ``gpu``).
    out_dir : path-like
        Run folder: executed notebooks ``<name>.ipynb`` (and ``.html``), results JSON,
        ``summary.md``.
    notebooks : list of Path, optional
        Default: every ``notebooks/NN_*.ipynb``.
    html : bool
        Also export each executed notebook to HTML.
    summary : bool
        Write ``summary.md`` at the end.
    stop_on_error : bool
        Stop at the first failing notebook (otherwise run them all and report).

    Returns
    -------
    list of NotebookRun
    """
    pm = require("papermill", "notebooks", "running the notebooks")

    check_profile(profile)
    # Notebooks render napari headless. By default napari switches an IPython kernel to Qt
    # event-loop integration (%gui qt); under papermill with no window that integration can
    # miss the next execute request and the kernel then waits forever. The kernels inherit
    # this variable, which makes napari leave the kernel's event loop alone.
    os.environ.setdefault("NAPARI_APPLICATION_IPY_INTERACTIVE", "0")
    # No progress bars in executed notebooks (deeptree/progress.py): they would be saved
    # half-drawn into the outputs and the book. Interactive sessions keep them.
    os.environ.setdefault(PROGRESS_ENV, "0")
    # Each kernel is a new process: give it the CPU thread policy from its start (decided once
    # here, so every kernel of the run waits the same way), so that it
    # holds even in a notebook that imports torch before deeptree (deeptree/threads.py).
    apply_to_child_processes()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = list_notebooks() if notebooks is None else [Path(n) for n in notebooks]
    runs: list[NotebookRun] = []
    for index, notebook in enumerate(notebooks, 1):
        print(f"[{index}/{len(notebooks)}] {notebook.name} (profile {profile})", flush=True)
        target = out_dir / notebook.name
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(notebook), str(target),
                parameters={"profile": profile, "run_dir": str(out_dir)},
                cwd=str(notebook.parent), kernel_name="python3", progress_bar=True,
                execution_timeout=CELL_TIMEOUT_S[profile],
            )
            run = NotebookRun(notebook.stem, time.perf_counter() - start, True)
        except Exception as err:  # papermill wraps the notebook's exception
            run = NotebookRun(notebook.stem, time.perf_counter() - start, False,
                              f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}")
        runs.append(run)
        status = "ok" if run.ok else f"FAILED: {run.error}"
        print(f"    {run.seconds:6.1f} s  {status}", flush=True)
        if html and target.exists():
            export_html(target)
        if not run.ok and stop_on_error:
            break
    if summary:
        total = sum(r.seconds for r in runs)
        rows = "\n".join(f"| {r.name} | {r.seconds:.1f} | {'ok' if r.ok else 'FAILED'} |" for r in runs)
        header = (
            f"Profile `{profile}`, commit `{_git_commit()}`, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores ({cpu_description()}).\n\n| notebook | seconds | status |\n|---|---|---|\n{rows}\n\n"
            f"Total: {total / 60:.1f} min."
        )
        path = write_summary(out_dir, header)
        print(f"summary: {path}")
    return runs
