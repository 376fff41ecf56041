"""The README's bottom line: a short box written from a committed cpu run's results files.

A committed run is a folder ``results/<date>-cpu-synthetic/`` holding the run's
``component_effects.csv``, ``table2_ablation.csv``, ``tables.md`` (copied from the run's
``tables/``) and ``run_summary.md`` (the runner's ``summary.md``). The box says what run it
is, the key numbers (plain nnUNet* and DeepTree, TLD and precision with their intervals as
the tables print them, beside the paper's), each of the paper's components' TLD effect with
its interval and verdict, one sentence of what they mean, and the run's time. It lives in the
README between :data:`START` and :data:`END`, and is rewritten from the newest run by::

    python -m deeptree.evaluation.readme_box            # (make readme) rewrite README.md
    python -m deeptree.evaluation.readme_box --check    # exit 1 if the box is stale

The sentence "the paper's components do not reproduce" is written exactly when no component
of the paper (AMC, GUL, stage 2) has a TLD verdict "improves".
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from pathlib import Path

from deeptree.evaluation.budget import CPU_BUDGET_MINUTES
from deeptree.evaluation.paper import paper_stage2_precision_cost
from deeptree.evaluation.stats import HURTS, IMPROVES
from deeptree.files import atomic_write
from deeptree.io import InputError

#: Markers of the box in the README (the lines themselves stay).
START = "<!-- bottom-line:start -->"
END = "<!-- bottom-line:end -->"
#: Components of the paper, in the order the box names them.
PAPER_COMPONENTS = ("AMC", "GUL", "stage 2")
#: The rows of ``table2_ablation.csv`` the box quotes: method id -> name in the box.
KEY_METHODS = {"plain": "plain nnUNet*", "amc+gul+stage2": "DeepTree (amc+gul+stage2)"}
#: Files a committed run folder must hold.
REQUIRED = ("component_effects.csv", "table2_ablation.csv", "tables.md", "run_summary.md")
#: The sentence the box writes when no paper component improves TLD (tests look for it).
NONE_REPRODUCE = "the paper's components do not reproduce"


#: Committed results folders (``results/<date>-<kind>``) in the order the README and the book
#: prefer them: the reference run (models trained until their validation curves flatten,
#: shipped beside the tables; issue 32), then the cpu reproduction.
RESULT_KINDS = ("cpu-reference", "cpu-synthetic")


def committed_results(root: str | os.PathLike = ".") -> list[Path]:
    """Every committed results folder, preferred first.

    Parameters
    ----------
    root : path-like
        The repository root.

    Returns
    -------
    list of Path
        ``results/*-cpu-reference`` folders, newest first (by name, which starts with the
        date), then ``results/*-cpu-synthetic`` folders, newest first; whatever they hold.
    """
    return [
        folder
        for kind in RESULT_KINDS
        for folder in sorted(Path(root).glob(f"results/*-{kind}"), reverse=True)
        if folder.is_dir()
    ]


def newest_results(root: str | os.PathLike = ".") -> Path:
    """The repository's results: the first of :func:`committed_results` that holds a
    ``run_summary.md`` (a reference run still training, with only its partial models, is
    passed over).

    Parameters
    ----------
    root : path-like
        The repository root.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When no such folder exists.
    """
    folders = [f for f in committed_results(root) if (f / "run_summary.md").is_file()]
    if not folders:
        raise InputError(
            f"{Path(root) / 'results'}: no committed cpu run "
            f"({' or '.join(f'*-{k}/run_summary.md' for k in RESULT_KINDS)})"
        )
    return folders[0]


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from err
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise InputError(
            f"{path}: " + (f"missing columns {', '.join(missing)}" if rows else "no rows")
        )
    return rows


def _number(value: str | None) -> float:
    """A CSV cell as a float: NaN for an empty cell or "nan" (a comparison with no pair)."""
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _count(row: dict, key: str) -> int:
    """An integer cell (``seeds``, ``failed``); 0 where the column is absent or empty (a run
    written before the ``failed`` column existed)."""
    value = _number(row.get(key))
    return 0 if math.isnan(value) else int(value)


def _points(value: float) -> str:
    return f"{round(value, 1) + 0.0:+.1f}"  # as the tables print it, no "-0.0"


def _effect_text(row: dict, with_verdict: bool = True) -> str:
    """``plain -> amc -25.7 [-35.4, -12.7] hurts`` (the TLD effect of one comparison)."""
    d, lo, hi = (_number(row[k]) for k in ("dTLD", "dTLD low", "dTLD high"))
    if math.isnan(d):
        numbers = "not measured"
    elif math.isnan(lo) or math.isnan(hi):
        numbers = f"{_points(d)} [no interval]"
    else:
        numbers = f"{_points(d)} [{_points(lo)}, {_points(hi)}]"
    failed = _count(row, "failed")
    left_out = f", {failed} seed(s) left out (a failed model)" if failed else ""
    verdict = f" {row['TLD verdict']}" if with_verdict and numbers != "not measured" else ""
    return f"{row['without']} -> {row['with']} {numbers}{verdict}{left_out}"


def _paper_effects(rows: list[dict]) -> str:
    """`` (paper +2.9, +5.1)``: the paper's TLD change of each comparison, in order ("—"
    where the paper has none); '' when it has none at all."""
    values = [_number(r.get("paper dTLD")) for r in rows]
    if all(math.isnan(v) for v in values):
        return ""
    return " (paper " + ", ".join("—" if math.isnan(v) else _points(v) for v in values) + ")"


def _stage2_precision_text(rows: list[dict]) -> str:
    """``"; precision effect -6.6 to -5.2 points, all hurts (the paper's stage 2 costs 0.0
    to 0.4)"``: stage 2's price beside its TLD gain (the paper's Table 2 bar); '' without
    precision effects (a results folder from before they were written)."""
    values = [_number(r.get("dprecision")) for r in rows]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return ""
    words = {r.get("precision verdict") for r in rows}
    word = f", all {words.pop()}" if len(words) == 1 else ""
    lo, hi = paper_stage2_precision_cost()
    span = (
        _points(values[0])
        if len(values) == 1
        else f"{_points(min(values))} to {_points(max(values))}"
    )
    return (
        f"; precision effect {span} points{word} (the paper's stage 2 costs {lo:.1f} to {hi:.1f})"
    )


def method_text(row: dict | None, name: str) -> str:
    """``plain nnUNet* 47.3 [39.8, 59.2] and 86.6 [84.6, 88.6] (paper, real CT: ...)``: one
    method's TLD and precision as ``table2_ablation.csv`` prints them, beside the paper's.

    Parameters
    ----------
    row : dict or None
        A row of ``table2_ablation.csv`` (None: the run has no such method).
    name : str
        The method's name in the text.

    Returns
    -------
    str
    """
    if row is None:
        return f"{name}: not in this run"
    failed = _count(row, "failed")
    text = f"{name} {row['TLD']} and {row['precision']}"
    if failed:
        text += f" ({failed} failed model(s) left out)"
    paper = [row.get(f"paper {k}", "") for k in ("TLD", "precision")]
    if all(p and p != "—" for p in paper):
        text += f" (paper, real CT: {paper[0]} and {paper[1]})"
    return text


def _search(pattern: str, text: str, path: Path, what: str) -> re.Match:
    match = re.search(pattern, text)
    if not match:
        raise InputError(f"{path}: no {what} found (pattern {pattern!r})")
    return match


def read_run(folder: str | os.PathLike) -> dict:
    """The files of one committed run folder, read and checked.

    Parameters
    ----------
    folder : path-like
        ``results/<date>-cpu-synthetic`` with the files of :data:`REQUIRED`.

    Returns
    -------
    dict
        ``effects`` and ``table2``: the rows of ``component_effects.csv`` and
        ``table2_ablation.csv`` (dicts of str); ``tables`` and ``summary``: the text of
        ``tables.md`` and ``run_summary.md``; ``iterations``: the stage-1 length as ``tables.md``
        states it (str); ``total``: the run's minutes as ``run_summary.md`` states them (str).

    Raises
    ------
    InputError
        A missing or unreadable file, a missing column, no stage-1 length in ``tables.md``
        or no ``Total: X min.`` in ``run_summary.md``, each naming the file.
    """
    folder = Path(folder)
    for name in REQUIRED:
        if not (folder / name).is_file():
            raise InputError(
                f"{folder / name}: missing (a committed run holds {', '.join(REQUIRED)})"
            )
    effects = _read_csv(
        folder / "component_effects.csv",
        ("component", "without", "with", "dTLD", "dTLD low", "dTLD high", "TLD verdict"),
    )
    table2 = _read_csv(
        folder / "table2_ablation.csv", ("method", "seeds", "cases", "TLD", "precision")
    )
    tables = (folder / "tables.md").read_text(encoding="utf-8")
    summary = (folder / "run_summary.md").read_text(encoding="utf-8")
    iterations = _search(
        r"Stage 1: (\d+) iterations", tables, folder / "tables.md", "stage-1 length"
    )[1]
    total = _search(r"Total: ([0-9.]+) min\.", summary, folder / "run_summary.md", "total time")[1]
    return {"effects": effects, "table2": table2, "tables": tables, "summary": summary,
            "iterations": iterations, "total": total}  # fmt: skip


def run_caption(folder: str | os.PathLike, run: dict) -> str:
    """``(2026-12-07, profile `cpu`, synthetic phantoms: 3 training seeds x 10 test phantoms,
    2000 stage-1 iterations)``: what run the numbers of a box come from.

    Parameters
    ----------
    folder : path-like
        The run folder (its name gives the date where ``tables.md`` names none).
    run : dict
        From :func:`read_run`.

    Returns
    -------
    str
    """
    date = re.search(r"(\d{4}-\d{2}-\d{2})", run["tables"])
    profile = re.search(r"Profile `([^`]+)`", run["summary"])
    table2 = run["table2"]
    first = next((r for r in table2 if r["method"] == "plain"), table2[0])
    seeds = _count(first, "seeds") + _count(first, "failed")
    return (
        f"({date[1] if date else Path(folder).name[:8]}, profile `{profile[1] if profile else '?'}`, "
        f"synthetic phantoms: {seeds} training seeds x {first['cases']} test phantoms, "
        f"{run['iterations']} stage-1 iterations"
        + (", the models shipped with the tables" if shipped_models(run["tables"]) else "")
        + ")"
    )


def shipped_models(tables: str) -> dict | None:
    """What ``tables.md`` says of a run that scored shipped models (``deeptree reproduce
    --models``): ``models`` (count), ``cpu_hours`` and ``flat`` (``"24 of 26"``) of its
    convergence section where present (strings as printed); None for a run that trained."""
    shipped = re.search(r"Models: the (\d+) models shipped in `[^`]+/models`", tables)
    if not shipped:
        return None
    hours = re.search(r"Training time of all \d+ models: ([0-9.]+) CPU hours", tables)
    flat = re.search(r"\*\*(\d+ of \d+) validated models meet the flattening rule\*\*", tables)
    return {
        "models": shipped[1],
        "cpu_hours": hours[1] if hours else None,
        "flat": flat[1] if flat else None,
    }


def bottom_line_meaning(run: dict) -> str:
    """The sentence "What it means" of a run's bottom line (and the failed models, if any).

    Written from the TLD verdicts of the paper's components (:data:`PAPER_COMPONENTS`):
    :data:`NONE_REPRODUCE` exactly when none has a verdict "improves".

    Parameters
    ----------
    run : dict
        From :func:`read_run`.

    Returns
    -------
    str
    """
    table2, iterations = run["table2"], run["iterations"]
    failed = sum(_count(r, "failed") for r in table2)
    models = sum(_count(r, "seeds") for r in table2) + failed
    paper = [r for r in run["effects"] if r["component"] in PAPER_COMPONENTS]
    held = [r for r in paper if r["TLD verdict"] == IMPROVES]
    lowered = [r for r in paper if r["TLD verdict"] == HURTS]
    failed_text = (
        f" {failed} of the ablation's {models} models failed (an empty prediction) and are left "
        "out of the means."
        if failed
        else ""
    )
    if not paper:
        meaning = "this run compared none of the paper's components."
    elif not held:
        meaning = (
            f"at this training length on the synthetic cohort {NONE_REPRODUCE}: no TLD effect "
            f"of AMC, GUL or stage 2 has an interval above zero, and {len(lowered)} of "
            f"the {len(paper)} lie below it; models of {iterations} iterations on "
            "phantoms are not the paper's setting (real CT, full-length training)."
        )
    else:
        named = ", ".join(f"{r['component']} ({r['without']} -> {r['with']})" for r in held)
        meaning = (
            f"{len(held)} of the {len(paper)} comparisons of the paper's components raise TLD "
            f"with an interval above zero here ({named}); the others do not, at this training "
            "length on the synthetic cohort."
        )
    return meaning + failed_text


def readme_bottom_line(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """The README's bottom-line box (Markdown, at most 8 lines) of one committed run.

    Parameters
    ----------
    folder : path-like
        ``results/<date>-cpu-synthetic`` with the files of :data:`REQUIRED`.
    root : path-like, optional
        The repository root the box's links are relative to (default: two folders up).

    Returns
    -------
    str
        A Markdown block quote without the markers, ending with a newline. Numbers are the
        tables' strings (percent with 95% intervals) and the effects' points.

    Raises
    ------
    InputError
        As :func:`read_run`, or a folder outside ``root``.
    """
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent.parent
    run = read_run(folder)
    try:
        link = folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as err:
        raise InputError(f"{folder}: not inside the repository {root}") from err
    effects, table2, tables, summary = run["effects"], run["table2"], run["tables"], run["summary"]
    total = run["total"]
    machine = re.search(r"machine: (.+?)\. ", tables)
    # the runner's header names the CPU class since 2026-12-07: "2 cores (AMD EPYC, AVX2 (...))."
    cpu = re.search(r"(\d+) cores \((.+)\)\.$", summary, re.M)
    machine_text = f"{cpu[2]}, {cpu[1]} cores" if cpu else (machine[1] if machine else "")
    notebooks = re.findall(r"^\|\s*(\d\d_\w+)\s*\|", summary, re.M)
    ran = (
        f"{notebooks[0]} alone (the other notebooks were not rerun)"
        if len(notebooks) == 1
        else f"the {len(notebooks)} notebooks of this run"
    )
    ran += f" on {machine_text}" if machine_text else ""
    reused = re.search(r"Reused: (\d+) of (\d+) models", tables)
    shipped = shipped_models(tables)
    if shipped:
        ran += (
            f"; notebook 07 loads the {shipped['models']} models shipped in `{link}/models` and "
            "scores them (it trains none: its time is the scoring's)"
        )
        if shipped.get("cpu_hours"):
            ran += f"; their training took {shipped['cpu_hours']} CPU hours"
        if shipped.get("flat"):
            ran += f", and {shipped['flat']} validated models meet the flattening rule"
    elif reused:
        ran += (
            f"; {reused[1]} of its {reused[2]} models were trained by an earlier invocation and "
            "reused, so their training is not in this time"
        )
    over = (
        f", over the {CPU_BUDGET_MINUTES} minutes the cpu design is sized for (its step costs "
        "were measured on an AVX-512 CPU, `deeptree.evaluation.budget`)"
        if float(total) > CPU_BUDGET_MINUTES and not shipped
        else ""
    )

    by_method = {r["method"]: r for r in table2}
    lines = [
        f"> **The bottom line** of the newest committed run, [`{link}`]({link}/tables.md) "
        f"{run_caption(folder, run)}:",
        ">",
        "> - TLD and precision, % [95% CI]: "
        + "; ".join(method_text(by_method.get(m), name) for m, name in KEY_METHODS.items())
        + ".",
    ]
    for component in PAPER_COMPONENTS:
        mine = [r for r in effects if r["component"] == component]
        if not mine:
            continue
        words = {r["TLD verdict"] for r in mine}
        same = len(mine) > 1 and len(words) == 1  # one verdict for all: said once
        text = "; ".join(_effect_text(r, with_verdict=not same) for r in mine)
        if same:
            text += f": all {words.pop()}"
        text += _paper_effects(mine)
        if component == "stage 2":
            text += _stage2_precision_text(mine)
        lines.append(f"> - {component}, TLD effect in points [95% CI]: {text}.")
    lines += [
        f"> - **What it means:** {bottom_line_meaning(run)}",
        f"> - `time make reproduce PROFILE=cpu`: {total} min for {ran}{over} ([`{link}/run_summary.md`]"
        f"({link}/run_summary.md); the tables: [`{link}/tables.md`]({link}/tables.md)).",
    ]
    return "\n".join(lines) + "\n"


def replace_box(readme: str, box: str, source: str = "README.md") -> str:
    """``readme`` with the text between :data:`START` and :data:`END` replaced by ``box``.

    Raises
    ------
    InputError
        When the markers are missing, repeated or out of order (naming ``source``).
    """
    if (
        readme.count(START) != 1
        or readme.count(END) != 1
        or readme.index(START) > readme.index(END)
    ):
        raise InputError(f"{source}: needs one '{START}' line followed by one '{END}' line")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{box}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """``python -m deeptree.evaluation.readme_box [--root .] [--results DIR] [--check]``."""
    parser = argparse.ArgumentParser(
        prog="python -m deeptree.evaluation.readme_box",
        description="Rewrite the bottom-line box of README.md from the newest committed run.",
    )
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    parser.add_argument("--results", help="the results folder (default: the newest cpu run)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the box is stale")
    args = parser.parse_args(argv)
    root = Path(args.root)
    readme_path = root / "README.md"
    try:
        folder = Path(args.results) if args.results else newest_results(root)
        readme = readme_path.read_text(encoding="utf-8")
        new = replace_box(readme, readme_bottom_line(folder, root), str(readme_path))
    except (InputError, OSError) as err:
        print(f"readme_box: error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if new != readme:
            print(
                f"{readme_path}: the bottom-line box is not the one of {folder}; run "
                "`python -m deeptree.evaluation.readme_box`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != readme:
        atomic_write(readme_path, lambda tmp: Path(tmp).write_text(new, encoding="utf-8"))
    print(f"{readme_path}: bottom line of {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
