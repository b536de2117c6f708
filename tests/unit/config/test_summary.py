"""The check-config summary."""

from __future__ import annotations

from pathlib import Path

from watcher.config import load_config, secrets_of, summary
from watcher.deliver.redact import Scrubber

from .sample import ENV, GOOD, SECRET, write


def test_summary_shows_no_secret(tmp_path: Path) -> None:
    """The check-config summary names sources, sinks and routes, never a secret."""
    config = load_config(write(tmp_path, GOOD), env=ENV)
    text = summary(config) + repr(config) + str(config.model_dump())
    assert "ft" in text and "hooks" in text
    for secret in ("sk-very-secret-key", SECRET, "token=abc"):
        assert secret not in text


def test_credentials_in_plain_urls_are_masked_and_known_to_the_redactor(tmp_path: Path) -> None:
    """``state.url``'s password and a ``base_url``'s userinfo or query token are secrets too
    (issue 15, item 11): masked in the summary, handed to the log redactor."""
    text = GOOD.replace(
        "sqlite:///{tmp}/state.db", "postgresql://watcher:pg-Pa%40ss-77@db.example:5432/w"
    ).replace(
        "base_url: http://127.0.0.1:8765",
        "base_url: https://tok-BASEURL-user@api.example/v1?api_key=q-KEY-55&region=eu",
    )
    config = load_config(write(tmp_path, text), env=ENV)
    shown = summary(config)
    for secret in ("pg-Pa", "tok-BASEURL-user", "q-KEY-55"):
        assert secret not in shown
    assert "postgresql://watcher:****@db.example:5432/w" in shown
    assert "https://****@api.example/v1?api_key=****&region=****" in shown
    known = secrets_of(config)
    for secret in ("pg-Pa@ss-77", "pg-Pa%40ss-77", "tok-BASEURL-user", "q-KEY-55"):
        assert secret in known
    assert "eu" not in known and "watcher" not in known  # settings and user names stay


def test_the_log_redactor_scrubs_a_state_url_password(tmp_path: Path) -> None:
    text = GOOD.replace("sqlite:///{tmp}/state.db", "postgresql://w:hunter2-pg@db/w")
    config = load_config(write(tmp_path, text), env=ENV)
    scrubber = Scrubber.of_secrets(*secrets_of(config))
    line = scrubber.scrub("connect failed: postgresql://w:hunter2-pg@db/w (password hunter2-pg)")
    assert "hunter2-pg" not in line
