"""structlog set up once: JSON lines off a terminal, a console renderer on one; stderr only
(stdout belongs to the console sink). The standard library's loggers (httpx, apscheduler,
uvicorn, aiosqlite) go through the same processors, so every line has the same shape, and a
redaction processor replaces any configured secret that would slip into a line.

Under systemd (stderr is the journal: ``$JOURNAL_STREAM`` names it), every line starts
with its sd-daemon priority (``<3>`` for an error, ``<4>`` a warning, …), which journald
reads and strips, so that ``journalctl -p err`` finds the errors; elsewhere (a terminal,
Kubernetes) the line's ``level`` field says it. Repeated lines are folded
(:mod:`watcher.app.loglimit`)."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

from watcher.app.loglimit import RepeatLimiter

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MIN_SECRET = 6  # shorter values would redact ordinary words


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _printable(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Values from the API (job ids, statuses) are foreign: on a terminal, their control and
    bidi characters are shown escaped, never interpreted. Tracebacks keep their lines."""
    for key, value in event_dict.items():
        if isinstance(value, str) and key != "exception":
            event_dict[key] = _CONTROLS.sub(_escape, value)
    return event_dict


class Redactor:
    """Replaces every configured secret found in a line's string values by ``<secret>``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, found))) if found else None

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._pattern is None:
            return event_dict
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = self._pattern.sub("<secret>", value)
            elif not isinstance(value, int | float | bool | type(None)):
                text = str(value)
                if self._pattern.search(text):
                    event_dict[key] = self._pattern.sub("<secret>", text)
        return event_dict


LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# sd-daemon(3) priorities by structlog method or standard library level name.
PRIORITIES = {
    "debug": 7,
    "info": 6,
    "msg": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
    "fatal": 2,
}


def level_from_env(default: str = "info") -> str:
    """``$WATCHER_LOG_LEVEL`` (empty or unset: ``default``); ``ValueError`` when it is not
    one of :data:`LEVELS`, rather than logging at a level nobody asked for."""
    given = os.environ.get("WATCHER_LOG_LEVEL", "").strip()
    if not given:
        return default
    if given.lower() not in LEVELS:
        raise ValueError(
            f"WATCHER_LOG_LEVEL={given[:20]!r} is not a level (one of {', '.join(LEVELS)})"
        )
    return given.lower()


def to_journal(stream: Any) -> bool:
    """Whether ``stream`` is the journal: ``$JOURNAL_STREAM`` (``DEVICE:INODE``, set by
    systemd for a service's stdout/stderr) names the file it is."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def _journal_priority(_: Any, method: str, line: Any) -> Any:
    """The rendered line with its sd-daemon priority before each of its lines."""
    prefix = f"<{PRIORITIES.get(method, 6)}>"
    return "\n".join(prefix + part for part in str(line).split("\n"))


def configure(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog and the standard library's logging. ``WATCHER_LOG_LEVEL`` in the
    environment overrides ``level`` (``ValueError`` when it is not a level)."""
    level = level_from_env(level)
    threshold = LEVELS.get(level, logging.INFO)
    stream = sys.stderr
    limiter = RepeatLimiter()
    journal: list[structlog.typing.Processor] = [_journal_priority] if to_journal(stream) else []
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty() and not os.environ.get("NO_COLOR"))
        if use_console
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(secrets),
        *([_printable] if use_console else []),
    ]
    structlog.configure(
        # The limiter after the contextvars, so that a bound source or job_id keys a line.
        processors=[shared[0], limiter, *shared[1:], renderer, *journal],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                *journal,
            ],
        )
    )
    handler.addFilter(limiter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(threshold, logging.INFO))
    # Libraries speak at warning and worse only: httpx2 and httpcore2 would print every
    # request line at debug level, apscheduler every run at info.
    for noisy in (
        "httpx2",
        "httpcore2",
        "apscheduler",
        "uvicorn",
        "aiosqlite",
        "asyncio",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
