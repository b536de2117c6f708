"""Repeated log lines are folded: a flood writes a bounded number of lines and one summary
saying how many were suppressed; distinct kinds are not folded together."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from watcher.app.logging import configure
from watcher.app.loglimit import PER_SECOND, RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, emitted: list[tuple[str, dict[str, Any]]]) -> RepeatLimiter:
    return RepeatLimiter(
        5, clock=clock, emit=lambda level, fields: emitted.append((level, fields)), timer=False
    )


def line(limit: RepeatLimiter, event: str, **fields: Any) -> bool:
    try:
        limit(None, "warning", {"event": event, **fields})
    except structlog.DropEvent:
        return False
    return True


def test_a_flood_is_cut_and_summed_up_once_the_second_is_over() -> None:
    clock, emitted = Clock(), []
    limit = limiter(clock, emitted)
    passed = [line(limit, "http_request_refused", peer=f"10.0.0.1:{p}") for p in range(1000)]
    assert 5 == sum(passed) and passed[:5] == [True] * 5
    assert [] == emitted  # the second is not over
    clock.now += 1.0
    assert line(limit, "http_request_refused", peer="10.0.0.1:1")  # a new second
    assert [("warning", {"like": "http_request_refused", "suppressed": 995,
                         "within_seconds": 1.0})] == emitted  # fmt: skip


def test_key_fields_keep_kinds_apart() -> None:
    """Another source, job or event is another kind: not folded with the first."""
    clock, emitted = Clock(), []
    limit = limiter(clock, emitted)
    for _ in range(5):
        assert line(limit, "poll_failed", source="a")
    assert not line(limit, "poll_failed", source="a")
    assert line(limit, "poll_failed", source="b")
    assert line(limit, "delivery_failed", source="a")
    clock.now += 2
    limit.flush()
    assert [("warning", {"like": "poll_failed", "source": "a", "suppressed": 1,
                         "within_seconds": 1.0})] == emitted  # fmt: skip


def test_lines_at_the_pace_of_a_daemon_are_all_written() -> None:
    clock, emitted = Clock(), []
    limit = limiter(clock, emitted)
    for _ in range(100):
        assert line(limit, "poll_done", source="a")
        clock.now += 0.25
    assert [] == emitted


def test_standard_library_lines_are_keyed_by_their_template() -> None:
    clock, emitted = Clock(), []
    limit = limiter(clock, emitted)
    records = [
        logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, "Invalid HTTP request from %s",
                          (f"10.0.0.{i}",), None)
        for i in range(50)
    ]  # fmt: skip
    assert 5 == sum(limit.filter(r) for r in records)
    clock.now += 1
    limit.flush()
    assert 45 == emitted[0][1]["suppressed"] and "uvicorn.error" == emitted[0][1]["logger"]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_a_real_flood_writes_a_bounded_log(capsys: pytest.CaptureFixture[str]) -> None:
    """3,000 warnings from structlog and 3,000 from a library: a few dozen lines, every
    suppressed one counted, and the summary arrives by itself once the second is over."""
    configure("info", "json")
    log = structlog.get_logger("test")
    for i in range(3_000):
        log.warning("bad_client", peer=f"10.0.0.1:{i}")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request from %s", i)
    time.sleep(1.2)  # the limiter's timer writes the summaries
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    library = [x for x in lines if x["event"].startswith("Invalid HTTP request")]
    assert PER_SECOND <= len(library) <= 3 * PER_SECOND
    lines = [x for x in lines if x.get("logger") != "uvicorn.error"]
    written = [x for x in lines if x["event"] == "bad_client"]
    summaries = [x for x in lines if x["event"] == "log_lines_suppressed"]
    assert PER_SECOND <= len(written) <= 3 * PER_SECOND  # the loop may span a second or two
    assert 3_000 == len(written) + sum(s["suppressed"] for s in summaries)
    assert all(s["like"] == "bad_client" and s["level"] == "warning" for s in summaries)
