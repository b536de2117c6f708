"""Hostile config files are refused before they are expanded (issue 15, item 10): alias
bombs of any shape, recursive aliases, deep nesting and huge files; ordinary aliases and
merge keys still work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from watcher.config import load_config
from watcher.config.yamlsafe import MAX_BYTES, MAX_DEPTH, YamlLimitError, load_limited
from watcher.exceptions import ConfigError


def laughs(levels: int, width: int, *, flow: bool = True) -> str:
    """A "billion laughs": each level a list (or mapping) of ``width`` aliases of the last."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        if flow:
            lines.append(f"a{i}: &a{i} [{refs}]")
        else:
            pairs = ", ".join(f"k{j}: *a{i - 1}" for j in range(width))
            lines.append(f"a{i}: &a{i} {{{pairs}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("levels", "width", "flow"),
    [(9, 9, True), (20, 2, True), (6, 20, False), (4, 400, True)],
    ids=["classic", "deep-narrow", "mappings", "wide"],
)
def test_alias_bombs_are_refused_whatever_their_shape(levels: int, width: int, flow: bool) -> None:
    text = laughs(levels, width, flow=flow)
    assert len(text) < 20_000  # small files...
    with pytest.raises(YamlLimitError, match="expands to more than"):
        load_limited(text)  # ...that would expand to millions of values


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlLimitError, match="cycle"):
        load_limited("a: &a\n  b: *a\n")
    with pytest.raises(YamlLimitError, match="cycle"):
        load_limited("x: &x [1, [2, *x]]\n")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_deep_nesting_is_refused_without_a_recursion_error(depth: int) -> None:
    with pytest.raises(YamlLimitError, match="nested more than"):
        load_limited("[" * depth + "]" * depth)


def test_a_huge_file_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(YamlLimitError, match="at most"):
        load_limited("# " + "x" * MAX_BYTES + "\n")


def test_ordinary_aliases_and_merge_keys_still_load() -> None:
    text = (
        "base: &base {interval: 30s, on_start: baseline}\n"
        "sources:\n"
        "  - {<<: *base, name: a}\n"
        "  - {<<: *base, name: b}\n"
        "shared: &s [1, 2, 3]\n"
        "again: [*s, *s]\n"
    )
    data = load_limited(text)
    assert data["sources"][1] == {"interval": "30s", "on_start": "baseline", "name": "b"}
    assert data["again"] == [[1, 2, 3], [1, 2, 3]]
    assert load_limited("") is None


def test_load_config_names_the_file_and_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs(9, 9))
    with pytest.raises(ConfigError, match=r"bomb\.yaml: the document expands"):
        load_config(path)


def test_check_config_refuses_a_bomb_at_once_with_exit_2(tmp_path: Path) -> None:
    """Through the real command: one line, exit 2, no traceback, no frozen process."""
    path = tmp_path / "bomb.yaml"
    path.write_text("sources: []\n" + laughs(10, 10))
    done = subprocess.run(
        [sys.executable, "-m", "watcher", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "expands to more than" in done.stderr
    assert "Traceback" not in done.stderr
