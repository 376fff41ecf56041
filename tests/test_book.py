"""The book (deeptree.book): pages from executed notebooks, the 3D mesh, the MkDocs build of a
tiny repository, and the headless-Chromium check on clean and broken sites."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from deeptree.book import pages, runs
from deeptree.book.mesh import airway_mesh, mesh_payload, write_mesh_js
from deeptree.io import InputError

PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU"
           "5ErkJggg==")


# --------------------------------------------------------------------------------------------
# hand-built notebooks and repositories
# --------------------------------------------------------------------------------------------
def _cell(kind, source, outputs=None, tags=None):
    cell = {"cell_type": kind, "metadata": {"tags": tags or []}, "source": source}
    if kind == "code":
        cell.update(outputs=outputs or [], execution_count=1)
    return cell


def _executed(path: Path, title: str, profile: str = "smoke", seconds: float = 12.5,
              end: str = "2026-12-01T10:00:00+00:00", exception=None) -> Path:
    """A small executed notebook as papermill leaves it."""
    cells = [
        _cell("markdown", f"# {title}: a subtitle\n\nIntro.\n\n**What you will learn**\n\n"
                          "* one thing;\n* the loss $L = 1 - a$.\n\nMore text after the list."),
        _cell("code", 'profile = "cpu"\nrun_dir = None', tags=["parameters"]),
        _cell("code", 'profile = "smoke"\nrun_dir = "/secret/local/path"',
              tags=["injected-parameters"]),
        _cell("markdown", "See [the next chapter](01_b.ipynb) and [code](../deeptree/x.py)."),
        _cell("code", "print('hi')", outputs=[
            {"output_type": "stream", "name": "stdout", "text": ["10%\r50%\r100%\n", "done\n"]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": PNG_1x1, "text/plain": ["<Figure size 1x1>"]}},
            {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
             "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                      "text/plain": ["IntSlider()"]}},
        ]),
        _cell("markdown", "Our nnUNet*, their nnUNet* and *in italics* and **bold**."),
        _cell("code", "show_table()", outputs=[
            {"output_type": "display_data", "metadata": {},
             "data": {"text/markdown": ["* plain nnUNet*: 47.3; nnUNet*+AMC: 61.2"],
                      "text/plain": ["<IPython.core.display.Markdown object>"]}},
            {"output_type": "display_data", "metadata": {},
             "data": {"text/html": ["<div><table><tr><td>html nnUNet*</td></tr></table></div>"],
                      "text/plain": ["table"]}},
        ]),
    ]
    meta = {"papermill": {"parameters": {"profile": profile, "run_dir": "/x"},
                          "duration": seconds, "end_time": end, "exception": exception}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def _tiny_repo(root: Path) -> Path:
    """README, two notebooks, a smoke run in runs/ci with a cohort mask, a results table, a
    documented package, a guide in docs/ (and the design notes, not published) and a figure."""
    (root / "README.md").write_text(
        "# Tiny\n\nThe story. See [notebook a](notebooks/00_a.ipynb) and "
        "[data](data/README.md).\n\n![the pipeline](docs/figures/pipeline.png)\n\n"
        "## Commands\n\n`make test`\n\n## More\n\n- [A guide](docs/guide.md#a-section)\n"
        "- [design](docs/design.md)\n")
    (root / "docs" / "figures").mkdir(parents=True)
    (root / "docs" / "figures" / "pipeline.png").write_bytes(base64.b64decode(PNG_1x1))
    (root / "docs" / "guide.md").write_text(
        "# A guide\n\nRead [notebook a](../notebooks/00_a.ipynb), [the tables]"
        "(../results/20260101-cpu/tables.md) and [the design](design.md).\n\n## A section\n\n"
        "Text.\n")
    (root / "docs" / "design.md").write_text("# Design\n\nFor developers.\n")
    for name in ("00_a", "01_b"):
        _executed(root / "notebooks" / f"{name}.ipynb", name)
        _executed(root / "runs" / "ci" / f"{name}.ipynb", f"{name.upper()} title")
    (root / "runs" / "ci" / "summary.md").write_text(
        "# s\n\nProfile `smoke`, commit `abc1234`, Python 3.11, 2 cores.\n\n"
        "| notebook | seconds | status |\n|---|---|---|\n| 00_a | 3.0 | ok |\n\n"
        "## 01_b\n\n| figure | value |\n|---|---|\n| effects | AMC improves TLD, GUL hurts |\n")
    mask = np.zeros((12, 12, 20), np.uint8)
    mask[5:7, 5:7, 2:18] = 1
    mask[5:7, 2:10, 3:5] = 1
    labels = root / "runs" / "ci" / "cohort" / "labelsTr"
    labels.mkdir(parents=True)
    nib.save(nib.Nifti1Image(mask, np.diag([1.5, 1.5, 2.0, 1.0])), labels / "CASE_000.nii.gz")
    (root / "results" / "20260101-cpu").mkdir(parents=True)
    (root / "results" / "20250101-cpu").mkdir(parents=True)  # an older run: history
    (root / "results" / "20250101-cpu" / "tables.md").write_text("# old tables\n\n> History.\n")
    wide = [f"column {i} " + "a long value " * 3 for i in range(15)]
    (root / "results" / "20260101-cpu" / "tables.md").write_text(
        "# cpu tables\n\n| a | b |\n|---|---|\n| nnUNet* with DiceCE | nnUNet* (row 1) |\n\n"
        "Our nnUNet* is set beside the paper's nnUNet*, **bold** and `code*`.\n\n"
        f"| {' | '.join(wide)} |\n|{'---|' * 15}\n| {' | '.join(wide)} |\n")
    package = root / "deeptree"
    (package / "book").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Tiny package."""\n')
    (package / "book" / "__init__.py").write_text('"""Not documented in the API."""\n')
    (package / "tool.py").write_text(
        '"""A tool."""\n\n\ndef double(x: int) -> int:\n    """Twice ``x``.\n\n'
        '    Parameters\n    ----------\n    x : int\n\n    Returns\n    -------\n    int\n'
        '    """\n    return 2 * x\n')
    return root


