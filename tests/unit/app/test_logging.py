"""Logging: one JSON shape for every line, foreign values cannot drive the terminal, and no
configured secret survives in a line."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import structlog

from watcher.app.logging import Redactor, _printable, configure, level_from_env
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


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_under_systemd_each_line_carries_its_journald_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: Literal["json", "console"]
) -> None:
    """stderr is the journal ($JOURNAL_STREAM names it): ``<3>`` error, ``<4>`` warning,
    ``<6>`` info, ``<7>`` debug, for structlog's lines and the libraries' alike, on every
    line of a traceback too; journald strips them, so ``journalctl -p err`` works."""
    out = tmp_path / "journal"
    with out.open("w") as stream:
        stat = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        monkeypatch.setattr(sys, "stderr", stream)
        configure("debug", fmt)
        log = structlog.get_logger("t")
        log.error("sink_refused")
        log.warning("slow_poll")
        log.info("started")
        log.debug("poll_done")
        logging.getLogger("uvicorn.error").error("library trouble")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("crashed")
    lines = out.read_text().splitlines()
    assert [line[:3] for line in lines[:5]] == ["<3>", "<4>", "<6>", "<7>", "<3>"]
    if fmt == "console":  # the traceback's lines too
        assert len(lines) > 6 and all(line.startswith("<3>") for line in lines[5:])
    else:  # the traceback inside the one line
        assert 6 == len(lines) and lines[5].startswith("<3>{")
    assert "sink_refused" in lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_elsewhere_no_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another file than the journal's (a terminal, a pipe to Kubernetes): plain JSON."""
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    out = tmp_path / "log"
    with out.open("w") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        configure("info", "json")
        structlog.get_logger("t").error("sink_refused")
    assert "error" == json.loads(out.read_text())["level"]


@pytest.mark.parametrize("given", ["loud", "trace", "0"])
def test_an_invalid_log_level_is_refused(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("WATCHER_LOG_LEVEL", given)
    with pytest.raises(ValueError, match="is not a level"):
        level_from_env()
    with pytest.raises(ValueError, match="is not a level"):
        configure("info", "json")


def test_a_valid_or_empty_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_LOG_LEVEL", " DEBUG ")
    assert "debug" == level_from_env()
    monkeypatch.setenv("WATCHER_LOG_LEVEL", "")
    assert "warning" == level_from_env("warning")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("no_color", ["", "1"])
def test_no_color_is_honoured_on_a_terminal(monkeypatch: pytest.MonkeyPatch, no_color: str) -> None:
    """On a terminal the console renderer colours its lines, unless ``$NO_COLOR`` is set
    (no-color.org: present and not empty)."""
    import pty

    master, slave = pty.openpty()
    monkeypatch.setenv("NO_COLOR", no_color)
    with os.fdopen(slave, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        configure("info", "auto")
        structlog.get_logger("t").warning("sink_refused", sink="hooks")
        terminal.flush()
        written = os.read(master, 65536).decode()
    os.close(master)
    assert "sink_refused" in written
    assert ("\x1b[" in written) is (no_color == "")
