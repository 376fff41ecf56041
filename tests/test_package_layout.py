"""The package's shape: no import circles, no ``deeptree`` import inside a function, no
module over ~700 lines.

The imports are read with :mod:`ast` (nothing is imported), so the test also guards modules
that need optional packages. One exception: a subcommand module of ``deeptree/cli/`` imports
the ``deeptree`` modules that need torch, scipy, scikit-image, matplotlib or napari inside
``run``, so that ``deeptree --help`` answers without loading them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deeptree"
MAX_LINES = 700
#: Third-party packages whose import makes a module "heavy" (see the module docstring): each
#: costs a few tenths of a second, which ``deeptree --help`` should not pay.
HEAVY = ("torch", "monai", "scipy", "skimage", "matplotlib", "napari")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(module-level imports, function-level imports) of a file: (imported module, line)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    # an `if TYPE_CHECKING:` or `try:` block at module level is still module level
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    outer, inner = [], []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from deeptree.viz import planes` imports the submodule deeptree.viz.planes
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        for name in names:
            (outer if id(node) in top_level else inner).append((name, node.lineno))
    return outer, inner


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _graph() -> dict[str, set[str]]:
    return {
        name: {m for m, _ in outer if m in MODULES and m != name}
        for name, (outer, _) in IMPORTS.items()
    }


def _parents(module: str) -> set[str]:
    """The packages Python imports before ``module`` (``a.b.c`` -> ``a``, ``a.b``)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & set(MODULES)


def _heavy_modules() -> set[str]:
    """Modules whose import loads a package of :data:`HEAVY`, directly, through another
    ``deeptree`` module, or through a package ``__init__`` on the way."""
    graph = {
        name: targets | {p for t in targets for p in _parents(t)} | _parents(name)
        for name, targets in _graph().items()
    }
    heavy = {
        name
        for name, (outer, _) in IMPORTS.items()
        if any(m.split(".")[0] in HEAVY for m, _ in outer)
    }
    changed = True
    while changed:
        changed = False
        for name, targets in graph.items():
            if name not in heavy and targets & heavy:
                heavy.add(name)
                changed = True
    return heavy


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_function_level_deeptree_imports():
    heavy = _heavy_modules()
    found = []
    for name, (_, inner) in IMPORTS.items():
        for module, line in inner:
            if module.split(".")[0] != "deeptree":
                continue
            if name.startswith("deeptree.cli.") and module in heavy:
                continue  # keeps `deeptree --help` free of torch (module docstring)
            found.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {module}")
    assert not found, "deeptree imports inside functions:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_length(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]}: {lines} lines (at most {MAX_LINES})"


def test_finds_a_cycle():
    # the checker itself: a -> b -> a is found, a tree is not
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


# --- benchmarks/: scripts at the top, raw outputs under records/, a results record a reader can use

BENCHMARKS = PACKAGE.parent / "benchmarks"
#: What may sit at the top of benchmarks/ besides *.py and *.sh scripts.
BENCHMARK_DOCS = {"RESULTS.md", "HISTORY.md", "README.md"}
RECORDS = "records"


def _strays(folder: Path) -> list[str]:
    """Entries of ``folder`` that are neither a script, the two records nor ``records/``."""
    strays = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue  # tool caches (an imported benchmark leaves __pycache__), never committed
        if entry.is_dir():
            if entry.name != RECORDS:
                strays.append(entry.name + "/")
        elif entry.suffix not in (".py", ".sh") and entry.name not in BENCHMARK_DOCS:
            strays.append(entry.name)
    return strays


def test_benchmarks_holds_only_scripts_and_records():
    """A raw output (json, log, csv, png, a table) belongs under benchmarks/records/."""
    assert _strays(BENCHMARKS) == []
    assert (BENCHMARKS / RECORDS).is_dir()


def test_a_stray_output_or_data_folder_is_found(tmp_path):
    (tmp_path / "bench_x.py").write_text("")
    (tmp_path / "gpu_session.sh").write_text("")
    (tmp_path / "RESULTS.md").write_text("")
    (tmp_path / RECORDS).mkdir()
    (tmp_path / "__pycache__").mkdir()
    assert _strays(tmp_path) == []
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "curves.png").write_bytes(b"")
    (tmp_path / "notes.md").write_text("")
    (tmp_path / "cpu_threads").mkdir()
    assert _strays(tmp_path) == ["cpu_threads/", "curves.png", "notes.md", "run.json"]


def _named_paths(text: str) -> set[str]:
    """Repository paths that ``text`` names: ``benchmarks/...`` and links to ``records/...``."""
    named = set(re.findall(r"benchmarks/[\w./<>*-]*[\w/]", text))
    named |= {"benchmarks/" + p for p in re.findall(r"\]\((records/[\w./-]*)\)", text)}
    return named


@pytest.mark.parametrize("name", ["RESULTS.md", "HISTORY.md"])
def test_every_benchmarks_path_in_the_records_exists(name):
    text = (BENCHMARKS / name).read_text(encoding="utf-8")
    named = _named_paths(text)
    assert any(p.startswith("benchmarks/records/") for p in named)
    missing = sorted(p for p in named if not (PACKAGE.parent / p).exists())
    assert missing == []


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def _sections(text: str) -> dict[str, str]:
    """Anchor -> the text of the heading's section (up to the next heading of its level or
    above), for every heading outside code blocks."""
    lines, heads, fence = text.split("\n"), [], False
    for i, line in enumerate(lines):
        fence ^= line.startswith("```")
        match = re.match(r"^(#+) (.*)", line)
        if match and not fence:
            heads.append((i, len(match.group(1)), match.group(2)))
    sections = {}
    for n, (i, level, heading) in enumerate(heads):
        end = next((j for j, lv, _ in heads[n + 1 :] if lv <= level), len(lines))
        sections[_slug(heading)] = "\n".join(lines[i:end])
    return sections