# --------------------------------------------------------------------------------------------
# the mesh
# --------------------------------------------------------------------------------------------
def _tube(length=30):
    mask = np.zeros((9, 9, length + 4), bool)
    mask[3:6, 3:6, 2:length + 2] = True
    return mask


def test_airway_mesh_is_in_world_mm_and_centred():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    mesh = airway_mesh(_tube(30), affine)
    extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    # the 0.5 level lies half a voxel outside the end voxels' centres: 30 voxels of 2 mm
    # along z, 3 voxels of 0.5 mm across
    assert extent[2] == pytest.approx(60.0, abs=0.01)
    assert extent[0] == pytest.approx(1.5, abs=0.01)
    assert np.allclose(mesh.vertices.min(axis=0), -mesh.vertices.max(axis=0), atol=1e-4)
    assert mesh.faces.max() < len(mesh.vertices) and mesh.step == 1


def test_airway_mesh_coarsens_to_the_triangle_budget():
    fine = airway_mesh(_tube(60), np.eye(4))
    coarse = airway_mesh(_tube(60), np.eye(4), max_triangles=len(fine.faces) // 3)
    assert coarse.step > 1 and len(coarse.faces) <= len(fine.faces) // 3


def test_airway_mesh_follows_the_affine_axes():
    # a flipped k axis puts the tube's top (high k) at low z: the mesh is the same shape
    mesh = airway_mesh(_tube(10), np.diag([1.0, 1.0, -1.0, 1.0]))
    assert (mesh.vertices[:, 2].max() - mesh.vertices[:, 2].min()) == pytest.approx(10.0)


@pytest.mark.parametrize("mask, message", [
    (np.zeros((4, 4, 4), bool), "empty"),
    (np.full((4, 4, 4), 2, np.uint8), "binary"),
    (np.zeros((4, 4), bool), "3D"),
])
def test_airway_mesh_rejects_bad_masks(mask, message):
    with pytest.raises(InputError, match=message):
        airway_mesh(mask, np.eye(4), name="case.nii.gz")


def test_mesh_payload_round_trips_within_quantisation(tmp_path):
    mesh = airway_mesh(_tube(20), np.diag([0.7, 0.7, 1.3, 1.0]))
    payload = mesh_payload(mesh, "tube")
    codes = np.frombuffer(base64.b64decode(payload["vertices"]), "<u2").reshape(-1, 3)
    positions = np.asarray(payload["offset"]) + codes * np.asarray(payload["scale"])
    assert np.abs(positions - mesh.vertices).max() <= max(payload["scale"])
    faces = np.frombuffer(base64.b64decode(payload["faces"]), "<u2").reshape(-1, 3)
    assert np.array_equal(faces, mesh.faces) and payload["triangles"] == len(mesh.faces)
    js = write_mesh_js(tmp_path / "m.js", "k", payload).read_text()
    assert js.startswith("window.deeptreeMeshes") and '["k"]' in js
    assert not list(tmp_path.glob(".*tmp*")), "written through a temporary name"


# --------------------------------------------------------------------------------------------
# the pages
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, text", [(8.04, "8 s"), (75.2, "1 min 15 s"),
                                           (4000, "1 h 6 min")])
def test_format_seconds(seconds, text):
    assert runs.format_seconds(seconds) == text


def test_chapter_markdown_keeps_figures_and_drops_local_paths(tmp_path):
    notebook = _executed(tmp_path / "run" / "00_a.ipynb", "00 A")
    text = pages.chapter_markdown(notebook, tmp_path / "docs" / "00_a", "HEADER", "EXTRA")
    learn, header, after = text.index("the loss"), text.index("HEADER"), text.index("More text")
    assert learn < header < text.index("EXTRA") < after, "the box follows the learn list"
    assert "/secret/local/path" not in text and 'profile = "cpu"' in text
    assert "![<Figure size 1x1>](00_a/output_01.png)" in text
    assert (tmp_path / "docs" / "00_a" / "output_01.png").read_bytes().startswith(b"\x89PNG")
    assert "100%\ndone" in text and "10%" not in text, "progress bars as a terminal shows them"
    assert "needs a running kernel" in text
    assert "<math" in text and "$L" not in text, "TeX as MathML"


def test_chapter_header_states_times_or_not_measured(tmp_path):
    timings = {"smoke": {"00_a": runs.Timing(12.0, "runs/ci/00_a.ipynb", "2026-12-01T10")},
               "cpu": {"00_a": runs.Timing(95.0, "runs/x-cpu/00_a.ipynb", "2026-12-02T10")}}
    box = pages.chapter_header("00_a", "smoke", "abc", timings, None)
    assert "**cpu**: 1 min 35 s (`runs/x-cpu/00_a.ipynb`, 2026-12-02)" in box
    assert "**gpu**: not measured yet" in box and "**smoke**: 12 s" in box
    assert "make reproduce NOTEBOOKS=notebooks/00_a.ipynb" in box and "mybinder.org" in box
    linked = pages.chapter_header("00_a", "smoke", None, {}, "https://github.com/o/r")
    assert "mybinder.org/v2/gh/o/r/HEAD?labpath=notebooks%2F00_a.ipynb" in linked
    assert "commit not recorded" in linked and "**cpu**: not measured yet" in linked


