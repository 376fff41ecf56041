"""The package lists in pyproject.toml, environment.yml and binder/ must agree, and every
notebook must be a tutorial that papermill can parameterise, committed without outputs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """'napari[pyqt6]>=0.5' -> 'napari'."""
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    deps = list(project["dependencies"]) + list(extras["test"]) + list(extras["book"])
    # back-ports for old Pythons are not needed in the Python 3.11 environments
    return {_name(d) for d in deps if "python_version" not in d}


def _yaml_pip_packages(path: Path) -> set[str]:
    """Names under the `- pip:` section of a conda environment file (simple YAML lists)."""
    names, in_pip = set(), False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- pip:"):
            in_pip = True
            continue
        if in_pip and stripped.startswith("- "):
            item = stripped[2:].strip().strip("'\"")
            if not item.startswith(("-e", "-c", "-r", ".")):
                names.add(_name(item))
        elif in_pip and stripped and not stripped.startswith("#"):
            in_pip = False
    return names


def test_environment_yml_lists_the_pyproject_packages():
    assert _yaml_pip_packages(ROOT / "environment.yml") == _pyproject_packages()


def test_binder_environment_lists_the_pyproject_packages():
    binder = _yaml_pip_packages(ROOT / "binder" / "environment.yml")
    # Binder adds the remote desktop that napari's window needs.
    assert binder - {"jupyter-remote-desktop-proxy"} == _pyproject_packages()
    assert "jupyter-remote-desktop-proxy" in binder


def test_binder_postbuild_installs_the_package_and_fails_fast():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in post and "pip install" in post
    apt = (ROOT / "binder" / "apt.txt").read_text().split()
    assert any("vnc" in p for p in apt), "a VNC server for the remote desktop"


def test_lock_pins_torch_and_every_runtime_dependency():
    lock = (ROOT / "requirements" / "lock.txt").read_text().splitlines()
    pinned = {_name(line): line for line in lock if "==" in line and not line.startswith("#")}
    assert pinned["torch"].strip() == "torch==2.13.0"
    missing = _pyproject_packages() - set(pinned)
    assert not missing, f"not pinned in requirements/lock.txt: {sorted(missing)}"


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_a_clean_parameterised_tutorial(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title first"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert re.search(r'^profile\s*=\s*"cpu"', tagged[0].source, re.M), "profile defaults to cpu"
    assert re.search(r"^run_dir\s*=", tagged[0].source, re.M)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                "committed without outputs"
            )
