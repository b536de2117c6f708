"""The whole file: the implicit route, and names that must be unique or must exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from .sample import GOOD, load, refused


def test_absent_routes_send_everything_everywhere(tmp_path: Path) -> None:
    """Without a routes key, one implicit route reaches every sink."""
    text = GOOD.split("routes:")[0]
    config = load(tmp_path, text)
    assert [["hooks", "console"]] == [r.sinks for r in config.effective_routes]


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("sinks: [hooks, console]", "sinks: [hooks, pager]"),
            "routes[0].sinks[1]",
            "unknown sink 'pager'",
            id="unknown sink in a route",
        ),
        pytest.param(
            ("name: console", "name: hooks"),
            "sinks[1].name",
            "duplicate sink name",
            id="duplicate sink",
        ),
    ],
)
def test_broken_references_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A name given twice, or a route to a sink that does not exist, is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message