def test_collect_timings_reads_papermill_and_summaries(tmp_path):
    _executed(tmp_path / "runs" / "old-cpu" / "00_a.ipynb", "a", "cpu", 50.0,
              "2026-11-01T00:00:00+00:00")
    _executed(tmp_path / "runs" / "new-cpu" / "00_a.ipynb", "a", "cpu", 60.0,
              "2026-11-02T00:00:00+00:00")
    _executed(tmp_path / "runs" / "bad-cpu" / "00_a.ipynb", "a", "cpu", 1.0,
              "2026-11-03T00:00:00+00:00", exception=True)
    (tmp_path / "results" / "g").mkdir(parents=True)
    (tmp_path / "results" / "g" / "summary.md").write_text(
        "Profile `gpu`, commit `x`.\n\n| notebook | seconds | status |\n|---|---|---|\n"
        "| 00_a | 7.5 | ok |\n| 01_b | 9.0 | FAILED |\n")
    found = runs.collect_timings(tmp_path)
    assert found["cpu"]["00_a"].seconds == 60.0, "the latest run that did not fail"
    assert found["cpu"]["00_a"].source == "runs/new-cpu/00_a.ipynb"
    assert found["gpu"] == {"00_a": found["gpu"]["00_a"]} and found["gpu"]["00_a"].seconds == 7.5


def test_select_run_prefers_a_complete_cpu_run(tmp_path):
    for name in ("00_a", "01_b"):
        _executed(tmp_path / "runs" / "ci" / f"{name}.ipynb", name)
    _executed(tmp_path / "runs" / "20261202-cpu" / "00_a.ipynb", "a", "cpu")  # incomplete
    assert runs.select_run(tmp_path, ["00_a", "01_b"]) == tmp_path / "runs" / "ci"
    for name in ("00_a", "01_b"):
        _executed(tmp_path / "runs" / "20261201-cpu" / f"{name}.ipynb", name, "cpu")
    assert runs.select_run(tmp_path, ["00_a", "01_b"]) == tmp_path / "runs" / "20261201-cpu"
    with pytest.raises(InputError, match="make reproduce"):
        runs.select_run(tmp_path, ["00_a", "01_b", "02_c"])


def test_rewrite_links_points_at_pages_or_the_repository():
    page_of = {"notebooks/00_a.ipynb": "chapters/00_a.md"}
    md = "[a](notebooks/00_a.ipynb#x) [d](data/README.md) [w](https://x.org) [h](#top)"
    assert pages.rewrite_links(md, page_of, "", None) == (
        "[a](chapters/00_a.md#x) d (`data/README.md`) [w](https://x.org) [h](#top)")
    linked = pages.rewrite_links(md, page_of, "", "https://github.com/o/r")
    assert "[d](https://github.com/o/r/blob/HEAD/data/README.md)" in linked
    badge = "[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org) ![x](http://a/b.png)"
    assert pages.rewrite_links(badge, page_of, "", None) == "[Binder](https://mybinder.org) x"


def test_stage_pages_publishes_the_guides_the_readme_links(tmp_path):
    """Issue 31: the README's sections moved to docs/; the book publishes the pages the README
    links (a "Guides" section; the design notes stay in the repository), with the README's
    links and the guides' own links pointing at book pages, and the README's figure."""
    from deeptree.book.build import stage_pages

    (tmp_path / "repo").mkdir()
    repo = _tiny_repo(tmp_path / "repo")
    docs = tmp_path / "docs"
    nav = stage_pages(repo / "runs" / "ci", docs, repo, mesh_views={})
    assert [list(entry) for entry in nav][:4] == [["Home"], ["Chapters"], ["Guides"], ["Results"]]
    assert nav[2] == {"Guides": [{"A guide": "guides/guide.md"}]}
    index = (docs / "index.md").read_text()
    assert "[A guide](guides/guide.md#a-section)" in index
    assert "![the pipeline](figures/pipeline.png)" in index
    assert (docs / "figures" / "pipeline.png").read_bytes().startswith(b"\x89PNG")
    assert "design (`docs/design.md`)" in index and not (docs / "guides" / "design.md").exists()
    guide = (docs / "guides" / "guide.md").read_text()
    assert "[notebook a](../chapters/00_a.md)" in guide
    assert "[the tables](../results.md)" in guide
    assert "the design (`docs/design.md`)" in guide


def test_long_summary_rows_are_shortened():
    text = "| notebook | seconds |\n| 00_a | 3.0 |\n| mask | [" + "0, " * 500 + "0] |"
    short = pages.shorten_table_rows(text, "summary.md", limit=100)
    assert short.split("\n")[:2] == text.split("\n")[:2]
    assert short.split("\n")[2] == "| mask | (1,514 characters: see `summary.md` of the run) |"


