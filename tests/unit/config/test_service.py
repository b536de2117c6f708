"""The state:, logging: and http: sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import load_config, secrets_of
from watcher.exceptions import ConfigError

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


def _http(tmp_path: Path, auth: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "sources: [{name: ft, kind: mistral-fine-tuning, api_key: kkkkkkkkkkkkkkkkkkkk}]\n"
        "sinks: [{name: console, kind: console}]\n"
        f"http: {{listen: '127.0.0.1:9464', auth: {auth}}}\n"
    )
    return path


def test_http_auth_from_secret_files(tmp_path: Path) -> None:
    """``token_file`` / ``password_file`` are read like every secret file; the values are
    secrets (never printed)."""
    (tmp_path / "token").write_text("a-token-of-enough-length\n")
    config = load_config(_http(tmp_path, "{token_file: token}"), env={})
    assert config.http is not None and config.http.auth is not None
    assert config.http.auth.token is not None
    assert "a-token-of-enough-length" == config.http.auth.token.get()
    assert "a-token-of-enough-length" in secrets_of(config)
    assert "a-token" not in repr(config.http)
    (tmp_path / "password").write_text("a-password-long-enough")
    basic = load_config(_http(tmp_path, "{username: ops, password_file: password}"), env={})
    assert basic.http is not None and basic.http.auth is not None
    assert "ops" == basic.http.auth.username


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("{username: ops}", "username and password go together"),
        ("{}", "give either token"),
        ("{token: aaaaaaaaaaaaaa, username: ops, password: bbbbbbbbbbbbbb}", "give either token"),
        ("{token: short}", "at least 12 characters"),
        ("{tokens: aaaaaaaaaaaaaa}", "tokens"),
    ],
)
def test_broken_http_auth_is_refused(tmp_path: Path, auth: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_http(tmp_path, auth), env={})
    assert "http.auth" in str(caught.value)
    assert message in str(caught.value)
