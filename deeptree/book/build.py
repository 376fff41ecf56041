"""Build the book: stage the Markdown pages of a run, then let MkDocs (Material) make the site.

``python -m deeptree.book build`` (``make book``) writes a static site that opens from a
folder: Material's fonts are off, the offline plugin makes search work from ``file://``,
and the only scripts are MkDocs'/Material's own and the vendored mesh viewer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from deeptree.book import bottom_line, pages, runs
from deeptree.book.mesh import mask_file_mesh, mesh_payload, write_mesh_js
from deeptree.io import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"

#: Pages of ``docs/`` that stay in the repository only (the design notes for developers).
UNPUBLISHED_DOCS = ("docs/design.md",)

#: Chapters that get an interactive 3D view: notebook -> (mask files in the run folder, caption).
MESH_VIEWS = {
    "01_synthetic_data": ("cohort/labelsTr/*.nii.gz",
                          "Ground-truth airway of synthetic case {case} from this run"),
}


def _summary_commit(run_dir: Path) -> str | None:
    import re

    summary = runs.run_summary(run_dir)
    if summary is not None:
        match = re.search(r"commit `([^`]+)`", summary.read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    return None


def _git_commit(repo_root: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _shown_path(path: Path, repo_root: Path) -> str:
    """``path`` relative to the repository when inside it, else as it is."""
    try:
        return path.resolve().relative_to(repo_root).as_posix()
    except ValueError:
        return str(path)


def _mesh_block(run_dir: Path, name: str, chapter_dir: Path, mesh_views: dict) -> str:
    """The 3D view of a chapter (Markdown + HTML), or '' when the chapter has none."""
    if name not in mesh_views:
        return ""
    pattern, caption = mesh_views[name]
    masks = sorted(run_dir.glob(pattern))
    if not masks:  # e.g. a published run keeps only the first mask; an older one none
        return ("*(The interactive 3D view of this chapter needs the run's "
                f"`{pattern}`, which this run folder does not hold.)*\n")
    mask = masks[0]
    case = mask.name.split(".")[0]
    mesh = mask_file_mesh(mask)
    key = f"{name}-{case}"
    title = caption.format(case=case)
    write_mesh_js(chapter_dir / name / "mesh.js", key, mesh_payload(mesh, title))
    return (
        "### Interactive 3D view\n\n"
        f"The airway surface of `{mask.relative_to(run_dir).as_posix()}` (marching cubes, step "
        f"{mesh.step} voxel{'s' if mesh.step > 1 else ''}, {len(mesh.faces)} triangles), seen "
        "from the front with the head up; it runs in the page without a kernel.\n\n"
        f'<div class="deeptree-mesh" data-mesh="{key}"></div>\n'
        f'<script src="{name}/mesh.js"></script>\n'
    )


def write_page(path: Path, markdown: str) -> Path:
    """Write one Markdown page of the book: every page passes here.

    A ``*`` that ends a word (``nnUNet*``) is escaped on the way
    (:func:`deeptree.book.pages.escape_word_asterisks`), so that every page prints it instead
    of reading it as emphasis.

    Parameters
    ----------
    path : Path
        The page, under MkDocs' ``docs_dir`` (its folder exists).
    markdown : str

    Returns
    -------
    Path
        ``path``.
    """
    path.write_text(pages.escape_word_asterisks(markdown), encoding="utf-8")
    return path


def guide_pages(readme: str, repo_root: Path) -> list[str]:
    """The pages of ``docs/`` that the book publishes as guides: those the README links
    (``docs/NAME.md``), in the order it links them, less :data:`UNPUBLISHED_DOCS`.

    Parameters
    ----------
    readme : str
        The README's Markdown.
    repo_root : Path

    Returns
    -------
    list of str
        Repository paths, e.g. ``["docs/install.md", ...]``.
    """
    linked = re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[^)]*)?\)", readme)
    return [p for p in dict.fromkeys(linked)
            if p not in UNPUBLISHED_DOCS and (repo_root / p).is_file()]


def stage_pages(run_dir: Path, docs: Path, repo_root: Path = REPO_ROOT,
                mesh_views: dict | None = None) -> list:
    """Write the Markdown pages and their files under ``docs`` and return the MkDocs ``nav``.

    Parameters
    ----------
    run_dir : Path
        The run folder whose executed notebooks become the chapters.
    docs : Path
        An empty folder (MkDocs' ``docs_dir``).
    repo_root : Path
        The repository (README, notebooks/, results/, the package).
    mesh_views : dict, optional
        Chapters with a 3D view (default :data:`MESH_VIEWS`).

    Returns
    -------
    list
        The MkDocs navigation.
    """
    mesh_views = MESH_VIEWS if mesh_views is None else mesh_views
    names = [p.stem for p in sorted((repo_root / "notebooks").glob(runs.NOTEBOOK_GLOB))]
    notebooks_dir = runs.notebook_folder(run_dir)  # a published run keeps them in notebooks/
    executed = {p.stem: p for p in runs.executed_notebooks(notebooks_dir)}
    missing = [n for n in names if n not in executed]
    if missing:
        raise InputError(f"{run_dir}: executed notebooks missing: {', '.join(missing)}")
    profile = (runs.papermill_record(executed[names[0]]).get("parameters") or {}).get("profile", "?")
    commit = _summary_commit(run_dir)
    timings = runs.collect_timings(repo_root)
    repo_url = pages.repository_url(repo_root)

    chapters_dir = docs / "chapters"
    chapters_dir.mkdir(parents=True)
    (docs / "assets").mkdir()
    for asset in ("mesh-viewer.js", "book.css", "iframe-worker-shim.js"):
        shutil.copy(ASSETS / asset, docs / "assets" / asset)

    page_of = {f"notebooks/{n}.ipynb": f"chapters/{n}.md" for n in names}
    tables = sorted(repo_root.glob("results/*/tables.md"))
    page_of.update({t.relative_to(repo_root).as_posix(): "results.md" for t in tables})
    card = pages.find_model_card(repo_root)
    if card is not None:
        page_of[card.relative_to(repo_root).as_posix()] = "model-card.md"
    # the pages of docs/ the README links (guides/) and the figures they show (figures/)
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    guides = guide_pages(readme, repo_root)
    page_of.update({g: "guides/" + Path(g).name for g in guides})
    for figure in sorted((repo_root / "docs" / "figures").glob("*.png")):
        (docs / "figures").mkdir(exist_ok=True)
        shutil.copy(figure, docs / "figures" / figure.name)
        page_of[f"docs/figures/{figure.name}"] = f"figures/{figure.name}"
    # links between chapters (notebooks/NN.ipynb from notebooks/MM.ipynb) and to the pages
    chapter_links = {k: ("../" + v if not v.startswith("chapters/") else v.split("/", 1)[1])
                     for k, v in page_of.items()}

    # chapters 07 and 08 open with the committed run's bottom line; a smoke book's chapters
    # open with the pipeline-check warning instead and print no verdict
    committed = bottom_line.committed_run(run_dir, repo_root)
    nav_chapters = []
    for name in names:
        header = pages.chapter_header(name, profile, commit, timings, repo_url)
        extra = _mesh_block(notebooks_dir, name, chapters_dir, mesh_views)
        text = pages.chapter_markdown(
            executed[name], chapters_dir / name, header, extra,
            rewrite=lambda md: pages.rewrite_links(md, chapter_links, "notebooks", repo_url),
            banner=pages.pipeline_check_warning(profile)
            or bottom_line.chapter_box(name, committed, repo_root))
        write_page(chapters_dir / f"{name}.md", text)
        nav_chapters.append({pages.chapter_title(executed[name]): f"chapters/{name}.md"})

    built_at = _git_commit(repo_root)
    about = "\n".join([
        '!!! info "About this book"',
        "",
        f"    Each chapter is a notebook of `notebooks/` as executed by the run "
        f"`{_shown_path(run_dir, repo_root)}` (profile `{profile}`, "
        f"{f'notebooks run at commit `{commit}`' if commit else 'commit of the run not recorded'}), "
        f"with its figures; the book was built at commit `{built_at}` by `make book`. "
        "Launch links at the top of each chapter open it on Binder or locally.",
        "",
    ])
    write_page(docs / "index.md", pages.landing_markdown(readme, page_of, repo_url, about))
    write_page(docs / "results.md", pages.results_markdown(repo_root, run_dir, page_of, repo_url))
    nav = [{"Home": "index.md"}, {"Chapters": nav_chapters}]
    if guides:
        (docs / "guides").mkdir()
        guide_links = {k: (v.split("/", 1)[1] if v.startswith("guides/") else "../" + v)
                       for k, v in page_of.items()}
        nav_guides = []
        for guide in guides:
            text = (repo_root / guide).read_text(encoding="utf-8")
            write_page(docs / page_of[guide], pages.rewrite_links(text, guide_links, "docs", repo_url))
            title = re.search(r"^#\s+(.+)$", text, re.M)
            nav_guides.append({title.group(1).strip() if title else Path(guide).stem: page_of[guide]})
        nav.append({"Guides": nav_guides})
    nav.append({"Results": "results.md"})
    if card is not None:
        text = pages.rewrite_links(card.read_text(encoding="utf-8"), page_of,
                                   card.parent.relative_to(repo_root).as_posix(), repo_url)
        write_page(docs / "model-card.md", text)
        nav.append({"Model card": "model-card.md"})

    api_dir = docs / "api"
    api_dir.mkdir()
    modules = pages.api_modules(repo_root / "deeptree")
    write_page(api_dir / "index.md",
               "# API reference\n\nGenerated from the docstrings of the package `deeptree` "
               "(numpydoc style) by mkdocstrings.\n\n"
               + "\n".join(f"- [`{m}`]({m}.md)" for m in modules) + "\n")
    nav_api = [{"Overview": "api/index.md"}]
    for module in modules:
        write_page(api_dir / f"{module}.md", f"# `{module}`\n\n::: {module}\n")
        nav_api.append({module: f"api/{module}.md"})
    nav.append({"API reference": nav_api})
    return nav


def mkdocs_config(docs: Path, site: Path, nav: list, repo_root: Path = REPO_ROOT) -> dict:
    """The MkDocs configuration of the book (a plain dict, written as YAML-compatible JSON).

    Parameters
    ----------
    docs, site : Path
        MkDocs' ``docs_dir`` and ``site_dir``.
    nav : list
        From :func:`stage_pages`.
    repo_root : Path
        Where mkdocstrings finds the package.

    Returns
    -------
    dict
    """
    return {
        "site_name": "DeepTree: the book",
        "site_description": "Airway tree segmentation in chest CT, step by step",
        "docs_dir": str(docs),
        "site_dir": str(site),
        "use_directory_urls": False,
        "strict": True,
        "theme": {"name": "material", "font": False,
                  "features": ["navigation.sections", "navigation.footer", "toc.follow"]},
        "plugins": [
            "search",
            "offline",
            {"mkdocstrings": {"handlers": {"python": {
                "paths": [str(repo_root)],
                "options": {"docstring_style": "numpy", "show_source": False,
                            "show_root_heading": False, "heading_level": 2,
                            "members_order": "source", "show_if_no_docstring": False},
            }}}},
        ],
        "markdown_extensions": [
            "admonition", "tables", "attr_list", "md_in_html",
            {"toc": {"permalink": True}},
            "pymdownx.highlight", "pymdownx.superfences",
        ],
        # Material's offline plugin loads this shim from a CDN unless a local copy is named.
        "extra": {"polyfills": ["assets/iframe-worker-shim.js"]},
        "extra_css": ["assets/book.css"],
        "extra_javascript": ["assets/mesh-viewer.js"],
        "validation": {"links": {"not_found": "warn", "unrecognized_links": "warn",
                                 "absolute_links": "warn"}},
        "nav": nav,
    }


def build_book(out: str | os.PathLike, run_dir: str | os.PathLike | None = None,
               repo_root: str | os.PathLike = REPO_ROOT, mesh_views: dict | None = None) -> Path:
    """Build the static site of the book.

    Parameters
    ----------
    out : path-like
        The site folder (replaced when the build succeeds; left as it was otherwise).
    run_dir : path-like, optional
        The run to show: a run folder or a published ``results/`` folder; default
        :func:`deeptree.book.runs.select_run` (the latest complete cpu run, else the latest
        published one, else the latest smoke run).
    repo_root : path-like
        The repository root.
    mesh_views : dict, optional
        Chapter -> (mask files in the run folder, caption with ``{case}``) for the 3D views;
        default :data:`MESH_VIEWS`.

    Returns
    -------
    Path
        ``out``, holding ``index.html``.

    Raises
    ------
    InputError
        No complete run, or a missing executed notebook.
    RuntimeError
        MkDocs failed (its output is in the message).
    """
    repo_root = Path(repo_root).resolve()
    out = Path(out).resolve()
    names = [p.stem for p in sorted((repo_root / "notebooks").glob(runs.NOTEBOOK_GLOB))]
    run = Path(run_dir).resolve() if run_dir else runs.select_run(repo_root, names)
    if not run.is_dir():
        raise InputError(f"{run}: run folder not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".book-", dir=out.parent) as tmp:
        docs, site = Path(tmp) / "docs", Path(tmp) / "site"
        nav = stage_pages(run, docs, repo_root, mesh_views)
        config = Path(tmp) / "mkdocs.yml"
        config.write_text(json.dumps(mkdocs_config(docs, site, nav, repo_root), indent=1))
        result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet",
                                 "-f", str(config)], cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0 or not (site / "index.html").is_file():
            raise RuntimeError(f"mkdocs build failed for {run}:\n{result.stdout}{result.stderr}")
        old = Path(tmp) / "old-site"
        if out.exists():
            os.replace(out, old)
        os.replace(site, out)
    print(f"book: {out / 'index.html'} (from {run})")
    return out