def test_api_modules_and_model_card(tmp_path):
    repo = _tiny_repo(tmp_path)
    assert pages.api_modules(repo / "deeptree") == ["deeptree.tool"]
    assert pages.find_model_card(repo) is None
    (repo / "MODEL_CARD.md").write_text("# Model card\n")
    assert pages.find_model_card(repo) == repo / "MODEL_CARD.md"


# --------------------------------------------------------------------------------------------
# the build and the browser check (need the book extra and Chromium)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    from deeptree.book.build import build_book

    repo = _tiny_repo(tmp_path_factory.mktemp("repo"))
    (repo / "MODEL_CARD.md").write_text("# Model card\n\nTrained on [a](notebooks/00_a.ipynb).\n")
    site = build_book(repo / "site", repo_root=repo,
                      mesh_views={"01_b": ("cohort/labelsTr/*.nii.gz", "Case {case}")})
    return repo, site


def test_build_writes_every_page(tiny_site):
    repo, site = tiny_site
    for page in ("index.html", "chapters/00_a.html", "chapters/01_b.html", "results.html",
                 "model-card.html", "api/deeptree.tool.html", "chapters/01_b/mesh.js",
                 "guides/guide.html", "figures/pipeline.png"):
        assert (site / page).is_file(), page
    index = (site / "index.html").read_text()
    assert "The story" in index and "abc1234" in index and "runs/ci" in index
    assert 'href="guides/guide.html#a-section"' in index and 'src="figures/pipeline.png"' in index
    assert 'href="../chapters/00_a.html"' in (site / "guides" / "guide.html").read_text()
    chapter = (site / "chapters" / "00_a.html").read_text()
    assert "Run this chapter" in chapter and "not measured yet" in chapter
    assert 'href="01_b.html"' in chapter and "00_a/output_01.png" in chapter
    assert "Twice" in (site / "api" / "deeptree.tool.html").read_text()
    assert "cpu tables" in (site / "results.html").read_text()
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert "fonts.googleapis" not in text and "unpkg.com" not in text, html
    assert (site / "chapters" / "01_b" / "mesh.js").stat().st_size < 1_000_000


def test_browser_check_passes_a_clean_site_and_saves_screenshots(tiny_site, tmp_path):
    from deeptree.book.browser import check_site

    _, site = tiny_site
    assert check_site(site, tmp_path / "shots") == []
    shots = {p.name for p in (tmp_path / "shots").glob("*.png")}
    assert {"index.png", "chapters__00_a.png", "chapters__01_b.png", "results.png",
            "model-card.png"} <= shots


def test_browser_check_reports_what_is_broken(tmp_path):
    from deeptree.book.browser import check_site

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<html><body><h1 id="top">x</h1><a href="other.html">ok</a> <a href="#top">ok</a>'
        '<a href="missing.html">broken</a> <a href="other.html#nowhere">bad anchor</a>'
        '<img src="nothing.png"><script>console.error("boom")</script>'
        "<p>Took BOOK_TIMING_PLACEHOLDER.</p><pre>{{ code may hold this }}</pre>"
        '<article><div style="overflow: hidden; width: 300px"><table><tr><th>cut</th>'
        + "<td>a long cell of text</td>" * 20 + "</tr></table></div>"
        '<div style="overflow-x: auto; width: 300px"><table><tr><th>scrolls</th>'
        + "<td>a long cell of text</td>" * 20 + "</tr></table></div></article></body></html>")
    (site / "chapters").mkdir()
    _png(site / "chapters" / "blank.png", np.full((20, 30, 3), 255, np.uint8))
    (site / "chapters" / "x.html").write_text(
        '<html><body><img src="blank.png"><img src="./blank.png"></body></html>')
    (site / "other.html").write_text(
        '<html><body><script src="https://cdn.example.invalid/x.js"></script>'
        '<div class="deeptree-mesh" data-mesh="k"><canvas width="50" height="50"></canvas>'
        '</div><script>undefinedFunction()</script><script src="big.js"></script></body></html>')
    (site / "big.js").write_text("var big = '" + "a" * 1_100_000 + "';\n")
    problems = "\n".join(check_site(site, tmp_path / "shots"))
    for expected in ["index.html: broken link: file://", "missing.html",
                     "index.html: broken anchor:", "index.html: broken image: nothing.png",
                     "index.html: console error: boom",
                     "other.html: request leaves the folder: https://cdn.example.invalid/x.js",
                     "other.html: script error:", "other.html: 3D view 0 is empty",
                     "other.html: 3D view 0 does not turn when dragged",
                     "other.html: page weighs 1.1",
                     "index.html: literal placeholder: BOOK_TIMING_PLACEHOLDER",
                     "index.html: table cut: ",
                     "chapters/x.html: all 2 figures are blank"]:
        assert expected in problems, (expected, problems)
    assert "{{ code" not in problems and "scrolls" not in problems
    assert "broken link: file://" + str(site / "other.html") not in problems


def test_browser_check_needs_a_built_site(tmp_path):
    from deeptree.book.browser import check_site

    with pytest.raises(RuntimeError, match="make book"):
        check_site(tmp_path, tmp_path / "shots")


def test_build_names_a_missing_run(tmp_path):
    from deeptree.book.build import build_book

    (tmp_path / "repo").mkdir()
    repo = _tiny_repo(tmp_path / "repo")
    with pytest.raises(InputError, match="not found"):
        build_book(tmp_path / "site", run_dir=tmp_path / "nope", repo_root=repo)
    os.remove(repo / "runs" / "ci" / "01_b.ipynb")
    with pytest.raises(InputError, match="01_b"):
        build_book(tmp_path / "site", run_dir=repo / "runs" / "ci", repo_root=repo)
    assert not (tmp_path / "site").exists(), "no partial site"


