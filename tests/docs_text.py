"""The text of the README and of the pages under ``docs/`` for the tests that check what the
documentation promises: the README is one screen of links (issue 31), and the promises it
used to hold moved, word for word, to the page named in its "More" list."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def doc_page(name: str) -> str:
    """The text of ``docs/<name>`` (e.g. ``"training-at-scale.md"``); ``"README.md"`` is the
    README at the repository root."""
    path = ROOT / name if name == "README.md" else ROOT / "docs" / name
    assert path.is_file(), f"{path}: the page is gone; the promise it held must move with it"
    return path.read_text(encoding="utf-8")
