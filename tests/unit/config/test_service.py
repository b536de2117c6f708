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


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?sslmode=sometimes", "sslmode must be one of disable, allow, prefer"),
        ("?ssl=true", "unknown connection parameter 'ssl'"),
        ("?search_path=x", "unknown connection parameter 'search_path'"),
    ],
)
def test_postgres_url_parameters_are_checked(query: str, error: str) -> None:
    """libpq's parameters that asyncpg reads are accepted; anything else is refused by
    check-config rather than breaking every command later (issue 15, item 17)."""
    from pydantic import ValidationError

    from watcher.config.service import StateConfig

    with pytest.raises(ValidationError, match=error):
        StateConfig(url=f"postgresql://w@db/watcher{query}")
    ok = "postgresql://w@db/watcher?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    assert StateConfig(url=ok).url == ok
