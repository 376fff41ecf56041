"""The package lists in pyproject.toml, environment.yml and binder/ must agree, and every
notebook must be a tutorial that papermill can parameterise, committed without outputs."""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from deeptree.book.pages import repository_url

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """'napari[pyqt6]>=0.5' -> 'napari'."""
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject_packages() -> set[str]:
    """The core dependencies and those of every extra (the extras' references to deeptree's
    own extras left out)."""
    project = _project()
    deps = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        deps += extra
    return {_name(d) for d in deps if _name(d) != "deeptree"}


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
    raw = json.loads(path.read_text(encoding="utf-8"))
    ids = [cell.get("id") for cell in raw["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), "every cell has its own id (nbformat 4.5)"
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


# --------------------------------------------------------------------------------------------
# requires-python, the core and the extras
# --------------------------------------------------------------------------------------------
def _lock_pins() -> dict[str, str]:
    lines = (ROOT / "requirements" / "lock.txt").read_text().splitlines()
    return dict(line.strip().split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_requires_python_is_what_the_lock_can_install():
    """Every Python the project accepts can install every locked version, and every Python
    all locked versions accept is accepted: the bound is read from the locked distributions'
    own metadata (this environment is installed from the lock)."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    ours = SpecifierSet(_project()["requires-python"])
    theirs = {}
    for name, version in _lock_pins().items():
        dist = metadata.distribution(name)
        assert Version(dist.version).base_version == Version(version).base_version, (
            f"{name} {dist.version} installed, {version} locked: reinstall with make setup"
        )
        theirs[name] = SpecifierSet(dist.metadata.get("Requires-Python") or "")
    for minor in range(8, 17):
        for patch in range(0, 25):
            python = Version(f"3.{minor}.{patch}")
            refused_by = sorted(n for n, s in theirs.items() if python not in s)
            assert (python in ours) == (not refused_by), (
                f"Python {python}: requires-python {'accepts' if python in ours else 'refuses'} it, "
                f"locked versions refusing it: {refused_by or 'none'}"
            )


QT_OR_JUPYTER = ("napari", "pyqt6", "pyqt5", "pyside6", "qtpy", "jupyterlab", "ipywidgets",
                 "ipykernel", "papermill", "nbconvert", "nbformat", "notebook")


def test_core_needs_no_qt_and_the_extras_name_their_parts():
    project = _project()
    core = {_name(d) for d in project["dependencies"]}
    assert not core & set(QT_OR_JUPYTER), core & set(QT_OR_JUPYTER)
    assert any(d.startswith("monai>=1.6") for d in project["dependencies"])
    extras = {k: {_name(d) for d in v} for k, v in project["optional-dependencies"].items()}
    assert {"napari", "notebooks", "test", "book", "all"} <= set(extras)
    assert extras["napari"] == {"napari"}
    assert {"deeptree", "jupyterlab", "papermill", "ipywidgets"} <= extras["notebooks"]
    assert "deeptree[napari]" in project["optional-dependencies"]["notebooks"]
    assert project["optional-dependencies"]["all"] == ["deeptree[napari,notebooks,test,book]"]
    assert "'.[all]'" in (ROOT / "Makefile").read_text()  # make setup installs every extra
    assert '".[all]"' in (ROOT / "binder" / "postBuild").read_text()


def test_import_and_the_command_line_load_no_qt_or_jupyter():
    """`import deeptree`, the parser of every subcommand and the modules the core commands
    use leave Qt, napari and Jupyter unimported (they are extras)."""
    import subprocess

    code = (
        "import sys, deeptree, deeptree.cli\n"
        "deeptree.cli.build_parser()\n"
        "import deeptree.pipeline, deeptree.stage1.predict, deeptree.stage2.predict, deeptree.train, "
        "deeptree.metrics, deeptree.anatomy, deeptree.phantom, deeptree.evaluation.reproduce, "
        "deeptree.report, deeptree.notebooks, deeptree.viz\n"
        "import json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = {m.lower() for m in json.loads(out.stdout)}
    banned = set(QT_OR_JUPYTER) | {"pyqt6", "vispy", "superqt", "ipython", "jupyter_client"}
    assert not loaded & banned, f"imported at import time: {sorted(loaded & banned)}"


def test_a_missing_extra_is_one_clear_line(monkeypatch, capsys):
    from deeptree.cli import main
    from deeptree.extras import MissingExtraError, require

    monkeypatch.setitem(sys.modules, "napari", None)  # as if napari were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'deeptree\[napari\]'"):
        require("napari", "napari", "3D views")
    assert main(["view", str(ROOT / "data" / "samples" / "cip_ct64")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deeptree view: error: deeptree view needs napari")
    assert "deeptree[napari]" in err[0]


def test_notebooks_command_says_it_needs_a_clone(monkeypatch, tmp_path, capsys):
    import deeptree.cli.notebooks as command
    from deeptree.cli import main

    monkeypatch.setattr(command, "NOTEBOOKS_DIR", tmp_path)  # what an installed package sees
    assert main(["notebooks", "--profile", "smoke", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no notebooks in" in err and "clone" in err
    assert not (tmp_path / "run").exists()


def test_locations_in_a_clone():
    from deeptree import locations
    from deeptree.io import SAMPLES_DIR

    assert locations.clone_root() == ROOT
    assert SAMPLES_DIR == locations.samples_dir() == ROOT / "data" / "samples"
    assert locations.runs_root() == ROOT / "runs"


# --------------------------------------------------------------------------------------------
# licence, citation, badge
# --------------------------------------------------------------------------------------------
def test_licence_citation_and_binder_badge():
    project = _project()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # the SPDX expression replaces the "License ::" classifiers (setuptools refuses both)
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert "license: MIT" in cff
    assert "DeepTree: Accurate Airway Tree Segmentation in CT Scans via Anatomy-aware" in cff
    assert "preferred-citation:" in cff
    assert f'version: "{project["version"]}"' in cff
    # Binder (issue 31): a badge opens this repository on mybinder.org (never the home page),
    # which needs the repository's URL; without a remote the README says in one line how to
    # open it there, and binder/ configures the environment
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((https://mybinder\.org[^)\s]*)\)", readme)
    url = repository_url(ROOT)
    for link in links:
        assert re.fullmatch(r"https://mybinder\.org/v2/gh/[\w.-]+/[\w.-]+/HEAD(\?\S*)?", link), link
        if url:
            assert link.startswith(url.replace("https://github.com/", "https://mybinder.org/v2/gh/"))
    if not links:
        line = next(x for x in readme.splitlines() if "**Binder:**" in x)
        assert "mybinder.org" in line and "URL" in line
        assert "`binder/`" in readme and (ROOT / "binder").is_dir()
