"""The bottom line at the top of chapters 07 and 08: the committed run's key numbers and what
they mean, written from its results files (never typed).

The committed run is the one the README's box quotes (:mod:`deeptree.evaluation.readme_box`):
the book's own run when it is a committed ``results/<date>-cpu-synthetic`` folder, else the
newest such folder. Chapter 07 gets the ablation's key numbers (TLD and precision of plain
nnUNet*, amc+gul and DeepTree with their intervals, beside the paper's) and the README's
sentence of what they mean; chapter 08 the sentences notebook 08 wrote in that run
(``real_ct.transfer_verdict``, the ``verdict`` row of ``run_summary.md``) and the demo
model's figures on phantoms. A book built from a smoke run shows none of this: its chapters
open with :func:`deeptree.book.pages.pipeline_check_warning` instead, and print no verdict.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from deeptree.evaluation import readme_box
from deeptree.io import InputError

#: The rows of ``table2_ablation.csv`` chapter 07's box quotes: method id -> name in the box.
ABLATION_METHODS = {
    "plain": "plain nnUNet*",
    "amc+gul": "amc+gul (stage 1 alone)",
    "amc+gul+stage2": "DeepTree (amc+gul+stage2)",
}
#: The heading of notebook 08's figures in ``run_summary.md``.
REAL_CT_SECTION = "08_real_ct"


def committed_run(run_dir: str | os.PathLike, repo_root: str | os.PathLike) -> Path | None:
    """The committed run whose bottom line the chapters show.

    Parameters
    ----------
    run_dir : path-like
        The run the book is built from.
    repo_root : path-like
        The repository root (with ``results/``).

    Returns
    -------
    Path or None
        ``run_dir`` when it holds the files of a committed run
        (:data:`deeptree.evaluation.readme_box.REQUIRED`), else the newest
        committed run (:func:`deeptree.evaluation.readme_box.newest_results`: the reference run
        first); None when the repository has none.
    """
    run_dir = Path(run_dir)
    if all((run_dir / name).is_file() for name in readme_box.REQUIRED):
        return run_dir
    try:
        return readme_box.newest_results(repo_root)
    except InputError:
        return None


def _shown(folder: Path, repo_root: Path) -> str:
    try:
        return folder.resolve().relative_to(Path(repo_root).resolve()).as_posix()
    except ValueError:
        return str(folder)


def _admonition(title: str, lines: list[str]) -> str:
    body = [f"    {line}" if line else "" for line in lines]
    return "\n".join([f'!!! abstract "{title}"', "", *body, ""])


def ablation_box(folder: str | os.PathLike, repo_root: str | os.PathLike) -> str:
    """Chapter 07's box: the ablation's key numbers of a committed run and what they mean.

    Parameters
    ----------
    folder : path-like
        A committed run folder (``results/<date>-cpu-synthetic``).
    repo_root : path-like
        The repository root (the folder is named relative to it).

    Returns
    -------
    str
        Markdown (an admonition): TLD and precision in % with 95% intervals of
        :data:`ABLATION_METHODS` as ``table2_ablation.csv`` prints them, beside the paper's,
        and :func:`deeptree.evaluation.readme_box.bottom_line_meaning`.

    Raises
    ------
    InputError
        As :func:`deeptree.evaluation.readme_box.read_run` (a missing file or column).
    """
    folder = Path(folder)
    run = readme_box.read_run(folder)
    by_method = {r["method"]: r for r in run["table2"]}
    lines = [
        f"The committed run `{_shown(folder, Path(repo_root))}` "
        f"{readme_box.run_caption(folder, run)}; TLD and precision, % [95% CI]:",
        "",
        *(
            f"- {readme_box.method_text(by_method.get(m), name)}"
            for m, name in ABLATION_METHODS.items()
        ),
        "",
        f"**What it means:** {readme_box.bottom_line_meaning(run)} Each component's paired effect "
        "is in the forest plot below; every table is on the [Results](../results.md) page.",
    ]
    return _admonition("The bottom line of the committed run", lines)


def _summary_section(summary: str, name: str) -> dict[str, str]:
    """``{figure: value}`` of the ``| figure | value |`` rows under ``## name``."""
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", summary, re.M | re.S)
    if not match:
        return {}
    return dict(re.findall(r"^\|\s*([^|]+?)\s*\|\s*(.*?)\s*\|$", match.group(1), re.M))


