"""The shape the codebase promises (docs/architecture.md), checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GARDEN = Path(__file__).resolve().parent.parent / "garden"
FRONT_ENDS = ("ui", "cli", "api")
FORBIDDEN_IN_FRONT_ENDS = ("garden.store", "garden.engine", "garden.data", "garden.models")
HEAVY = ("torch", "transformers", "vllm", "peft", "trl", "unsloth")
MAX_LINES = 500


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def sources(*parts: str) -> list[Path]:
    return sorted(GARDEN.joinpath(*parts).rglob("*.py"))


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_front_ends_call_only_services(front_end: str) -> None:
    offenders = {
        f"{path.relative_to(GARDEN)}: {module}"
        for path in sources(front_end)
        for module in imported_modules(path)
        if module.startswith(FORBIDDEN_IN_FRONT_ENDS)
    }
    assert not offenders, sorted(offenders)


def test_ui_never_imports_heavy_libraries() -> None:
    offenders = {
        f"{path.relative_to(GARDEN)}: {module}"
        for path in sources("ui")
        for module in imported_modules(path)
        if module.split(".")[0] in HEAVY
    }
    assert not offenders, sorted(offenders)


def test_only_the_ui_imports_gradio() -> None:
    offenders = {
        str(path.relative_to(GARDEN))
        for path in sources()
        if path.parts[len(GARDEN.parts)] != "ui"
        and any(module.split(".")[0] == "gradio" for module in imported_modules(path))
    }
    assert not offenders, sorted(offenders)


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {
        str(path.relative_to(GARDEN)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sources()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


# The module graph: no circles, and no floor imports one above it (the engine never imports the
# services or what sits on them; the services never import present or a front end) -----------

ENGINE = ("garden.engine", "garden.data", "garden.models", "garden.store", "garden.units")
ABOVE_THE_ENGINE = ("garden.services", "garden.present", "garden.ui", "garden.cli", "garden.api")


def module_name(path: Path) -> str:
    parts = path.relative_to(GARDEN.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def import_graph() -> dict[str, set[str]]:
    """Every ``garden`` module and the ``garden`` modules it imports, at any depth in the file
    (function-level imports included). ``from package import name`` counts as importing
    ``package.name`` when that is a module, else ``package``; relative imports are resolved."""
    paths = {module_name(path): path for path in sources()}
    packages = {module_name(path) for path in paths.values() if path.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name if name in packages else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_finds_the_modules_and_their_imports() -> None:
    graph = import_graph()
    assert "garden.services.chat" in graph["garden.cli.chat"]
    assert "garden.present" in graph["garden.cli.data"]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    assert strongly_connected(import_graph()) == []


@pytest.mark.parametrize(
    ("floor", "above"),
    [(ENGINE, ABOVE_THE_ENGINE), (("garden.services",), ABOVE_THE_ENGINE[1:])],
    ids=["engine", "services"],
)
def test_no_module_imports_a_floor_above_it(floor: tuple[str, ...], above: tuple[str, ...]) -> None:
    offenders = sorted(
        f"{name} -> {target}"
        for name, edges in import_graph().items()
        if _within(name, floor)
        for target in edges
        if _within(target, above)
    )
    assert offenders == []
