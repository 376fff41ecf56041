"""Do two notebook runs compute the same thing? Every results JSON and training log, value by value.

    python benchmarks/compare_runs.py RUN_A RUN_B

``RUN_A`` and ``RUN_B`` are run folders of ``deeptree notebooks`` (``runs/...``). Compared:

* every ``*.results.json`` of ``RUN_A`` with the file of the same name in ``RUN_B``, leaf by
  leaf; timing values (keys containing ``seconds``, ``written``) and absolute paths are skipped;
* every training log ``**/log.jsonl`` entry by entry, its ``seconds`` skipped.

Used to show that a refactoring changed no figure: run the notebooks before and after with the
same profile and ``OMP_NUM_THREADS`` (the thread count changes floating-point sums), then
compare. Prints one line per file and a total; exits 1 when anything differs.
NOT package code: a benchmark script.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def leaves(value, path: tuple[str, ...] = ()):
    """(path, leaf) pairs of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, f"[{index}]"))
    else:
        yield path, value


def skipped(path: tuple[str, ...], a, b) -> bool:
    """Timing values and absolute paths differ between runs by nature."""
    if any(key == "written" or "seconds" in key for key in path):
        return True
    return all(isinstance(v, str) and v.startswith(("/", "runs/")) for v in (a, b))


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def compare_results(a_dir: Path, b_dir: Path) -> tuple[int, int]:
    """Compare the results JSON files; returns (values compared, values that differ)."""
    compared = differ = 0
    for fa in sorted(a_dir.glob("*.results.json")):
        fb = b_dir / fa.name
        if not fb.exists():
            print(f"{fa.name}: missing in {b_dir}")
            differ += 1
            continue
        a = dict(leaves(json.loads(fa.read_text())))
        b = dict(leaves(json.loads(fb.read_text())))
        n = d = 0
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
            if skipped(key, va, vb):
                continue
            n += 1
            if not same(va, vb):
                d += 1
                if d <= 10:
                    print(f"  {fa.name} {'/'.join(key)}: {va!r} != {vb!r}")
        print(f"{fa.name}: {n} values compared, {d} differ")
        compared, differ = compared + n, differ + d
    return compared, differ


def compare_logs(a_dir: Path, b_dir: Path) -> tuple[int, int]:
    """Compare the training logs; returns (entries compared, entries that differ)."""
    compared = differ = 0
    for la in sorted(a_dir.rglob("log.jsonl")):
        lb = b_dir / la.relative_to(a_dir)
        if not lb.exists():
            print(f"{la.relative_to(a_dir)}: missing in {b_dir}")
            differ += 1
            continue
        ea, eb = ([json.loads(x) for x in f.read_text().splitlines() if x.strip()] for f in (la, lb))

        def strip(entry: dict) -> dict:
            return {k: v for k, v in entry.items() if k != "seconds"}

        d = sum(strip(x) != strip(y) for x, y in zip(ea, eb, strict=False)) + abs(len(ea) - len(eb))
        print(f"{la.relative_to(a_dir)}: {len(ea)} entries, {d} differ")
        compared, differ = compared + len(ea), differ + d
    return compared, differ


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a_dir, b_dir = map(Path, sys.argv[1:])
    values, values_differ = compare_results(a_dir, b_dir)
    entries, entries_differ = compare_logs(a_dir, b_dir)
    print(f"TOTAL: {values} result values ({values_differ} differ), "
          f"{entries} log entries ({entries_differ} differ)")
    return 1 if values_differ or entries_differ else 0


if __name__ == "__main__":
    sys.exit(main())
