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
