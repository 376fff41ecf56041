"""The package as a user installs it: a wheel built from this tree, installed (not editable)
into a new virtual environment, used from a folder outside the clone.

No package index is needed. The new environment sees exactly the distributions a core install
pulls in: the closure of the core dependencies of ``pyproject.toml`` (their requirements,
recursively, markers evaluated), taken from this test environment, which is installed from
``requirements/lock.txt``. Each one is linked into a folder that a ``.pth`` file puts on the new
environment's path; Qt, napari and Jupyter are not among them, so this is a core install. pip
installs the wheel there without ``--no-deps``: it checks that the core's requirements and
``requires-python`` are met.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: What a wheel is built from (the rest of the clone does not go into it).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "deeptree", "data/samples")


def core_distributions() -> dict[str, metadata.Distribution]:
    """The installed distributions a core install of deeptree needs: its dependencies and
    theirs, recursively, with environment markers (and extras) evaluated.

    Returns
    -------
    dict
        Canonical name -> distribution of this environment.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = sorted(req.extras)
        if (name, ",".join(extras)) in done:
            continue
        done.add((name, ",".join(extras)))
        try:
            dist = found.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} (needed by the core) is not installed here: make setup")
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ["", *extras]):
                todo.append(sub)
    return found


def link_distributions(dists, folder: Path) -> None:
    """Link every top-level file and folder of ``dists`` (packages, modules, ``.libs``,
    ``.dist-info``) into ``folder``."""
    folder.mkdir(parents=True)
    for dist in dists:
        if dist.files is None:
            pytest.fail(f"{dist.metadata['Name']}: no RECORD, cannot tell its files")
        base = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files}):
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if (base / top).exists() and not (folder / top).exists():
                (folder / top).symlink_to(base / top)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _run(argv, cwd, env, expect=0):
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == expect, (
        f"{' '.join(map(str, argv))}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel of this tree installed into a fresh core-only virtual environment."""
    tmp = tmp_path_factory.mktemp("install")
    timings = {}
    # without the PYTHONPATH that may point at this clone, else pip finds deeptree "installed"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    start = time.perf_counter()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", "-w", tmp / "dist", src], tmp, None)
    timings["build wheel"] = time.perf_counter() - start
    (wheel,) = (tmp / "dist").glob("deeptree-*.whl")

    start = time.perf_counter()
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp, env).stdout.strip())
    link_distributions(core_distributions().values(), tmp / "core-deps")
    (site / "core_deps.pth").write_text(f"{tmp / 'core-deps'}\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index",
          "--no-cache-dir", "-q", wheel], tmp, env)
    timings["venv + install"] = time.perf_counter() - start
    env.update(OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    work = tmp / "work"  # outside the clone
    work.mkdir()
    return {"venv": venv, "python": python, "site": site, "wheel": wheel, "env": env,
            "work": work, "timings": timings}


def test_the_wheel_holds_the_package_and_the_samples(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for sample in ("cip_ct64/ct.nii.gz", "cip_ct64/airway.nii.gz", "atm_001/airway.nii.gz",
                   "totalseg_chest/ct.nii.gz", "README.md"):
        assert f"deeptree/samples/{sample}" in names
    assert "deeptree/napari.yaml" in names and "deeptree/cli/segment.py" in names
    for weights in ("stage1.pt", "stage2.pt", "MODEL_CARD.md"):
        assert f"deeptree/weights/{weights}" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "data/"))]
    size_mb = installed["wheel"].stat().st_size / 1e6
    print(f"wheel {size_mb:.1f} MB; " + ", ".join(f"{k} {v:.1f} s" for k, v in installed["timings"].items()))
    assert size_mb < 25


