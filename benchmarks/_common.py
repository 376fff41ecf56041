"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import platform
from pathlib import Path


def standard_phantom(root) -> object:
    """``deeptree.io.CasePaths`` of one standard (0.7 mm, gpu-profile) phantom in ``root``,
    generated there (seed (0, 0), id PHANTOM_000) unless it is already complete."""
    from deeptree.io import list_cases
    from deeptree.phantom import case_is_complete, generate_case, write_case

    root = Path(root)
    if not case_is_complete(root, "PHANTOM_000"):
        write_case(generate_case("gpu", (0, 0), case_id="PHANTOM_000"), root)
    return next(c for c in list_cases(root) if c.id == "PHANTOM_000")


def finish_report(report: dict, json_path=None) -> None:
    """Add the load average at the end to ``report`` (figures of a shared machine depend on
    it), print it, and write ``report`` as JSON to ``json_path`` atomically if given."""
    import json
    import os

    from deeptree.io import atomic_write

    report["load_average_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min) at the end: {report['load_average_end']}")
    if json_path:

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1)

        atomic_write(json_path, write)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; platform's answer elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
