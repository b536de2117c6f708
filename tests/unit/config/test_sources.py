"""The sources: section: a bad base URL is refused at its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from .sample import refused


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("base_url: http://127.0.0.1:8765", "base_url: http://127.0.0.1:99999"),
            "sources[0].base_url",
            "http:// or https://",
            id="source port out of range",
        ),
    ],
)
def test_broken_sources_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A source whose base URL is not a usable http(s) URL is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message
