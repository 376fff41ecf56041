"""The book (deeptree.book): pages from executed notebooks, the 3D mesh, the MkDocs build of a
tiny repository, and the headless-Chromium check on clean and broken sites."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from deeptree.book import pages
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
        "| notebook | seconds | status |\n|---|---|---|\n| 00_a | 3.0 | ok |\n")
    mask = np.zeros((12, 12, 20), np.uint8)
    mask[5:7, 5:7, 2:18] = 1
    mask[5:7, 2:10, 3:5] = 1
    labels = root / "runs" / "ci" / "cohort" / "labelsTr"
    labels.mkdir(parents=True)
    nib.save(nib.Nifti1Image(mask, np.diag([1.5, 1.5, 2.0, 1.0])), labels / "CASE_000.nii.gz")
    (root / "results" / "20260101-cpu").mkdir(parents=True)
    (root / "results" / "20260101-cpu" / "tables.md").write_text(
        "# cpu tables\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
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
    assert pages.format_seconds(seconds) == text


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
    timings = {"smoke": {"00_a": pages.Timing(12.0, "runs/ci/00_a.ipynb", "2026-12-01T10")},
               "cpu": {"00_a": pages.Timing(95.0, "runs/x-cpu/00_a.ipynb", "2026-12-02T10")}}
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
    found = pages.collect_timings(tmp_path)
    assert found["cpu"]["00_a"].seconds == 60.0, "the latest run that did not fail"
    assert found["cpu"]["00_a"].source == "runs/new-cpu/00_a.ipynb"
    assert found["gpu"] == {"00_a": found["gpu"]["00_a"]} and found["gpu"]["00_a"].seconds == 7.5


def test_select_run_prefers_a_complete_cpu_run(tmp_path):
    for name in ("00_a", "01_b"):
        _executed(tmp_path / "runs" / "ci" / f"{name}.ipynb", name)
    _executed(tmp_path / "runs" / "20261202-cpu" / "00_a.ipynb", "a", "cpu")  # incomplete
    assert pages.select_run(tmp_path, ["00_a", "01_b"]) == tmp_path / "runs" / "ci"
    for name in ("00_a", "01_b"):
        _executed(tmp_path / "runs" / "20261201-cpu" / f"{name}.ipynb", name, "cpu")
    assert pages.select_run(tmp_path, ["00_a", "01_b"]) == tmp_path / "runs" / "20261201-cpu"
    with pytest.raises(InputError, match="make reproduce"):
        pages.select_run(tmp_path, ["00_a", "01_b", "02_c"])


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
        '<img src="nothing.png"><script>console.error("boom")</script></body></html>')
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
                     "other.html: page weighs 1.1"]:
        assert expected in problems, (expected, problems)
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