# --------------------------------------------------------------------------------------------
# issue 31: the committed run published, smoke books say so, the results page, the checks
# --------------------------------------------------------------------------------------------
def _png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


CPU_SUMMARY = ("# DeepTree run summary: 20261202-024753-cpu\n\n"
               "Profile `cpu`, commit `a1f2f5e`, Python 3.11.7, 2 cores.\n\n"
               "| notebook | seconds | status |\n|---|---|---|\n"
               "| 00_a | 183.2 | ok |\n| 01_b | 20.1 | ok |\n")


def _cpu_run(run: Path) -> Path:
    """A finished cpu run as `make reproduce` leaves it, with the machine's paths in it."""
    for name in ("00_a", "01_b"):
        notebook = _executed(run / f"{name}.ipynb", name.upper(), "cpu", 30.0)
        content = json.loads(notebook.read_text())
        content["cells"][4]["outputs"].append(
            {"output_type": "stream", "name": "stdout",
             "text": [f"model: {run}/05_stage1/run/last.pt\n"]})
        content["metadata"]["papermill"].update(
            input_path=f"{run.parent.parent}/notebooks/{name}.ipynb",
            output_path=str(notebook), parameters={"profile": "cpu", "run_dir": str(run)})
        notebook.write_text(json.dumps(content))
    (run / "summary.md").write_text(CPU_SUMMARY + f"\n## 01_b\n\n| weights | {run}/w.pt |\n")
    tables = run / "07_evaluation" / "tables"
    tables.mkdir(parents=True)
    (tables / "tables.md").write_text(f"# cpu run\n\n* seed1: {run}/07_evaluation/log.jsonl\n")
    (tables / "per_case.csv").write_text("case,TLD\nPHANTOM_000,0.5\n")
    (tables / ".deeptree-x.123-ab.tmp.csv").write_text("a temporary of a killed writer")
    labels = run / "cohort" / "labelsTr"
    labels.mkdir(parents=True)
    mask = np.zeros((12, 12, 20), np.uint8)
    mask[5:7, 5:7, 2:18] = 1
    for case in ("CASE_000", "CASE_001"):
        nib.save(nib.Nifti1Image(mask, np.eye(4)), labels / f"{case}.nii.gz")
    return run


