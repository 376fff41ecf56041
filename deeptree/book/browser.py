"""Check the built book in headless Chromium, as a reader opens it from a folder.

Every page is opened from ``file://``. A page fails on: a console error or an uncaught
script error; a request that failed or that left the folder (a CDN); a broken image; more
than :data:`MAX_PAGE_BYTES` of HTML, scripts and styles; an internal link (``<a href>``) to a
file that is not in the site or to an anchor that is not on its page; an interactive 3D view
whose canvas stayed empty or does not turn when dragged; a table wider than its container
that cannot scroll sideways; a literal placeholder left in its text (:func:`find_placeholders`);
and, for a chapter, figures that are all blank (:func:`is_blank`: every image one colour).
The landing page and each chapter (and results and model card pages) are saved as full-page
screenshots.

Needs the ``playwright`` package (the ``book`` extra) and a Chromium executable: Debian's
``chromium`` package (installed by ``scripts/system-deps.sh``); playwright's own browser
download is never used.
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

#: Browser executables tried in order when none is given.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Pages not opened (MkDocs' 404 page is only served by web servers).
SKIPPED_PAGES = ("404.html",)

#: Longest side of a screenshot (px): taller pages are cut there.
MAX_SCREENSHOT_HEIGHT = 12_000

#: Most bytes of a page's HTML, scripts and style sheets together (images not counted): the
#: 3D view must stay small.
MAX_PAGE_BYTES = 1_000_000

#: Share of a 3D view's canvas pixels that must differ from its background.
MIN_DRAWN_FRACTION = 0.01

#: Text that stands in for content not written yet: ``SOME_PLACEHOLDER``, ``TODO``, a template
#: field ``{{ ... }}`` left unfilled.
PLACEHOLDER = re.compile(r"\b[A-Z0-9_]*PLACEHOLDER[A-Z0-9_]*\b|\bTODO\b|\{\{[^{}\n]*\}\}")

#: Largest standard deviation of an image's pixel values (0-255 levels, all RGB channels
#: together) that counts as blank: one colour, no figure drawn.
MAX_BLANK_STD = 1.0

#: Tags whose text is not the page's prose: scripts, styles, and code blocks (code may hold
#: ``{{`` legitimately).
_NOT_TEXT = ("script", "style", "pre")


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


class _Page(HTMLParser):
    """The prose text (outside :data:`_NOT_TEXT`) and the image sources of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.images: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _NOT_TEXT:
            self._skip += 1
        elif tag == "img":
            self.images += [v for k, v in attrs if k == "src" and v]

    def handle_endtag(self, tag):
        if tag in _NOT_TEXT and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def find_placeholders(html: str) -> list[str]:
    """The literal placeholders (:data:`PLACEHOLDER`) in a page's prose, in order.

    Parameters
    ----------
    html : str
        The page's HTML. Scripts, styles and code blocks (``<pre>``) are not prose.

    Returns
    -------
    list of str
        Each placeholder as written, e.g. ``["BOOK_TIMING_PLACEHOLDER", "{{ date }}"]``.
    """
    parser = _Page()
    parser.feed(html)
    return PLACEHOLDER.findall("".join(parser.text))


def is_blank(pixels: np.ndarray, max_std: float = MAX_BLANK_STD) -> bool:
    """Whether an image is blank: its pixel values vary by at most ``max_std``.

    Parameters
    ----------
    pixels : ndarray, shape (H, W) or (H, W, C), uint8 (0-255) or float
        The decoded image (RGB or grey).
    max_std : float
        Largest standard deviation of all values together that counts as blank (levels).

    Returns
    -------
    bool
    """
    return pixels.size == 0 or float(np.asarray(pixels, dtype=np.float64).std()) <= max_std


