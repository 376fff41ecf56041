"""Publish a finished run beside its committed results, so that the book needs no computation.

``python -m deeptree.book publish RUN_DIR results/<date>-cpu-synthetic`` copies into the
results folder:

* ``notebooks/NN_name.ipynb``: every executed notebook, outputs kept (the book's chapters and
  their figures, which the notebooks embed);
* ``notebooks/<mask>``: the first mask of each chapter's 3D view (:data:`MESH_VIEWS`, a phantom's
  airway label, about 20 kB);
* the tables of notebook 07 (``07_evaluation/tables/*``), its figures of the models' training
  (:data:`FIGURES`, into ``figures/``) and the run's ``summary.md`` as ``run_summary.md``.

Paths of the machine that ran it (the run folder, the repository) are written relative in
every copy. ``select_run`` then finds the folder: ``make book`` on a fresh clone builds the
book of the committed run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from deeptree.book import runs
from deeptree.book.build import MESH_VIEWS, REPO_ROOT
from deeptree.io import InputError, atomic_write
from deeptree.report import relative_paths

#: Notebook 07's tables, relative to the run folder.
TABLES = "07_evaluation/tables"
#: Notebook 07's figures published beside the tables (every model's training curves and its
#: convergence check), relative to the run folder; those a run lacks are skipped.
FIGURES = ("07_evaluation/figures/training_curves.png", "07_evaluation/figures/convergence.png")


def _relative_strings(value, folders: list[Path]):
    """Every string of a notebook's JSON with :func:`deeptree.report.relative_paths` applied."""
    if isinstance(value, str):
        return relative_paths(value, folders)
    if isinstance(value, list):
        return [_relative_strings(v, folders) for v in value]
    if isinstance(value, dict):
        return {k: _relative_strings(v, folders) for k, v in value.items()}
    return value


def check_publishable(run_dir: Path, names: list[str]) -> dict[str, Path]:
    """The executed notebooks of a complete, non-smoke run, or one clear error.

    Parameters
    ----------
    run_dir : Path
        The run folder (``runs/<stamp>-cpu``).
    names : list of str
        The notebooks the run must hold (``notebooks/NN_*.ipynb`` of the repository).

    Returns
    -------
    dict of str -> Path
        Notebook name -> executed notebook.

    Raises
    ------
    InputError
        Not a folder; a notebook missing or failed; a smoke run; no ``summary.md`` or
        no tables of notebook 07.
    """
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run folder not found")
    executed = {p.stem: p for p in runs.executed_notebooks(run_dir)}
    missing = [n for n in names if n not in executed]
    failed = [
        n
        for n in names
        if n in executed and runs.papermill_record(executed[n]).get("exception") not in (None, False)
    ]
    if missing or failed:
        raise InputError(
            f"{run_dir}: an incomplete run is not published ("
            + "; ".join(
                filter(
                    None,
                    [
                        missing and f"missing: {', '.join(missing)}",
                        failed and f"failed: {', '.join(failed)}",
                    ],
                )
            )
            + ")"
        )
    profiles = {
        (runs.papermill_record(executed[n]).get("parameters") or {}).get("profile") for n in names
    }
    smoke = sorted(str(p) for p in profiles if p in runs.PIPELINE_CHECK_PROFILES)
    if smoke:
        raise InputError(
            f"{run_dir}: a {smoke[0]} run is a pipeline check with untrained "
            "models; publish a cpu (or gpu) run"
        )
    if not (run_dir / "summary.md").is_file():
        raise InputError(
            f"{run_dir}: no summary.md (run `deeptree notebooks --summary`, as "
            "`make reproduce` does)"
        )
    if not (run_dir / TABLES / "tables.md").is_file():
        raise InputError(f"{run_dir}: no {TABLES}/tables.md (notebook 07 writes it)")
    return {n: executed[n] for n in names}


def _source_repository(notebook: Path) -> Path | None:
    """The repository a notebook was executed from (papermill's ``input_path``)."""
    source = runs.papermill_record(notebook).get("input_path")
    return Path(source).parent.parent if source and os.path.isabs(source) else None


def publish_run(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike,
    repo_root: str | os.PathLike = REPO_ROOT,
    mesh_views: dict | None = None,
) -> dict:
    """Copy a finished run's notebooks, masks of the 3D views, tables and summary to ``dest``.

    Parameters
    ----------
    run_dir : path-like
        A complete run folder of profile cpu or gpu, with ``summary.md`` (never modified).
    dest : path-like
        The results folder, e.g. ``results/20261207-cpu-synthetic`` (created; files of the
        same names are replaced, each atomically).
    repo_root : path-like
        The repository whose ``notebooks/`` lists the notebooks the run must hold.
    mesh_views : dict, optional
        Chapter -> (mask pattern in the run folder, caption); default :data:`MESH_VIEWS`.

    Returns
    -------
    dict
        ``{"files": [Path, ...], "bytes": int}``: the files written and their total size.

    Raises
    ------
    InputError
        See :func:`check_publishable`.
    """
    run_dir, dest = Path(run_dir).absolute(), Path(dest)
    names = [p.stem for p in sorted((Path(repo_root) / "notebooks").glob(runs.NOTEBOOK_GLOB))]
    executed = check_publishable(run_dir, names)
    folders = [run_dir, Path(repo_root).absolute()]
    folders += {r for r in map(_source_repository, executed.values()) if r is not None}
    written: list[Path] = []

    def write_text(path: Path, text: str) -> None:
        written.append(atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8")))

    for notebook in executed.values():
        content = _relative_strings(json.loads(notebook.read_text(encoding="utf-8")), folders)
        # nbformat's own layout (indent 1, unicode kept), so that a diff stays readable
        write_text(
            dest / "notebooks" / notebook.name,
            json.dumps(content, indent=1, ensure_ascii=False) + "\n",
        )
    for pattern, _caption in (MESH_VIEWS if mesh_views is None else mesh_views).values():
        masks = sorted(run_dir.glob(pattern))
        if masks:  # the 3D view shows the first one (deeptree.book.build._mesh_block)
            target = dest / "notebooks" / masks[0].relative_to(run_dir)
            written.append(atomic_write(target, lambda tmp, m=masks[0]: shutil.copyfile(m, tmp)))
    tables = sorted(p for p in (run_dir / TABLES).glob("*") if p.is_file() and p.name[0] != ".")
    for table in tables:
        write_text(dest / table.name, relative_paths(table.read_text(encoding="utf-8"), folders))
    for figure in (run_dir / f for f in FIGURES):
        if figure.is_file():
            target = dest / "figures" / figure.name
            written.append(atomic_write(target, lambda tmp, f=figure: shutil.copyfile(f, tmp)))
    write_text(
        dest / "run_summary.md",
        relative_paths((run_dir / "summary.md").read_text(encoding="utf-8"), folders),
    )
    return {"files": written, "bytes": sum(p.stat().st_size for p in written)}
