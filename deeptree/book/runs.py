"""Which run the book shows, and how long each notebook took in the runs on disk.

The book is built from one run folder (:func:`select_run`): a fresh ``make reproduce`` run
under ``runs/``, else the committed run published under ``results/`` (see
:mod:`deeptree.book.publish`), else a smoke run. The run times the chapters state are read
from the papermill metadata of executed notebooks under ``runs/`` and from the ``summary.md``
files under ``runs/`` and ``results/`` (:func:`collect_timings`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deeptree.evaluation import readme_box
from deeptree.io import InputError

#: Notebooks are numbered ``NN_name.ipynb``.
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"

#: Profiles whose run time a chapter states, in this order.
TIMED_PROFILES = ("cpu", "gpu", "smoke")

#: Profiles whose runs train no model long enough to learn: a pipeline check, not results.
PIPELINE_CHECK_PROFILES = ("smoke",)


@dataclass
class Timing:
    """How long one notebook took in one run.

    Attributes
    ----------
    seconds : float
        Wall time of the whole notebook (s), as papermill or ``summary.md`` recorded it.
    source : str
        The file it was read from, relative to the repository root.
    when : str
        ISO time the run ended (papermill) or the file's modification time.
    """

    seconds: float
    source: str
    when: str


def executed_notebooks(run_dir: str | os.PathLike) -> list[Path]:
    """The executed numbered notebooks (``NN_*.ipynb``) of a run folder, in order."""
    return sorted(p for p in Path(run_dir).glob(NOTEBOOK_GLOB) if p.is_file())


def papermill_record(path: Path) -> dict:
    """The papermill metadata of an executed notebook (``metadata.papermill``: parameters,
    duration in s, end time, exception); ``{}`` for a notebook papermill did not run.

    Raises
    ------
    InputError
        When the file cannot be read or is not JSON (naming it).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable notebook ({err})") from err


def notebook_folder(run_dir: str | os.PathLike) -> Path:
    """The folder of a run's executed notebooks: the run folder itself (``runs/*``), or its
    ``notebooks/`` subfolder (a run published under ``results/``, see
    :mod:`deeptree.book.publish`)."""
    run_dir = Path(run_dir)
    published = run_dir / "notebooks"
    return published if executed_notebooks(published) else run_dir


def run_summary(run_dir: str | os.PathLike) -> Path | None:
    """The summary of a run: ``summary.md`` of a run folder, ``run_summary.md`` of a published
    one; None when it has neither."""
    for name in ("summary.md", "run_summary.md"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def select_run(repo_root: str | os.PathLike, notebooks: list[str]) -> Path:
    """The run folder the book is built from.

    The first that holds every notebook of ``notebooks`` executed without error, of: the
    latest ``runs/*-cpu`` folder (``make reproduce PROFILE=cpu``); the committed results
    folders with published notebooks, the reference run first
    (:func:`deeptree.evaluation.readme_box.committed_results`: a fresh clone builds the book
    of the committed run without computing); the newest smoke run (``runs/ci`` of
    ``make test``, or ``runs/*-smoke`` of ``make reproduce PROFILE=smoke``).

    Parameters
    ----------
    repo_root : path-like
        The repository root (with ``runs/`` and ``results/``).
    notebooks : list of str
        Notebook names without extension, e.g. ``["00_overview", ...]``.

    Returns
    -------
    Path
        The run folder (for a published run, the ``results/`` folder, not its ``notebooks/``).

    Raises
    ------
    InputError
        When no run folder holds every notebook.
    """
    root = Path(repo_root)
    runs = root / "runs"

    def complete(folder: Path) -> bool:
        have = {p.stem: p for p in executed_notebooks(notebook_folder(folder))}
        return all(
            n in have and papermill_record(have[n]).get("exception") in (None, False)
            for n in notebooks
        )

    def newest(folder: Path) -> float:
        return max((p.stat().st_mtime for p in executed_notebooks(folder)), default=0.0)

    cpu = sorted(runs.glob("*-cpu"), reverse=True)
    published = readme_box.committed_results(root)
    smoke = sorted([runs / "ci", *runs.glob("*-smoke")], key=newest, reverse=True)
    for folder in [*cpu, *published, *smoke]:
        if folder.is_dir() and complete(folder):
            return folder
    raise InputError(
        f"{runs}: no run folder holds all {len(notebooks)} notebooks executed without error "
        "(nor does a committed results/ folder); run `make reproduce PROFILE=cpu` (or "
        "PROFILE=smoke, or `make notebooks` for runs/ci) first"
    )


def parse_summary(path: Path) -> tuple[str | None, dict[str, float], str]:
    """Profile, ``{notebook: seconds}`` of the ok rows and the run's end time of a summary.

    The time is the date in the run's name (``# DeepTree run summary: 20261202-024753-cpu``),
    which a committed copy keeps; else the file's modification time (a clone's checkout time).
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"Profile `([^`]+)`", text)
    rows = re.findall(r"^\|\s*(\d\d_[\w-]+)\s*\|\s*([0-9.]+)\s*\|\s*ok\s*\|", text, re.M)
    stamp = re.search(r"^# .*summary: (\d{8})(?:-(\d{6}))?", text, re.M)
    if stamp:
        when = (
            datetime.strptime(stamp.group(1) + (stamp.group(2) or "000000"), "%Y%m%d%H%M%S")
            .replace(tzinfo=UTC)
            .isoformat()
        )
    else:
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    return (match.group(1) if match else None), {name: float(s) for name, s in rows}, when


def collect_timings(repo_root: str | os.PathLike) -> dict[str, dict[str, Timing]]:
    """The latest measured run time of each notebook for each profile.

    Read from the papermill metadata of every executed notebook under ``runs/*/`` (profile,
    duration, end time; notebooks that raised are ignored) and from every ``summary.md``
    under ``runs/*/`` and ``results/*/`` and every committed ``results/*/run_summary.md`` (its
    ``ok`` rows).

    Parameters
    ----------
    repo_root : path-like

    Returns
    -------
    dict
        ``{profile: {notebook: Timing}}``; a profile or notebook never measured is absent.
    """
    root = Path(repo_root)
    found: dict[str, dict[str, Timing]] = {}

    def keep(profile: str, name: str, timing: Timing) -> None:
        old = found.setdefault(profile, {}).get(name)
        if old is None or timing.when > old.when:
            found[profile][name] = timing

    for notebook in sorted(root.glob(f"runs/*/{NOTEBOOK_GLOB}")):
        meta = papermill_record(notebook)
        profile = (meta.get("parameters") or {}).get("profile")
        if profile and meta.get("duration") is not None and not meta.get("exception"):
            keep(
                profile,
                notebook.stem,
                Timing(
                    float(meta["duration"]),
                    str(notebook.relative_to(root)),
                    str(meta.get("end_time") or ""),
                ),
            )
    for summary in sorted(
        [
            *root.glob("runs/*/summary.md"),
            *root.glob("results/*/summary.md"),
            *root.glob("results/*/run_summary.md"),
        ]
    ):
        profile, rows, when = parse_summary(summary)
        if profile:
            for name, seconds in rows.items():
                keep(profile, name, Timing(seconds, str(summary.relative_to(root)), when))
    return found


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1 min 15 s"``, ``8.04`` -> ``"8 s"``, ``4000`` -> ``"1 h 6 min"``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