def _index_rows(text: str) -> list[list[str]]:
    """The table rows of RESULTS.md's "Current figures" (cells stripped), header rows left out."""
    index = _sections(text)["current-figures"]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in index.split("\n")
        if line.startswith("| ")
    ]
    return [r for r in rows if r[0] != "benchmark"]


def _unmatched_figures(row: list[str], sections: dict[str, str]) -> list[str]:
    """Numbers of an index row's figure cell that its linked section does not hold, and the
    scripts of its command cell that the section does not name."""
    anchor = re.search(r"\]\(#([^)]+)\)", row[5])
    if anchor is None or anchor.group(1) not in sections:
        return [f"no section {row[5]}"]
    section = sections[anchor.group(1)]
    numbers = re.findall(r"\d+(?:[.,]\d+)*", row[2])
    scripts = re.findall(r"benchmarks/[\w.]+\.(?:py|sh)", row[3])
    return [x for x in numbers + scripts if x not in section]


def test_the_current_figures_are_copied_from_their_sections():
    """Every number of the index appears in the section it links to (no typed figure), and
    every script of its command is named there."""
    text = (BENCHMARKS / "RESULTS.md").read_text(encoding="utf-8")
    sections, rows = _sections(text), _index_rows(text)
    assert len(rows) >= 10 and all(len(r) == 6 for r in rows)
    assert {
        r[0]: _unmatched_figures(r, sections) for r in rows if _unmatched_figures(r, sections)
    } == {}


def test_a_typed_index_figure_is_found():
    sections = {"speed": "### Speed\n\nThe step took **2.29 s** with `benchmarks/bench_x.py`."}
    row = ["Speed", "a step", "2.29 s", "`benchmarks/bench_x.py`", "box", "[Speed](#speed)"]
    assert _unmatched_figures(row, sections) == []
    assert _unmatched_figures([*row[:2], "2.3 s", *row[3:]], sections) == ["2.3"]
    assert _unmatched_figures([*row[:3], "`benchmarks/bench_y.py`", *row[4:]], sections) == [
        "benchmarks/bench_y.py"
    ]
    assert _unmatched_figures([*row[:5], "[Speed](#sped)"], sections) == [
        "no section [Speed](#sped)"
    ]


def test_bench_cpu_threads_records_its_section_under_the_thread_policy(tmp_path):
    """``bench_cpu_threads.py --record`` puts a new run above its marker, not at the file's end."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_cpu_threads", BENCHMARKS / "bench_cpu_threads.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (BENCHMARKS / "RESULTS.md").read_text(encoding="utf-8").count(module.RECORD_MARKER) == 1
    record = tmp_path / "RESULTS.md"
    record.write_text(f"## Threads\n\nold run\n\n{module.RECORD_MARKER}\n\n## GPU\n\nh200\n")
    module.append_results("#### CPU thread policy (new)\n\nnew run\n", record)
    text = record.read_text()
    assert text.index("old run") < text.index("new run") < text.index(module.RECORD_MARKER)
    assert text.index(module.RECORD_MARKER) < text.index("## GPU")
    assert list(tmp_path.iterdir()) == [record]
    record.write_text("## GPU\n")
    with pytest.raises(SystemExit, match="RESULTS.md"):
        module.append_results("new\n", record)
    assert record.read_text() == "## GPU\n"


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at module level (inside ``if``/``try`` blocks too)."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(), filename=str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.If, ast.Try)):
            body += [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            body += [n for h in getattr(node, "handlers", []) for n in h.body]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _missing_imports(script: Path, modules: dict[str, Path]) -> list[str]:
    """``module.name`` for each name ``script`` takes from a module of ``modules`` (a
    ``from m import name``, or ``alias.name`` after ``from package import m`` /
    ``import m as alias``) that the module does not define: a rename the script missed."""
    tree = ast.parse(script.read_text(), filename=str(script))
    aliases, missing = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in modules:
                    aliases[a.asname or a.name] = sub
                elif node.module in modules and a.name not in _top_level_names(
                    modules[node.module]
                ):
                    missing.append(sub)
        elif isinstance(node, ast.Import):
            aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in modules}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr not in _top_level_names(modules[module]):
                missing.append(f"{module}.{node.attr}")
    return sorted(set(missing))


def test_every_name_a_benchmark_takes_from_the_package_exists():
    """The benchmark scripts are not run in CI; a renamed or removed package function must
    not break them silently (``bench_stage2_data.py`` imported a helper removed by the package-layout change)."""
    modules = MODULES | {"_common": BENCHMARKS / "_common.py"}
    missing = {s.name: _missing_imports(s, modules) for s in sorted(BENCHMARKS.glob("*.py"))}
    assert {name: m for name, m in missing.items() if m} == {}


def test_a_name_missing_from_a_module_is_found(tmp_path):
    (tmp_path / "helpers.py").write_text(
        "import os\nLIMIT = 3\ndef kept():\n    pass\n"
        "try:\n    from x import y\nexcept ImportError:\n    y = None\n"
    )
    modules = {"pkg.helpers": tmp_path / "helpers.py"}
    script = tmp_path / "bench.py"
    script.write_text("from pkg.helpers import kept, LIMIT, y, os\n")
    assert _missing_imports(script, modules) == []
    script.write_text(
        "from pkg.helpers import kept, _gone\nfrom pkg import helpers as h\nh.kept(); h.renamed()\n"
    )
    assert _missing_imports(script, modules) == ["pkg.helpers._gone", "pkg.helpers.renamed"]
