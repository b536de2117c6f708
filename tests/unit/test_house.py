"""The house rules that no linter checks: module size and a docstring per stage."""

from __future__ import annotations

import ast

from tests import REPO

PACKAGE = REPO / "watcher"
MAX_LINES = 400  # docs/architecture.md: past it, a module mixes concepts


def _ours(name: str) -> list[str]:
    """Paths (from the repository root) of the package's files called ``name`` (a glob),
    migrations aside: an applied migration is never rewritten."""
    return sorted(
        str(p.relative_to(REPO))
        for p in PACKAGE.rglob(name)
        if "migrations" not in p.relative_to(PACKAGE).parts
    )


def test_no_module_is_over_the_size_limit() -> None:
    """Every module of the package stays within 400 lines."""
    sizes = {path: len((REPO / path).read_text().splitlines()) for path in _ours("*.py")}
    assert {} == {path: n for path, n in sizes.items() if n > MAX_LINES}


def test_every_package_says_what_it_owns() -> None:
    """Each package's ``__init__`` has a docstring (what the stage owns, what it imports)."""
    silent = [
        p for p in _ours("__init__.py") if not ast.get_docstring(ast.parse((REPO / p).read_text()))
    ]
    assert [] == silent
