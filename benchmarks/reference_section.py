"""The RESULTS.md section of the finished reference run (issue 32), written from its records.

Run from the repository root, after ``benchmarks/finish_reference.sh`` (its ``section`` step
calls this)::

    python benchmarks/reference_section.py results/20261207-cpu-reference \\
        [--records benchmarks/records/reference_finish] [--write benchmarks/RESULTS.md]

Reads what the finishing script recorded (``convergence.json``, ``shipped_size.txt``,
``rescore_time.txt``, ``shipped_precision.json`` under ``--records``) and the results folder's
``component_effects.csv``; prints the section, and with ``--write`` puts it into RESULTS.md
between its markers (replacing an earlier one), or else at the end of the reference run's
section. No figure of it is typed by hand. NOT package code: a benchmark script.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeptree.evaluation.convergence import convergence_text  # noqa: E402
from deeptree.files import atomic_write  # noqa: E402

BEGIN = "<!-- reference run results: written by benchmarks/reference_section.py -->"
END = "<!-- reference run results: end -->"
#: The heading of the section the generated text goes under (at its end) the first time.
PARENT_HEADING = "### Shipped models and the reference run (issue 32"
#: The issue's bar on re-scoring the shipped models (seconds, on the 2-core machine).
RESCORE_BAR_S = 600


def _read(path: Path) -> str:
    if not path.is_file():
        raise SystemExit(f"{path}: missing (run benchmarks/finish_reference.sh first)")
    return path.read_text(encoding="utf-8")


def convergence_part(records: Path) -> str:
    """The flattening rule's verdict for every model, its table and the total CPU time."""
    rows = json.loads(_read(records / "convergence.json"))["models"]
    lines = [
        "**Convergence.** " + convergence_text(rows).strip(),
        "",
        "| model | iterations | score | best before the last quarter | end | gain | flat "
        "| CPU hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ("model", "iterations", "score", "best before last quarter", "end", "gain", "flat")
    for r in rows:
        cells = ["—" if r.get(k) in (None, "") else str(r[k]) for k in (*keys, "CPU hours")]
        lines.append("| " + " | ".join(cells) + " |")
    figure = _repo_path(records / "convergence.png").removeprefix("benchmarks/")
    lines += ["", f"Every curve: [{figure}]({figure})."]
    return "\n".join(lines)


def rescore_part(records: Path) -> str:
    """The shipped folder's size and the re-scoring time against the issue's bar."""
    size = _read(records / "shipped_size.txt").split()[0]
    timing = _read(records / "rescore_time.txt").splitlines()
    seconds = float(timing[0].split()[1])
    machine = timing[1].split(":", 1)[1].strip() if len(timing) > 1 else "unknown CPU"
    load = timing[2].split("load average:")[-1].strip() if len(timing) > 2 else "unknown"
    verdict = "within" if seconds <= RESCORE_BAR_S else "**over**"
    return (
        f"**Shipped and re-scored.** The models folder holds {size} (float16 weights, thinned "
        f"logs, manifest). `deeptree reproduce --models` on it took **{seconds:.0f} s** on "
        f"{machine} (load average at the end {load}), {verdict} the issue's "
        f"{RESCORE_BAR_S // 60} minutes."
    )


def precision_part(records: Path) -> str:
    """Float16 weights against float32: how many rows and cells move, and by how much."""
    record = json.loads(_read(records / "shipped_precision.json"))
    rows = record["per_case"]
    per_metric = ", ".join(
        f"{m} {v['rows differing']} of {v['rows']} rows (up to {v['max difference (points)']} "
        "points)"
        for m, v in rows.items()
    )
    tables = record["tables"]
    cells = ", ".join(
        f"{name} {v['cells printed differently']} of {v['cells']} cells"
        for name, v in tables.items()
        if "cells" in v
    )
    verdicts = [
        f"{name} {v['verdicts differing']} of {v['effects']} verdicts"
        for name, v in tables.items()
        if "effects" in v
    ]
    return (
        "**Float16 against float32** (`benchmarks/shipped_precision.py`: the same models "
        "re-scored from float32 and from the shipped float16 weights). Per-case rows "
        f"differing: {per_metric}. Table cells printed differently: {cells}. Verdicts "
        f"differing: {', '.join(verdicts) or 'none compared'}. The committed tables come from "
        "the float16 weights, so `--models` reproduces them."
    )


def effects_part(dest: Path) -> str:
    """Each component's effect on the test phantoms, with its interval and verdict, beside
    the effect in the paper's Table 2."""
    path = dest / "component_effects.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{path}: no component effects")
    lines = [
        f"**What the run shows** (`{dest.as_posix()}/tables.md`; differences in points: "
        "the mean over seeds [95% interval, two-level bootstrap over seeds and cases] and its "
        "verdict; the paper's column: the same difference between its Table 2 rows):",
        "",
        "| component | without → with | seeds | dBD | dTLD | dprecision | paper dBD / dTLD / "
        "dprecision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{float(r[f'd{m}']):+.1f} [{float(r[f'd{m} low']):+.1f}, "
            f"{float(r[f'd{m} high']):+.1f}] {r[f'{m} verdict']}"
            for m in ("BD", "TLD", "precision")
        ]
        paper = " / ".join(r[f"paper d{m}"] or "—" for m in ("BD", "TLD", "precision"))
        lines.append(
            f"| {r['component']} | {r['without']} → {r['with']} | {r['seeds']} | "
            f"{' | '.join(cells)} | {paper} |"
        )
    return "\n".join(lines)


def section(dest: Path, records: Path) -> str:
    """The whole section (markdown, between the markers)."""
    command = f"python benchmarks/reference_section.py {dest.as_posix()}"
    body = [
        "**The reference run, finished.** Written by "
        f"`{command}` from the records of `bash benchmarks/finish_reference.sh` "
        f"(`{_repo_path(records)}/`).",
        convergence_part(records),
        rescore_part(records),
        precision_part(records),
        effects_part(dest),
    ]
    return BEGIN + "\n\n" + "\n\n".join(body) + "\n\n" + END + "\n"


def _repo_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def insert(results_md: str, text: str) -> str:
    """``results_md`` with ``text`` between the markers (replacing what was there), or at the
    end of the reference run's section the first time."""
    if BEGIN in results_md:
        head, rest = results_md.split(BEGIN, 1)
        if END not in rest:
            raise SystemExit(f"RESULTS.md: {BEGIN!r} without {END!r}")
        return head + text.rstrip("\n") + rest.split(END, 1)[1]
    start = results_md.find(PARENT_HEADING)
    if start < 0:
        raise SystemExit(f"RESULTS.md: no heading starting {PARENT_HEADING!r}")
    after = results_md.find("\n#", start + len(PARENT_HEADING))
    end = len(results_md) if after < 0 else after + 1
    return results_md[:end].rstrip("\n") + "\n\n" + text + "\n" + results_md[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="the reference run's results folder")
    parser.add_argument(
        "--records", type=Path, default=ROOT / "benchmarks" / "records" / "reference_finish"
    )
    parser.add_argument("--write", type=Path, help="the RESULTS.md to put the section into")
    args = parser.parse_args()
    text = section(args.dest, args.records)
    print(text)
    if args.write:
        new = insert(_read(args.write), text)
        atomic_write(args.write, lambda tmp: Path(tmp).write_text(new, encoding="utf-8"))


if __name__ == "__main__":
    main()