def _tree_bytes(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


MESH_B = {"01_b": ("cohort/labelsTr/*.nii.gz", "Case {case}")}


def test_publish_copies_notebooks_tables_summary_with_relative_paths(tmp_path, capsys):
    from deeptree.book.publish import publish_run

    (tmp_path / "repo").mkdir()
    repo = _tiny_repo(tmp_path / "repo")
    run = _cpu_run(repo / "runs" / "20261207-cpu")
    (run / "07_evaluation" / "figures").mkdir(parents=True)
    (run / "07_evaluation" / "figures" / "convergence.png").write_bytes(PNG_1x1.encode())
    before = _tree_bytes(run)
    dest = repo / "results" / "20261207-cpu-synthetic"
    done = publish_run(run, dest, repo_root=repo, mesh_views=MESH_B)
    assert _tree_bytes(run) == before, "the run is never modified"
    written = {p.relative_to(dest).as_posix() for p in done["files"]}
    assert written == {"notebooks/00_a.ipynb", "notebooks/01_b.ipynb", "tables.md",
                       "per_case.csv", "run_summary.md", "notebooks/cohort/labelsTr/CASE_000.nii.gz",
                       "figures/convergence.png"}  # fmt: skip
    assert done["bytes"] == sum(p.stat().st_size for p in done["files"])
    notebook = json.loads((dest / "notebooks" / "01_b.ipynb").read_text())
    outputs = notebook["cells"][4]["outputs"]
    assert outputs[1]["data"]["image/png"] == PNG_1x1, "outputs kept"
    assert outputs[-1]["text"] == ["model: 05_stage1/run/last.pt\n"]
    assert notebook["metadata"]["papermill"]["input_path"] == "notebooks/01_b.ipynb"
    for path in done["files"]:
        if path.suffix != ".gz":
            assert str(tmp_path) not in path.read_text(), path
    assert "| weights | w.pt |" in (dest / "run_summary.md").read_text()
    assert "* seed1: 07_evaluation/log.jsonl" in (dest / "tables.md").read_text()
    assert not [p for p in dest.rglob(".*")], "no temporary left, none copied"

    # the book of a fresh clone: the published run, its cpu times, its 3D view
    import shutil

    shutil.rmtree(repo / "runs" / "20261207-cpu")
    assert runs.select_run(repo, ["00_a", "01_b"]) == dest
    from deeptree.book.build import stage_pages

    stage_pages(dest, tmp_path / "docs", repo, MESH_B)
    chapter = (tmp_path / "docs" / "chapters" / "00_a.md").read_text()
    assert "**cpu**: 3 min 3 s (`results/20261207-cpu-synthetic/run_summary.md`, 2026-12-02)" \
        in chapter and "**cpu**: not measured yet" not in chapter
    assert "A pipeline check" not in chapter
    assert "notebooks run at commit `a1f2f5e`" in (tmp_path / "docs" / "index.md").read_text()
    assert (tmp_path / "docs" / "chapters" / "01_b" / "mesh.js").is_file()


def test_publish_refuses_smoke_incomplete_and_failed_runs(tmp_path):
    from deeptree.book.__main__ import main
    from deeptree.book.publish import publish_run

    (tmp_path / "repo").mkdir()
    repo = _tiny_repo(tmp_path / "repo")
    dest = repo / "results" / "x-cpu-synthetic"
    with pytest.raises(InputError, match="smoke run is a pipeline check"):
        publish_run(repo / "runs" / "ci", dest, repo_root=repo)
    run = _cpu_run(repo / "runs" / "20261207-cpu")
    (run / "summary.md").unlink()
    with pytest.raises(InputError, match="no summary.md"):
        publish_run(run, dest, repo_root=repo)
    _executed(run / "01_b.ipynb", "b", "cpu", exception=True)
    with pytest.raises(InputError, match=r"incomplete run .*failed: 01_b"):
        publish_run(run, dest, repo_root=repo)
    (run / "01_b.ipynb").unlink()
    with pytest.raises(InputError, match="missing: 01_b"):
        publish_run(run, dest, repo_root=repo)
    assert not dest.exists(), "nothing written"
    assert main(["publish", str(tmp_path / "nowhere"), str(dest)]) == 1


def test_relative_paths_of_a_folder():
    from deeptree.report import relative_paths

    text = "/a/b/c.pt and /a/b, not /a/bc nor /a/b.d; /a/b/x/y inside /a"
    assert relative_paths(text, ["/a/b", "/a/b/x"]) == "c.pt and ., not /a/bc nor /a/b.d; y inside /a"


def test_select_run_prefers_cpu_then_published_then_smoke(tmp_path):
    names = ["00_a", "01_b"]
    for name in names:
        _executed(tmp_path / "runs" / "ci" / f"{name}.ipynb", name)
        _executed(tmp_path / "results" / "20261126-cpu-synthetic" / "notebooks" / f"{name}.ipynb",
                  name, "cpu")
    (tmp_path / "results" / "20261203-cpu-synthetic").mkdir()  # committed without notebooks
    assert runs.select_run(tmp_path, names) == tmp_path / "results" / "20261126-cpu-synthetic"
    # a reference run still training (its partial models only) is passed over; once published,
    # it is the repository's results, before a newer cpu run
    (tmp_path / "results" / "20261125-cpu-reference" / "partial-models").mkdir(parents=True)
    assert runs.select_run(tmp_path, names) == tmp_path / "results" / "20261126-cpu-synthetic"
    for name in names:
        _executed(tmp_path / "results" / "20261125-cpu-reference" / "notebooks" / f"{name}.ipynb",
                  name, "cpu")
    assert runs.select_run(tmp_path, names) == tmp_path / "results" / "20261125-cpu-reference"
    for name in names:
        _executed(tmp_path / "runs" / "20261201-cpu" / f"{name}.ipynb", name, "cpu")
    assert runs.select_run(tmp_path, names) == tmp_path / "runs" / "20261201-cpu"


def test_collect_timings_reads_a_committed_run_summary(tmp_path):
    (tmp_path / "results" / "20261202-cpu-synthetic").mkdir(parents=True)
    (tmp_path / "results" / "20261202-cpu-synthetic" / "run_summary.md").write_text(CPU_SUMMARY)
    box = pages.chapter_header("00_a", "cpu", "a1f2f5e", runs.collect_timings(tmp_path), None)
    assert "**cpu**: 3 min 3 s (`results/20261202-cpu-synthetic/run_summary.md`, 2026-12-02)" in box
    assert "**cpu**: not measured yet" not in box and "**gpu**: not measured yet" in box


def test_smoke_chapters_open_with_the_pipeline_check(tmp_path):
    assert pages.pipeline_check_warning("cpu") == ""
    banner = pages.pipeline_check_warning("smoke")
    assert banner.startswith('!!! warning "A pipeline check') and "untrained" in banner
    notebook = _executed(tmp_path / "run" / "00_a.ipynb", "00 A")
    text = pages.chapter_markdown(notebook, tmp_path / "docs" / "00_a", "HEADER", banner=banner)
    assert text.index("# 00 A: a subtitle") < text.index("!!! warning") < text.index("Intro.")


def test_smoke_book_warns_on_every_chapter_and_prints_no_verdict(tiny_site):
    _, site = tiny_site
    for name in ("00_a", "01_b"):
        chapter = (site / "chapters" / f"{name}.html").read_text()
        assert "admonition warning" in chapter and "untrained" in chapter, name
        assert chapter.index("A pipeline check") < chapter.index("Run this chapter"), name
    results = (site / "results.html").read_text()
    this_run = results[results.index("This book"):]
    assert "00_a" in this_run and "improves" not in this_run and "hurts" not in this_run


def test_results_page_keeps_asterisks_and_scrolls_wide_tables(tiny_site):
    repo, site = tiny_site
    text = pages.escape_word_asterisks("| nnUNet* | x |\n**bold** and `code*`\n```\nnnUNet*\n```")
    assert text == "| nnUNet\\* | x |\n**bold** and `code*`\n```\nnnUNet*\n```"
    results = (site / "results.html").read_text()
    assert results.count("nnUNet*") == 4 and "<strong>bold</strong>" in results
    assert "<em>" not in results.split("This book")[0]
    # the 15-column table: whole in the page (check_site reports a table cut without scroll)
    assert results.count("column 14") == 2
    # issue 31: an older run is history, linked, not shown beside the newest one's tables
    assert "old tables" not in results and "Earlier run (history)" in results
    assert "20250101-cpu/tables.md" in results


def test_escape_word_asterisks_keeps_emphasis_code_and_html():
    html = '<div class="deeptree-output" markdown="0">\n<div>\nnnUNet*\n</div>\n</div>'
    cases = {
        "Our nnUNet* and nnUNet*, *in italics* and **bold**.":
            "Our nnUNet\\* and nnUNet\\*, *in italics* and **bold**.",
        "an *italic\nover two lines* and (nnUNet*)": "an *italic\nover two lines* and (nnUNet\\*)",
        "* a bullet: nnUNet*\n* 2 * 3": "* a bullet: nnUNet\\*\n* 2 * 3",
        f"{html}\nnnUNet*": f"{html}\nnnUNet\\*",
        '<details markdown="1">\n\n| nnUNet* |\n</details>': '<details markdown="1">\n\n| nnUNet\\* |\n</details>',
    }  # fmt: skip
    for text, escaped in cases.items():
        assert pages.escape_word_asterisks(text) == escaped, text
        assert pages.escape_word_asterisks(escaped) == escaped, "once is enough"


def test_every_page_prints_nnunet_asterisks(tiny_site):
    """Issue 31: "nnUNet*" in a chapter's Markdown cell and Markdown output is printed, not
    read as emphasis, as on the results page; real emphasis and HTML outputs stay as they are."""
    _, site = tiny_site
    chapter = (site / "chapters" / "00_a.html").read_text()
    # unescaped, Python-Markdown reads "nnUNet*, their nnUNet*" as emphasis
    assert "Our nnUNet*, their nnUNet* and <em>in italics</em> and <strong>bold</strong>" in chapter
    assert "plain nnUNet*: 47.3; nnUNet*+AMC: 61.2" in chapter
    assert "html nnUNet*</td>" in chapter, "an HTML output is left as it is"
    assert "<em>, their" not in chapter and "nnUNet\\*" not in chapter


def test_find_placeholders_in_prose_only():
    from deeptree.book.browser import find_placeholders

    html = ("<p>Took BOOK_TIMING_PLACEHOLDER s; TODO: write; {{ date }}.</p>"
            "<pre>x = f'{{y}}'  # TODO in code</pre><script>var a = '{{b}}'</script>"
            "<p>TODOS and todo and PLACEHOLDERS_OK are words; {single}.</p>")
    assert find_placeholders(html) == ["BOOK_TIMING_PLACEHOLDER", "TODO", "{{ date }}",
                                       "PLACEHOLDERS_OK"]


def test_blank_images_and_chapters(tmp_path):
    from deeptree.book.browser import blank_chapter_figures, is_blank

    white = np.full((20, 30, 3), 255, np.uint8)
    drawn = white.copy()
    drawn[10, :] = 0  # one line of a plot
    assert is_blank(white) and is_blank(np.full((4, 4), 0.5)) and not is_blank(drawn)
    assert is_blank(white - np.eye(20, 30, dtype=np.uint8)[..., None])  # within 1 level
    _png(tmp_path / "c" / "w.png", white)
    _png(tmp_path / "c" / "d.png", drawn)
    clear = np.zeros((20, 30, 4), np.uint8)  # fully transparent: white on the page
    _png(tmp_path / "c" / "t.png", clear)
    (tmp_path / "c" / "all.html").write_text('<img src="w.png"><img src="t.png">'
                                             '<img src="https://x.org/badge.png">')
    (tmp_path / "c" / "some.html").write_text('<img src="w.png"><img src="d.png">')
    (tmp_path / "c" / "none.html").write_text("<p>no figure</p>")
    assert blank_chapter_figures(tmp_path, "c/all.html") == "all 2 figures are blank (one colour each)"
    assert blank_chapter_figures(tmp_path, "c/some.html") is None
    assert blank_chapter_figures(tmp_path, "c/none.html") is None


# --------------------------------------------------------------------------------------------
# issue 31: the bottom line at the top of chapters 07 and 08
# --------------------------------------------------------------------------------------------
VERDICT = ["totalseg_chest (1.5 mm, no label): trachea found; deepest generation reached 2.",
           "cip_ct64 (4 mm, label, ATM'22 protocol): TLD 70.2%, BD 33.3%, precision 89.7%.",
           "The aim (trachea, main and lobar bronchi as one tree, no leak) is met on totalseg_chest."]


def _committed_run(repo: Path, names: list[str], verdict: list[str] | None = VERDICT) -> Path:
    """A committed cpu run as `publish` leaves it under results/, its files written by hand:
    an ablation where AMC hurts and stage 2 is not resolved, notebook 08's figures."""
    folder = repo / "results" / "20261207-cpu-synthetic"
    for name in names:
        _executed(folder / "notebooks" / f"{name}.ipynb", name.upper(), "cpu")
    (folder / "component_effects.csv").write_text(
        "component,without,with,seeds,failed,cases,dTLD,dTLD low,dTLD high,TLD verdict,paper dTLD\n"
        "AMC,plain,amc,3,0,10,-25.7,-35.4,-12.7,hurts,2.9\n"
        "stage 2,plain,plain+stage2,3,0,10,0.4,-0.2,1.0,not resolved at this scale,1.5\n")
    (folder / "table2_ablation.csv").write_text(
        "method,seeds,failed,cases,TLD,precision,paper TLD,paper precision\n"
        'plain,3,0,10,"47.3 [39.8, 59.2]","86.6 [84.6, 88.6]",78.1 ± 6.7,99.8 ± 0.2\n'
        'amc+gul,3,0,10,"72.0 [66.3, 76.5]","74.8 [71.1, 78.7]",88.2 ± 4.7,97.4 ± 1.1\n'
        'amc+gul+stage2,3,0,10,"77.3 [71.6, 82.1]","69.6 [66.9, 72.2]",88.9 ± 4.5,97.2 ± 1.1\n')
    (folder / "tables.md").write_text("# cpu tables\n\nWritten on 2026-12-07.\n\n"
                                      "Stage 1: 2000 iterations of batch 2.\n")
    rows = "".join(f"| {n} | 10.0 | ok |\n" for n in names)
    section = ("| weights | deeptree/weights/stage1.pt |\n| model_spacing | [2.4, 2.4, 2.4] |\n"
               "| synthetic_mean | BD=0.5459, TLD=0.7404, precision=0.7686, DSC=0.8769 |\n")
    if verdict is not None:
        section += f"| verdict | {verdict!r} |\n"
    (folder / "run_summary.md").write_text(
        "# DeepTree run summary: 20261207-cpu\n\nProfile `cpu`, commit `f8455e8`.\n\n"
        f"| notebook | seconds | status |\n|---|---|---|\n{rows}\nTotal: 72.1 min.\n\n"
        f"## 08_real_ct\n\n| figure | value |\n|---|---|\n{section}")
    return folder


def _repo_with_chapters_07_08(root: Path) -> tuple[Path, list[str]]:
    root.mkdir(parents=True)
    repo = _tiny_repo(root)
    for name in ("07_evaluation", "08_real_ct"):
        _executed(repo / "notebooks" / f"{name}.ipynb", name)
        _executed(repo / "runs" / "ci" / f"{name}.ipynb", name.upper())
    return repo, ["00_a", "01_b", "07_evaluation", "08_real_ct"]


def test_chapters_07_and_08_open_with_the_committed_runs_bottom_line(tmp_path):
    from deeptree.book.build import stage_pages
    from deeptree.evaluation import readme_box

    repo, names = _repo_with_chapters_07_08(tmp_path / "repo")
    folder = _committed_run(repo, names)
    docs = tmp_path / "docs"
    stage_pages(folder, docs, repo, mesh_views={})

    def chapter(name):
        return (docs / "chapters" / f"{name}.md").read_text()

    ablation = chapter("07_evaluation")
    box = ablation[ablation.index('!!! abstract "The bottom line'):ablation.index("Run this chapter")]
    assert ablation.index("# 07_EVALUATION") < ablation.index("The bottom line") < ablation.index("Intro.")
    assert "`results/20261207-cpu-synthetic` (2026-12-07, profile `cpu`, synthetic phantoms: " \
           "3 training seeds x 10 test phantoms, 2000 stage-1 iterations)" in box
    for numbers in ["plain nnUNet\\* 47.3 [39.8, 59.2] and 86.6 [84.6, 88.6] "
                    "(paper, real CT: 78.1 ± 6.7 and 99.8 ± 0.2)",
                    "amc+gul (stage 1 alone) 72.0 [66.3, 76.5] and 74.8 [71.1, 78.7]",
                    "DeepTree (amc+gul+stage2) 77.3 [71.6, 82.1] and 69.6 [66.9, 72.2]"]:
        assert numbers in box, numbers
    # the README's sentence, from the same files
    meaning = readme_box.readme_bottom_line(folder, repo).split("**What it means:** ")[1].split("\n")[0]
    assert readme_box.NONE_REPRODUCE in meaning and f"**What it means:** {meaning}" in box

    real = chapter("08_real_ct")
    box = real[real.index('!!! abstract "The bottom line'):real.index("Run this chapter")]
    assert "`results/20261207-cpu-synthetic/run_summary.md`" in box and "2.4 x 2.4 x 2.4 mm" in box
    assert f"- {VERDICT[0]}" in box and f"- {VERDICT[1]}" in box
    assert f"**What it means:** {VERDICT[2]}" in box
    assert "phantoms (paper protocol): TLD 74.0%, precision 76.9%" in box
    for name in ("00_a", "01_b"):
        assert "The bottom line" not in chapter(name), name

    # a run that recorded no verdict of notebook 08: the box says so, with what it holds
    _committed_run(repo, names, verdict=None)
    shutil.rmtree(docs)
    stage_pages(folder, docs, repo, mesh_views={})
    assert "records no verdict of this chapter" in chapter("08_real_ct")
    assert "`synthetic_mean`" in chapter("08_real_ct") and "TLD 74.0%" in chapter("08_real_ct")


def test_a_smoke_book_shows_the_warning_not_the_bottom_line(tmp_path):
    from deeptree.book.build import stage_pages

    repo, names = _repo_with_chapters_07_08(tmp_path / "repo")
    _committed_run(repo, names)
    docs = tmp_path / "docs"
    stage_pages(repo / "runs" / "ci", docs, repo, mesh_views={})
    for name in ("07_evaluation", "08_real_ct"):
        text = (docs / "chapters" / f"{name}.md").read_text()
        assert "A pipeline check" in text and "untrained" in text, name
        assert "The bottom line" not in text and "What it means" not in text, name
        for verdict in ("improves", "hurts", "do not reproduce", "is met"):
            assert verdict not in text, (name, verdict)
