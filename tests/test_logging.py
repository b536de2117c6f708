"""Logging: foreign values cannot drive the terminal."""

from __future__ import annotations

from watcher.logging import _printable


def test_control_characters_are_escaped_for_the_console() -> None:
    """ESC, newlines and bidi overrides in a logged value are shown escaped."""
    event = _printable(None, "info", {"job_id": "a\x1b[31mb\nc\u202e", "exception": "x\ny"})
    assert "a\\u001b[31mb\\u000ac\\u202e" == event["job_id"]
    assert "x\ny" == event["exception"]
