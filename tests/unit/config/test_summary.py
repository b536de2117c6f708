"""The check-config summary."""

from __future__ import annotations

from pathlib import Path

from watcher.config import load_config, summary

from .sample import ENV, GOOD, SECRET, write


def test_summary_shows_no_secret(tmp_path: Path) -> None:
    """The check-config summary names sources, sinks and routes, never a secret."""
    config = load_config(write(tmp_path, GOOD), env=ENV)
    text = summary(config) + repr(config) + str(config.model_dump())
    assert "ft" in text and "hooks" in text
    for secret in ("sk-very-secret-key", SECRET, "token=abc"):
        assert secret not in text