def _percent(pairs: str, key: str) -> str | None:
    """``74.0%`` from ``"BD=0.5459, TLD=0.7404"`` and ``"TLD"``; None when absent."""
    match = re.search(rf"(?:^|, ){re.escape(key)}=([0-9.]+)", pairs)
    return f"{100 * float(match[1]):.1f}%" if match else None


def real_ct_box(folder: str | os.PathLike, repo_root: str | os.PathLike) -> str:
    """Chapter 08's box: what notebook 08 concluded in a committed run.

    Parameters
    ----------
    folder : path-like
        A committed run folder with ``run_summary.md``.
    repo_root : path-like
        The repository root (the folder is named relative to it).

    Returns
    -------
    str
        Markdown (an admonition): the sentences ``real_ct.transfer_verdict`` wrote in that run
        (its ``verdict`` row), the last one as what it means, and the demo model's TLD and
        precision on phantoms (``synthetic_mean``). Where the run recorded no verdict, the
        box says so and shows what the run holds.

    Raises
    ------
    InputError
        When ``run_summary.md`` is missing.
    """
    folder = Path(folder)
    path = folder / "run_summary.md"
    if not path.is_file():
        raise InputError(
            f"{path}: missing (a committed run holds {', '.join(readme_box.REQUIRED)})"
        )
    figures = _summary_section(path.read_text(encoding="utf-8"), REAL_CT_SECTION)
    source = f"`{_shown(path, Path(repo_root))}`"
    try:
        verdict = [str(v) for v in ast.literal_eval(figures.get("verdict", ""))]
    except (ValueError, SyntaxError):
        verdict = []
    synthetic = figures.get("synthetic_mean", "")
    tld, precision = _percent(synthetic, "TLD"), _percent(synthetic, "precision")
    phantoms = (
        [f"- The same model on phantoms (paper protocol): TLD {tld}, precision {precision}."]
        if tld and precision
        else []
    )
    if not verdict:
        lines = [
            f"The committed run records no verdict of this chapter: {source} has no `verdict` "
            f"row under `## {REAL_CT_SECTION}`"
            + (f"; it holds {', '.join(f'`{k}`' for k in figures)}." if figures else "."),
            *([""] + phantoms if phantoms else []),
        ]
        return _admonition("The bottom line of the committed run", lines)
    model = figures.get("weights", "the demo weights")
    spacing = re.findall(r"[0-9.]+", figures.get("model_spacing", ""))
    at = f" at {' x '.join(spacing)} mm" if spacing else ""
    lines = [
        f"What this notebook concluded in the committed run ({source}; the model `{model}`, "
        f"run{at}; the sentences are those `real_ct.transfer_verdict` wrote from its figures):",
        "",
        *(f"- {line}" for line in verdict[:-1]),
        *phantoms,
        "",
        f"**What it means:** {verdict[-1]}",
    ]
    return _admonition("The bottom line of the committed run", lines)


#: Chapters with a bottom line: notebook name -> the function that writes its box.
BOXES = {"07_evaluation": ablation_box, "08_real_ct": real_ct_box}


def chapter_box(name: str, folder: Path | None, repo_root: str | os.PathLike) -> str:
    """The bottom-line box of a chapter, or ``""``.

    Parameters
    ----------
    name : str
        Notebook name without extension.
    folder : Path or None
        From :func:`committed_run` (None: no committed run, no box).
    repo_root : path-like

    Returns
    -------
    str
        Markdown for the chapters of :data:`BOXES`, ``""`` for the others.
    """
    if folder is None or name not in BOXES:
        return ""
    return BOXES[name](folder, repo_root)
