"""Logging: one JSON shape for every line, foreign values cannot drive the terminal, and no
configured secret survives in a line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from watcher.app.logging import Redactor, _printable, configure
from watcher.config import secrets_of, validate_config


def test_control_characters_are_escaped_for_the_console() -> None:
    """ESC, newlines and bidi overrides in a logged value are shown escaped."""
    event = _printable(None, "info", {"job_id": "a\x1b[31mb\nc\u202e", "exception": "x\ny"})
    assert "a\\u001b[31mb\\u000ac\\u202e" == event["job_id"]
    assert "x\ny" == event["exception"]


def test_redactor_replaces_secrets_anywhere() -> None:
    """Secrets inside longer strings and in non-string values are replaced; short ones are
    not used (they would redact ordinary words)."""
    redact = Redactor(["sk-0123456789", "abc"])
    event = redact(
        None,
        "info",
        {"error": "bad key sk-0123456789!", "url": ["x", "sk-0123456789"], "n": 3, "word": "abc"},
    )
    assert {"error": "bad key <secret>!", "url": "['x', '<secret>']", "n": 3, "word": "abc"} == (
        event
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The test reconfigures process-wide logging: put everything back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_every_line_is_json_with_bound_fields_and_no_secret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """structlog and standard-library lines alike are JSON objects with timestamp, level and
    event; contextvars are bound; configured secrets never appear, at any level."""
    config = validate_config(
        {
            "sources": [
                {"name": "ft", "kind": "mistral-fine-tuning", "api_key": "sk-SECRET-KEY-1"}
            ],
            "state": {"url": f"sqlite:///{tmp_path}/s.db"},
            "sinks": [
                {
                    "name": "h",
                    "kind": "webhook",
                    "url": "https://h.example/x?t=TOKEN-SECRET-2",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                }
            ],
        },
        env={},
    )
    secrets = secrets_of(config)
    assert {"sk-SECRET-KEY-1", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} <= set(secrets)
    configure("debug", "json", secrets=secrets)
    log = structlog.get_logger("t")
    with structlog.contextvars.bound_contextvars(source="ft", job_id="j1"):
        log.debug("poll", header="Bearer sk-SECRET-KEY-1")
        log.info(
            "delivered", sink="h", transition_id="wt_1", url="https://h.example/x?t=TOKEN-SECRET-2"
        )
    logging.getLogger("apscheduler").warning("job missed by %s", "sk-SECRET-KEY-1")
    logging.getLogger("watcher.some.library").error("boom")
    text = capsys.readouterr().err
    lines = [json.loads(line) for line in text.splitlines()]
    assert 4 == len(lines)
    for line in lines:
        assert {"timestamp", "level", "event"} <= set(line)
    assert {"source": "ft", "job_id": "j1"} == {k: lines[0][k] for k in ("source", "job_id")}
    assert ("wt_1", "h") == (lines[1]["transition_id"], lines[1]["sink"])
    assert ["apscheduler", "watcher.some.library"] == [line["logger"] for line in lines[2:]]
    for secret in ("sk-SECRET-KEY-1", "TOKEN-SECRET-2", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"):
        assert secret not in text
