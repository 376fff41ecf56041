"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

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
