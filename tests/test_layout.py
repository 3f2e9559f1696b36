"""The test suite's own shape: shared helpers live in support/, never in a test module."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


class TestLayout:
    def test_no_test_module_imports_another(self) -> None:
        """Every ``test_*.py`` imports only support modules, fakes and fixtures, never a test."""
        offenders = sorted(
            f"{path.relative_to(TESTS)} imports {name}"
            for path in TESTS.rglob("test_*.py")
            for name in _imported_modules(path)
            if name.rpartition(".")[2].startswith("test_")
        )
        assert offenders == []

    def test_every_test_says_what_it_proves(self) -> None:
        """Each test function has a one-sentence behaviour docstring."""
        missing = sorted(
            f"{path.relative_to(TESTS)}::{node.name}"
            for path in TESTS.rglob("test_*.py")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
            and not ast.get_docstring(node)
        )
        assert missing == []