def blank_chapter_figures(site: str | os.PathLike, page: str) -> str | None:
    """A problem line when every figure of a page is blank, else None.

    The images (``<img src>`` of files in the site that Pillow decodes; SVG and remote images
    are not counted) are decoded from the site folder, composited on white.

    Parameters
    ----------
    site : path-like
        The built site.
    page : str
        The page, relative to ``site`` (e.g. ``chapters/05_stage1_training.html``).

    Returns
    -------
    str or None
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(site) / page
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    blank, decoded = 0, 0
    for src in parser.images:
        image = path.parent / unquote(urlsplit(src).path)
        if urlsplit(src).scheme or not image.is_file():
            continue  # remote (reported by the browser) or missing (a broken image)
        try:
            with Image.open(image) as im:
                rgba = im.convert("RGBA")
        except (UnidentifiedImageError, OSError):
            continue
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        decoded += 1
        blank += is_blank(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    if decoded and blank == decoded:
        return f"all {decoded} figures are blank (one colour each)"
    return None


_CUT_TABLES = """(() => Array.from(document.querySelectorAll('article table')).map(t => {
    const article = t.closest('article');
    const name = Array.from(t.querySelectorAll('th')).slice(0, 3)
        .map(h => h.textContent.trim()).join(' | ') || 'a table';
    for (let e = t; e && e !== article; e = e.parentElement) {
        const s = getComputedStyle(e);
        if (['auto', 'scroll'].includes(s.overflowX) && !s.display.startsWith('table')) return null;
        if (['hidden', 'clip'].includes(s.overflowX) && e.scrollWidth > e.clientWidth + 1)
            return `${name}: ${e.scrollWidth} px cut at ${e.clientWidth} px, no way to scroll`;
    }
    const width = t.getBoundingClientRect().width;
    return width > article.clientWidth + 1 ?
        `${name}: ${Math.round(width)} px wider than the page (${article.clientWidth} px), no way to scroll` : null;
}).filter(x => x))()"""


def find_chromium(executable: str | None = None) -> str:
    """Path of the Chromium executable to drive.

    Parameters
    ----------
    executable : str, optional
        A path or name; default: the first of :data:`CHROMIUM_NAMES` on ``PATH``.

    Returns
    -------
    str

    Raises
    ------
    RuntimeError
        When none is found (names the Debian package to install).
    """
    for name in ([executable] if executable else CHROMIUM_NAMES):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise RuntimeError(
        f"no Chromium found ({executable or ', '.join(CHROMIUM_NAMES)}): install Debian's "
        "`chromium` package (scripts/system-deps.sh does it as root)")


_CANVAS_PIXELS = """(i) => {
    const c = document.querySelectorAll('.deeptree-mesh canvas')[i];
    return c ? c.toDataURL() : '';
}"""


def _turns_when_dragged(page, index: int) -> bool:
    """Drag across the ``index``-th 3D view and tell whether its picture changed."""
    canvas = page.locator(".deeptree-mesh canvas").nth(index)
    if canvas.count() == 0:
        return False
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    before = page.evaluate(_CANVAS_PIXELS, index)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 30, steps=4)
    page.mouse.up()
    page.wait_for_timeout(100)
    changed = page.evaluate(_CANVAS_PIXELS, index) != before
    page.evaluate("window.scrollTo(0, 0)")
    return changed


def screenshot_name(page: str) -> str:
    """``chapters/01_synthetic_data.html`` -> ``chapters__01_synthetic_data.png``."""
    return page.removesuffix(".html").replace("/", "__") + ".png"


def _is_screenshot_page(page: str) -> bool:
    return not page.startswith(("api/", "assets/", "search/"))


def check_site(site: str | os.PathLike, screenshots: str | os.PathLike, *,
               chromium: str | None = None, width: int = 1280, height: int = 900,
               timeout_ms: int = 30_000) -> list[str]:
    """Open every page of a built site in headless Chromium and list what is wrong.

    Parameters
    ----------
    site : path-like
        The built site (with ``index.html``).
    screenshots : path-like
        Folder for the screenshots (created): one PNG per landing, chapter, results and
        model-card page, named by :func:`screenshot_name`.
    chromium : str, optional
        Browser executable; default :func:`find_chromium`.
    width, height : int
        Viewport in CSS pixels.
    timeout_ms : int
        Longest wait for a page to load (ms).

    Returns
    -------
    list of str
        One line per problem, ``"<page>: <problem>"``; empty when every page is clean.

    Raises
    ------
    RuntimeError
        No ``index.html`` in ``site``, or no Chromium.
    """
    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    if not (site / "index.html").is_file():
        raise RuntimeError(f"{site}: no index.html (build the book first: make book)")
    shots = Path(screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    executable = find_chromium(chromium)
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                   if p.name not in SKIPPED_PAGES)
    pages.remove("index.html")
    pages.insert(0, "index.html")
    problems: list[str] = []
    ids_cache: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in ids_cache:
            parser = _Ids()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            ids_cache[path] = parser.ids
        return ids_cache[path]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        found: list[str] = []
        page.on("console", lambda m: found.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: found.append(f"script error: {e}"))
        # ERR_ABORTED: a request cut short by the next navigation (e.g. the favicon), not a
        # missing file (ERR_FILE_NOT_FOUND).
        page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "") else
                found.append(f"request failed: {r.url} ({r.failure})"))
        page.on("request", lambda r: None if r.url.startswith(
            ("file:", "data:", "blob:", "about:")) else found.append(
            f"request leaves the folder: {r.url}"))
        loaded: set[str] = set()
        page.on("request", lambda r: loaded.add(r.url) if r.url.startswith("file:") and
                r.resource_type in ("document", "script", "stylesheet") else None)
        for name in pages:
            found.clear()
            loaded.clear()
            page.goto((site / name).as_uri(), wait_until="load", timeout=timeout_ms)
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => i.getAttribute('src'))")
            found += [f"broken image: {src}" for src in broken]
            drawn = page.evaluate("""(() => Array.from(document.querySelectorAll(
                '.deeptree-mesh')).map(div => {
                  const c = div.querySelector('canvas');
                  if (!c) return 0;
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0;
                  for (let i = 0; i < d.length; i += 4) {
                    if (Math.abs(d[i] - d[0]) + Math.abs(d[i+1] - d[1]) + Math.abs(d[i+2] - d[2]) > 30) n++;
                  }
                  return n / (c.width * c.height);
                }))()""")
            found += [f"3D view {i} is empty ({fraction:.1%} of its pixels drawn)"
                      for i, fraction in enumerate(drawn) if fraction < MIN_DRAWN_FRACTION]
            found += [f"table {cut}" for cut in page.evaluate(_CUT_TABLES)]
            html = (site / name).read_text(encoding="utf-8", errors="replace")
            found += [f"literal placeholder: {text}" for text in find_placeholders(html)]
            if name.startswith("chapters/"):
                found += [line for line in [blank_chapter_figures(site, name)] if line]
            weight = sum(Path(unquote(urlsplit(u).path)).stat().st_size for u in loaded
                         if Path(unquote(urlsplit(u).path)).is_file())
            if weight > MAX_PAGE_BYTES:
                found.append(f"page weighs {weight / 1e6:.2f} MB of HTML, scripts and styles "
                             f"(at most {MAX_PAGE_BYTES / 1e6:.1f} MB)")
            hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]'))"
                                  ".map(a => a.href)")
            for href in sorted(set(hrefs)):
                parts = urlsplit(href)
                if parts.scheme != "file":
                    continue
                target = Path(unquote(parts.path))
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_file():
                    found.append(f"broken link: {href}")
                elif (parts.fragment and target.suffix == ".html"
                      and unquote(parts.fragment) not in ids_of(target)):
                    found.append(f"broken anchor: {href}")
                elif site not in target.resolve().parents:
                    found.append(f"link leaves the site: {href}")
            if _is_screenshot_page(name):
                full = page.evaluate("document.documentElement.scrollHeight")
                page.screenshot(path=str(shots / screenshot_name(name)),
                                clip={"x": 0, "y": 0, "width": width,
                                      "height": min(full, MAX_SCREENSHOT_HEIGHT)},
                                full_page=True)
            # after the screenshot, which shows each 3D view as it opens
            found += [f"3D view {i} does not turn when dragged"
                      for i in range(len(drawn)) if not _turns_when_dragged(page, i)]
            problems += [f"{name}: {line}" for line in found]
        browser.close()
    print(f"book check: {len(pages)} pages opened, {len(problems)} problems, "
          f"screenshots in {shots}")
    return problems

