"""The state:, logging: and http: sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from .sample import refused


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("url: sqlite:///", "url: mysql:///"),
            "state.url",
            "must be sqlite",
            id="unsupported state url",
        ),
    ],
)
def test_broken_state_names_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A state URL of an unsupported database is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message
