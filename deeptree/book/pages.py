"""The Markdown pages of the book, made from an executed run, the README and ``results/``.

Every figure on a page comes from a file: notebook outputs from the executed notebooks of the
run, run times as :mod:`deeptree.book.runs` collects them, tables from ``results/*/tables.md``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

from deeptree.book.runs import (
    PIPELINE_CHECK_PROFILES,
    TIMED_PROFILES,
    Timing,
    format_seconds,
    parse_summary,
    run_summary,
)
from deeptree.io import InputError

#: Files that hold a model card, looked up in this order (the first found is published).
MODEL_CARD_NAMES = ("MODEL_CARD.md", "model_card.md", "docs/MODEL_CARD.md", "docs/model_card.md",
                    "deeptree/weights/MODEL_CARD.md",
                    "results/MODEL_CARD.md", "results/model_card.md")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MD_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
# an image from the web (e.g. the README's Binder badge), linked or not: the book loads nothing
# from outside its folder, so it keeps the image's text (and its link)
_LINKED_WEB_IMAGE = re.compile(r"\[!\[([^\]]*)\]\(https?:[^)\s]*\)\]\(([^)\s]+)\)")
_WEB_IMAGE = re.compile(r"!\[([^\]]*)\]\(https?:[^)\s]*\)")


# --------------------------------------------------------------------------------------------
# links
# --------------------------------------------------------------------------------------------
def repository_url(repo_root: str | os.PathLike) -> str | None:
    """The GitHub URL of the ``origin`` remote (``https://github.com/OWNER/NAME``), or None."""
    try:
        out = subprocess.run(["git", "remote", "get-url", "origin"], cwd=repo_root,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.match(r"(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?$", out)
    return f"https://github.com/{match.group(1)}" if match else None


def rewrite_links(markdown: str, page_of: dict[str, str], source_dir: str,
                  repo_url: str | None) -> str:
    """Point the relative links of a repository Markdown file at the book's pages.

    Parameters
    ----------
    markdown : str
    page_of : dict of str -> str
        Repository path (e.g. ``notebooks/00_overview.ipynb``) -> book page path relative to
        the page being written (e.g. ``chapters/00_overview.md``).
    source_dir : str
        Folder of the Markdown file in the repository ('' for the root), to resolve its
        relative links.
    repo_url : str or None
        Repository URL: other relative links point there; without it they become plain
        code text, so that the book has no broken link.

    Returns
    -------
    str
        An image from the web (a badge) is replaced by its text, linked where it was linked:
        the book loads nothing from outside its folder.
    """
    markdown = _WEB_IMAGE.sub(r"\1", _LINKED_WEB_IMAGE.sub(r"[\1](\2)", markdown))

    def replace(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"[a-z]+:|#|/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = os.path.normpath(os.path.join(source_dir, path)).replace(os.sep, "/")
        if repo_path in page_of:
            return f"{bang}[{text}]({page_of[repo_path]}{'#' + anchor if anchor else ''})"
        if repo_url and not bang:
            return f"[{text}]({repo_url}/blob/HEAD/{repo_path})"
        return text if text.startswith("`") else f"{text} (`{repo_path}`)"

    return _MD_LINK.sub(replace, markdown)


# --------------------------------------------------------------------------------------------
# chapters
# --------------------------------------------------------------------------------------------
def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fence(text: str, language: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}"


def _clean_stream(text: str) -> str:
    """Strip ANSI colours and keep what a terminal shows of carriage-return progress bars."""
    text = _ANSI.sub("", text)
    return "\n".join(line.split("\r")[-1] for line in text.split("\n"))


def _math_to_mathml(markdown: str) -> str:
    """Replace ``$...$`` and ``$$...$$`` TeX by MathML (rendered by the browser, no script)."""
    from latex2mathml.converter import convert

    def block(match: re.Match) -> str:
        return convert(match.group(1).strip(), display="block")

    def inline(match: re.Match) -> str:
        # In a span: Markdown takes a line that starts with <math> for a raw HTML block.
        return f'<span class="math">{convert(match.group(1).strip())}</span>'

    markdown = re.sub(r"\$\$(.+?)\$\$", block, markdown, flags=re.S)
    return re.sub(r"(?<![\\$])\$([^$\n]+?)\$", inline, markdown)


def chapter_title(notebook: str | os.PathLike) -> str:
    """Short title of a notebook for the navigation: its first heading up to a colon.

    ``"# 01 · Synthetic airway CT: procedural trees"`` -> ``"01 · Synthetic airway CT"``;
    the file name when the notebook has no heading.
    """
    notebook = Path(notebook)
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{notebook}: not a readable notebook ({err})") from err
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            match = re.search(r"^#\s+(.+)$", _text(cell.get("source", "")), re.M)
            if match:
                return match.group(1).split(":")[0].strip()
    return notebook.stem


def _learn_list_end(markdown: str) -> int | None:
    """Index just after the list under "What you will learn", or None when absent."""
    head = re.search(r"\*\*What you will learn\*\*\s*\n\s*\n", markdown)
    if not head:
        return None
    lines, pos = markdown[head.end():].split("\n"), head.end()
    for line in lines:
        if line.strip() and not re.match(r"\s*([*+-]|\d+\.)\s|\s{2,}\S", line):
            return pos
        pos += len(line) + 1
    return len(markdown)


def pipeline_check_warning(profile: str) -> str:
    """The admonition that opens every chapter of a book built from a smoke run.

    Parameters
    ----------
    profile : str
        Profile of the run whose outputs the chapter shows.

    Returns
    -------
    str
        Markdown (an admonition) for :data:`PIPELINE_CHECK_PROFILES`, else ``""``.
    """
    if profile not in PIPELINE_CHECK_PROFILES:
        return ""
    return "\n".join([
        '!!! warning "A pipeline check: untrained models, numbers that mean nothing"',
        "",
        f"    This chapter shows a run with profile `{profile}`: tiny models trained for a few "
        "iterations, i.e. untrained. Its figures only show that every step runs end to end; "
        "its numbers mean nothing, and no conclusion about the method can be drawn from them. "
        "The results of full runs are on the Results page; `make book` builds the book of the "
        "committed cpu run.",
        "",
    ])


def chapter_header(name: str, profile: str, commit: str | None, timings: dict[str, dict[str, Timing]],
                   repo_url: str | None) -> str:
    """The box that follows "What you will learn": run times and launch links.

    Parameters
    ----------
    name : str
        Notebook name without extension.
    profile : str
        Profile of the run whose outputs the chapter shows.
    commit : str or None
        Commit the run executed (None: not recorded).
    timings : dict
        From :func:`deeptree.book.runs.collect_timings`.
    repo_url : str or None
        GitHub URL for the Binder link.

    Returns
    -------
    str
        Markdown (an admonition).
    """
    times = []
    for prof in TIMED_PROFILES:
        timing = timings.get(prof, {}).get(name)
        if timing is None:
            if prof != "smoke":
                times.append(f"**{prof}**: not measured yet")
        else:
            times.append(f"**{prof}**: {format_seconds(timing.seconds)} "
                         f"(`{timing.source}`, {timing.when[:10]})")
    path = f"notebooks/{name}.ipynb"
    if repo_url:
        owner_name = repo_url.removeprefix("https://github.com/")
        binder = (f"[launch on Binder](https://mybinder.org/v2/gh/{owner_name}/HEAD"
                  f"?labpath={quote(path, safe='')}) (the environment of `binder/`)")
    else:
        binder = ("on [mybinder.org](https://mybinder.org), enter this repository's URL and open "
                  f"`{path}` (the environment of `binder/`)")
    lines = [
        '!!! abstract "Run this chapter"',
        "",
        "    Time to run the whole notebook in a fresh kernel: " + "; ".join(times) + ".",
        "",
        f"    - **Binder**: {binder}.",
        f"    - **Run locally** (from the repository root): `make reproduce NOTEBOOKS={path}` "
        f"(profile cpu; add `PROFILE=gpu` on a GPU), or interactively: "
        f"`make setup && .venv/bin/jupyter lab {path}`.",
        "",
        f"    The outputs below come from a run with profile `{profile}`"
        + (f" at commit `{commit}`." if commit else " (commit not recorded)."),
        "",
    ]
    return "\n".join(lines)


def chapter_markdown(notebook: str | os.PathLike, image_dir: str | os.PathLike,
                     header: str, extra: str = "", rewrite=None, banner: str = "") -> str:
    """One executed notebook as a Markdown page, its image outputs written as PNG files.

    Markdown cells are kept (TeX math becomes MathML); code cells become Python blocks,
    followed by their outputs: text in plain blocks, PNG images as files in ``image_dir``
    (linked by its folder name), HTML and Markdown as they are, interactive widgets as a
    note (they need a kernel). The cell papermill injects (``injected-parameters``, with the
    run's local paths) is left out; the ``parameters`` cell stays.

    Parameters
    ----------
    notebook : path-like
        An executed ``.ipynb``.
    image_dir : path-like
        Folder for the images, beside the page (created).
    header : str
        Markdown placed after the "What you will learn" list (else after the first cell).
    extra : str
        Markdown placed after the header (e.g. the 3D view).
    rewrite : callable, optional
        ``rewrite(markdown) -> markdown`` applied to the notebook's Markdown cells (e.g. the
        links of :func:`rewrite_links`).
    banner : str
        Markdown placed right under the page's title (e.g. :func:`pipeline_check_warning`).

    Returns
    -------
    str
    """
    import base64

    notebook = Path(notebook)
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{notebook}: not a readable notebook ({err})") from err
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    parts: list[str] = []
    inserted = False
    n_images = 0
    for cell in cells:
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            source = _math_to_mathml(rewrite(source) if rewrite else source)
            if not inserted:
                end = _learn_list_end(source)
                end = len(source) if end is None else end
                source = source[:end].rstrip() + "\n\n" + header + "\n" + extra + "\n" + source[end:]
                if banner:
                    title = re.search(r"^#\s.*$", source, re.M)
                    cut = title.end() if title else 0
                    source = source[:cut] + "\n\n" + banner + "\n" + source[cut:]
                inserted = True
            parts.append(source)
            continue
        if cell.get("cell_type") != "code":
            continue
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        if source.strip():
            parts.append(_fence(source, "python"))
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                text = _clean_stream(_text(output.get("text", "")))
                if text.strip():
                    parts.append(_fence(text, "text"))
                continue
            if kind == "error":
                parts.append(_fence(_clean_stream("\n".join(output.get("traceback", []))), "text"))
                continue
            data = output.get("data", {})
            if "image/png" in data:
                n_images += 1
                image = image_dir / f"output_{n_images:02d}.png"
                image.write_bytes(base64.b64decode(_text(data["image/png"])))
                alt = _text(data.get("text/plain", "figure")).strip().replace("]", ")")[:80]
                parts.append(f"![{alt}]({image_dir.name}/{image.name})")
            elif "application/vnd.jupyter.widget-view+json" in data:
                parts.append("*(An interactive widget is here in the notebook: it needs a running "
                             "kernel, so launch the notebook to use it.)*")
            elif "text/markdown" in data:
                parts.append(_text(data["text/markdown"]))
            elif "text/html" in data:
                parts.append('<div class="deeptree-output" markdown="0">\n'
                             + _text(data["text/html"]) + "\n</div>")
            elif "text/plain" in data:
                parts.append(_fence(_clean_stream(_text(data["text/plain"])), "text"))
    if not inserted:
        parts.insert(0, banner + "\n" + header + "\n" + extra)
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# the other pages
# --------------------------------------------------------------------------------------------
def landing_markdown(readme: str, page_of: dict[str, str], repo_url: str | None,
                     about: str) -> str:
    """The landing page: the README (its story, the notebooks, the commands), links rewritten.

    Parameters
    ----------
    readme : str
        The README's Markdown.
    page_of : dict
        See :func:`rewrite_links` (paths relative to the landing page).
    repo_url : str or None
    about : str
        Markdown placed after the README's introduction (what run the book shows).

    Returns
    -------
    str
    """
    text = rewrite_links(readme, page_of, "", repo_url)
    first_section = text.find("\n## ")
    if first_section < 0:
        return text + "\n\n" + about + "\n"
    return text[:first_section] + "\n\n" + about + "\n" + text[first_section:]


def demote_headings(markdown: str, levels: int = 1) -> str:
    """Add ``levels`` ``#`` to every ATX heading outside fenced code."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def results_markdown(repo_root: str | os.PathLike, run_dir: Path, page_of: dict[str, str],
                     repo_url: str | None) -> str:
    """Results page: the newest ``results/*/tables.md`` (older: a link), the book run's summary.

    Parameters
    ----------
    repo_root : path-like
    run_dir : Path
        The run the book shows: its summary (:func:`run_summary`) closes the page; of a smoke
        run only its time table (its figures, and verdicts, come from untrained models).
    page_of : dict
        See :func:`rewrite_links`.
    repo_url : str or None

    Returns
    -------
    str
        Markdown.
    """
    root = Path(repo_root)
    parts = ["# Results", "", "The tables of the newest run that `make reproduce` wrote and "
             "that was committed under `results/`; earlier runs are history, linked below it."]
    tables = sorted(root.glob("results/*/tables.md"), reverse=True)
    if not tables:
        parts.append("\nNo results tables have been committed yet.")
    for i, path in enumerate(tables):
        folder = path.parent.relative_to(root).as_posix()
        text = rewrite_links(path.read_text(encoding="utf-8"), page_of, folder, repo_url)
        link = rewrite_links(f"[`{folder}/tables.md`](tables.md)", page_of, folder, repo_url)
        parts += ([f"\nEarlier run (history): {link}"] if i else
                  ["", f"## `{folder}`", "", demote_headings(text, 2)])
    summary = run_summary(run_dir)
    if summary is not None:
        text = shorten_table_rows(summary.read_text(encoding="utf-8"), summary.name)
        if parse_summary(summary)[0] in PIPELINE_CHECK_PROFILES:
            text = text.split("\n## ")[0].rstrip() + (
                "\n\nA pipeline check with untrained models: the figures of its notebooks mean "
                "nothing and are not shown here.")
        parts += ["", f"## This book's run: `{run_dir.name}`", "",
                  demote_headings(text, 2)]
    return "\n".join(parts) + "\n"


_CODE_SPAN = re.compile(r"(`+).*?\1")
# one asterisk: not part of ``**``, not escaped already
_SINGLE_STAR = re.compile(r"(?<![*\\])\*(?!\*)")
# a raw HTML block that Markdown leaves as it is (a notebook's HTML output, chapter_markdown)
_RAW_HTML = re.compile(r'<div\b[^>]*\bmarkdown="0"')


def _escape_stars(text: str, emphasis: bool) -> tuple[str, bool]:
    """``text`` with its word-ending asterisks escaped, and whether an emphasis is open after
    it (``emphasis``: whether one is open before it)."""
    out, last = [], 0
    for match in _SINGLE_STAR.finditer(text):
        i = match.start()
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if emphasis and not before.isspace():
            emphasis = False  # closes the emphasis opened before it: "*in italics*"
        elif not (before.isalnum() or before == "_"):
            emphasis = emphasis or not after.isspace()  # "*word" opens one; a bullet stays
        else:
            out.append(text[last:i] + "\\")  # "nnUNet*": printed as it is
            last = i
    return "".join(out) + text[last:], emphasis


def escape_word_asterisks(markdown: str) -> str:
    """Escape each single ``*`` that ends a word (``nnUNet*`` -> ``nnUNet\\*``).

    Python-Markdown reads ``nnUNet* ... nnUNet*`` as emphasis and drops both asterisks. A
    ``*`` after a letter, digit or ``_`` is escaped unless it closes an emphasis opened
    earlier in the paragraph (``*in italics*`` stays italic; ``a*b*c`` prints its
    asterisks); ``**bold**``, list bullets and escaped asterisks stay as they are. Code
    spans, fenced blocks and raw HTML blocks with ``markdown="0"`` (a notebook's HTML output)
    are left as they are. Every page of the book passes through it
    (:func:`deeptree.book.build.write_page`).

    Parameters
    ----------
    markdown : str

    Returns
    -------
    str
        The same text; applying it again changes nothing.
    """
    out, fenced, html_depth, emphasis = [], False, 0, False
    for line in markdown.split("\n"):
        fence = line.lstrip().startswith("```")
        if html_depth or (not fenced and _RAW_HTML.match(line.lstrip())):
            # the block ends where its <div>s close
            html_depth += len(re.findall(r"<div\b", line)) - len(re.findall(r"</div>", line))
            html_depth = max(html_depth, 0)
        elif fence or fenced:
            fenced = fenced != fence
        else:
            if not line.strip():
                emphasis = False  # an emphasis does not cross paragraphs
            pieces, last = [], 0
            for span in _CODE_SPAN.finditer(line):
                text, emphasis = _escape_stars(line[last : span.start()], emphasis)
                pieces += [text, span.group(0)]
                last = span.end()
            text, emphasis = _escape_stars(line[last:], emphasis)
            line = "".join(pieces) + text
        out.append(line)
    return "\n".join(out)


#: Longest table row of a run summary shown in the book (characters).
MAX_ROW_CHARS = 400


def shorten_table_rows(markdown: str, source: str, limit: int = MAX_ROW_CHARS) -> str:
    """Replace the value of each ``| name | value |`` row longer than ``limit`` by a note.

    A run's ``summary.md`` may hold whole arrays among its figures (megabytes in one row);
    the book shows their length and where to find them instead.

    Parameters
    ----------
    markdown : str
    source : str
        The file name the note points to.
    limit : int
        Longest row kept as it is (characters).

    Returns
    -------
    str
    """
    out = []
    for line in markdown.split("\n"):
        if len(line) > limit and line.startswith("|"):
            name = line.split("|")[1].strip()
            line = f"| {name} | ({len(line):,} characters: see `{source}` of the run) |"
        out.append(line)
    return "\n".join(out)


def find_model_card(repo_root: str | os.PathLike) -> Path | None:
    """The repository's model card (first of :data:`MODEL_CARD_NAMES` that exists), or None."""
    for name in MODEL_CARD_NAMES:
        path = Path(repo_root) / name
        if path.is_file():
            return path
    return None


def api_modules(package_dir: str | os.PathLike, package: str = "deeptree") -> list[str]:
    """Dotted names of the public modules and subpackages of a package, sorted.

    Found on disk (no import): ``.py`` files and folders with ``__init__.py``, skipping
    names that start with ``_`` (``__main__``, private helpers) and the ``book`` tooling.

    Parameters
    ----------
    package_dir : path-like
        The package folder, e.g. ``deeptree/``.
    package : str
        Its import name.

    Returns
    -------
    list of str
    """
    package_dir = Path(package_dir)
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if any(p.startswith("_") for p in parts[:-1]) or parts[0] == "book":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if not parts:
                continue
        elif parts[-1].startswith("_"):
            continue
        names.append(".".join((package, *parts)))
    return sorted(names)
