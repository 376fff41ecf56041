"""The package's shape: no import circles, no ``deeptree`` import inside a function, no
module over ~700 lines.

The imports are read with :mod:`ast` (nothing is imported), so the test also guards modules
that need optional packages. One exception: a subcommand module of ``deeptree/cli/`` imports
the ``deeptree`` modules that need torch, scipy, scikit-image, matplotlib or napari inside
``run``, so that ``deeptree --help`` answers without loading them.
"""

from __future__ import annotations

import ast
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