def test_the_installed_package_is_a_core_install_used_from_outside(installed):
    code = (
        "import importlib.util, json, deeptree\n"
        "from deeptree import locations, report\n"
        "from deeptree.io import SAMPLES_DIR, read_nifti\n"
        "ct = read_nifti(SAMPLES_DIR / 'cip_ct64' / 'ct.nii.gz')\n"
        "print(json.dumps({'file': deeptree.__file__, 'samples': str(SAMPLES_DIR),\n"
        "    'shape': list(ct.array.shape), 'clone': str(locations.clone_root()),\n"
        "    'interactive': str(report.results_dir(None)),\n"
        "    'absent': [m for m in ('napari', 'PyQt6', 'qtpy', 'jupyterlab', 'ipywidgets',\n"
        "        'papermill', 'nbformat') if importlib.util.find_spec(m) is None]}))\n"
    )
    out = json.loads(_run([installed["python"], "-c", code], installed["work"], installed["env"]).stdout)
    site, work = installed["site"], installed["work"]
    assert Path(out["file"]).is_relative_to(site)  # the wheel, not the clone
    assert out["samples"] == str(site / "deeptree" / "samples") and out["shape"] == [64, 64, 79]
    assert out["clone"] == "None"
    assert out["interactive"] == str(work / "runs" / "interactive")
    assert out["absent"] == ["napari", "PyQt6", "qtpy", "jupyterlab", "ipywidgets", "papermill",
                             "nbformat"]


def test_the_core_commands_run_from_the_installed_package(installed):
    deeptree, work, env = installed["venv"] / "bin" / "deeptree", installed["work"], installed["env"]
    before = _files(installed["venv"])
    assert _run([deeptree, "--version"], work, env).stdout.strip() == "deeptree 0.1.0"
    _run([deeptree, "phantom", "--profile", "smoke", "--n", "2", "--out", "cohort", "--no-progress"], work, env)
    _run([deeptree, "labels", "--in", "cohort/labelsTr", "--out", "anatomy"], work, env)
    _run([deeptree, "train", "--stage", "1", "--profile", "smoke", "--data", "cohort", "--out", "s1",
          "--iterations", "1", "--val", "1", "--device", "cpu", "--no-progress"], work, env)
    _run([deeptree, "predict", "--checkpoint", "s1/last.pt", "--input", "cohort/imagesTr",
          "--out", "pred", "--device", "cpu"], work, env)
    _run([deeptree, "evaluate", "--pred", "pred", "--gt", "cohort/labelsTr", "--out", "metrics.csv",
          "--no-progress"], work, env)
    ct = work / "cohort" / "imagesTr" / "PHANTOM_001_0000.nii.gz"
    _run([deeptree, "segment", ct, "seg.nii.gz", "--checkpoint", "s1/last.pt", "--gapfill",
          "straight", "--device", "cpu"], work, env)

    # no --checkpoint: the demo weights inside the installed package, said in one line
    demo = _run([deeptree, "segment", ct, "demo.nii.gz", "--device", "cpu"], work, env)
    assert f"demo weights in {installed['site'] / 'deeptree' / 'weights'}" in demo.stdout

    source = nib.load(ct)
    for name in ("seg.nii.gz", "demo.nii.gz"):
        written = nib.load(work / name)
        assert written.shape == source.shape and np.allclose(written.affine, source.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}
    assert sorted(p.name for p in (work / "anatomy").glob("*.nii.gz")) == [
        "PHANTOM_000.nii.gz", "PHANTOM_001.nii.gz"]
    assert (work / "metrics.csv").read_text().count("PHANTOM_00") == 2
    # the optional parts say what is missing, in one line
    view = _run([deeptree, "view", "cohort"], work, env, expect=2)
    assert "pip install 'deeptree[napari]'" in view.stderr and len(view.stderr.splitlines()) == 1
    notebooks = _run([deeptree, "notebooks", "--profile", "smoke"], work, env, expect=2)
    assert "clone" in notebooks.stderr and len(notebooks.stderr.splitlines()) == 1
    # nothing was written inside the environment (the outputs are where they were asked for)
    assert _files(installed["venv"]) == before
