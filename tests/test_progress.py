"""Progress bars: shown by default and in an interactive kernel, hidden in the kernels of the
notebook runner (deeptree.progress)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deeptree.progress import ENV, enabled, progress_bar

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("env", "given", "shown"),
    [
        (None, None, True),
        ("0", None, False),
        ("off", None, False),
        ("1", None, True),
        ("0", True, True),  # the caller wins
        (None, False, False),
    ],
)
def test_enabled(monkeypatch, env, given, shown):
    if env is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, env)
    assert enabled(given) is shown
    bar = progress_bar(range(3), progress=given, desc="x")
    assert bar.disable is (not shown)  # (tqdm sets it once the bar is closed)
    assert list(bar) == [0, 1, 2]


def test_the_notebook_runner_hides_the_bars_of_its_kernels(monkeypatch, tmp_path):
    from deeptree.notebooks import run_notebooks

    monkeypatch.setenv(ENV, "placeholder")
    monkeypatch.delenv(ENV)  # absent now, restored at teardown
    assert run_notebooks("smoke", tmp_path, notebooks=[]) == []
    assert os.environ[ENV] == "0"  # inherited by every kernel it starts


def _run_cell(source: str, env: dict) -> list:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:  # the kernel inherits this process's environment
        NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb.cells[0].outputs


@pytest.mark.slow
def test_a_kernel_shows_the_bar_unless_started_by_the_runner():
    """The same cell in a Jupyter kernel: a bar (a tqdm widget, or text) in an interactive
    session; no output at all with the runner's variable."""
    cell = "from deeptree.progress import progress_bar\nfor _ in progress_bar(range(3), desc='work'): pass"
    base = {k: v for k, v in os.environ.items() if k != ENV}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    shown = _run_cell(cell, base)
    assert shown, "no progress bar in an interactive kernel"
    text = repr([o.get("data", o.get("text")) for o in shown])
    assert "widget-view" in text or "work" in text
    assert _run_cell(cell, {**base, ENV: "0"}) == []
