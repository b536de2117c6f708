"""Repeated log lines folded: the same event with the same key fields more than
:data:`PER_SECOND` times within a second is written :data:`PER_SECOND` times, and the rest
becomes one ``log_lines_suppressed`` line (``suppressed=N``, ``like=<event>``) once the
second is over. A flood of bad clients or a failing loop cannot fill the disk with logs
(issue 15 found 215 MB in 40 s), while the first lines of every kind still show.

Key fields are those that tell *what* is concerned (a source, a sink, a job), not
per-request details (a peer's port), so a flood from many clients folds as one. Standard
library lines (uvicorn, httpx) are keyed by logger and message template.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

PER_SECOND = 20  # lines of one kind per second, beyond which they are counted, not written
WINDOW = 1.0  # seconds
COLLECT_EVERY = 0.25  # seconds between scans of every window for the summaries due
KEY_FIELDS = ("logger", "source", "sink", "job_id", "transition_id")
UNLIMITED = "_unlimited"  # a line the limiter writes itself (its summary) passes as it is

Key = tuple[Any, ...]
_LEVEL_OF = {"exception": "error", "critical": "error", "warn": "warning", "msg": "info"}
Emit = Callable[[str, dict[str, Any]], None]  # (level, fields of the summary line)


@dataclass
class _Window:
    start: float
    level: str
    fields: dict[str, Any]
    count: int = 0
    suppressed: int = 0


def _emit_through_structlog(level: str, fields: dict[str, Any]) -> None:
    logger = structlog.get_logger("watcher.app.loglimit")
    getattr(logger, level if level in ("debug", "info", "warning", "error") else "warning")(
        "log_lines_suppressed", **fields, **{UNLIMITED: True}
    )


class RepeatLimiter(logging.Filter):
    """A structlog processor (``__call__``) and a logging filter (``filter``) sharing one
    count per key. ``clock`` is monotonic; ``emit`` writes a summary line."""

    def __init__(
        self,
        per_second: int = PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        emit: Emit = _emit_through_structlog,
        timer: bool = True,
    ) -> None:
        super().__init__()
        self.per_second = per_second
        self.clock = clock
        self.emit = emit
        self.timer = timer  # a summary without waiting for the next line
        self._windows: dict[Key, _Window] = {}
        self._lock = threading.RLock()
        self._pending: threading.Timer | None = None
        self._collected = float("-inf")  # when windows were last scanned

    def allow(self, key: Key, level: str, fields: dict[str, Any]) -> bool:
        """Count a line of ``key``; ``False`` when it is one too many this second."""
        now = self.clock()
        due: list[_Window] = []
        with self._lock:
            if now - self._collected >= COLLECT_EVERY:  # not per line: many keys, one scan
                self._collect(now, due)
            window = self._windows.get(key)
            if window is not None and now - window.start >= WINDOW:  # its second is over
                del self._windows[key]
                if window.suppressed:
                    due.append(window)
                window = None
            if window is None:
                window = self._windows[key] = _Window(now, level, fields)
            window.count += 1
            allowed = window.count <= self.per_second
            if not allowed:
                window.suppressed += 1
                if window.suppressed == 1:
                    self._arm(window.start + WINDOW - now)
        self._write(due)
        return allowed

    def flush(self) -> None:
        """Write the summary of every window that is over; forget them."""
        due: list[_Window] = []
        with self._lock:
            now = self.clock()
            self._collect(now, due)
            self._pending = None
            waiting = [w.start + WINDOW for w in self._windows.values() if w.suppressed]
            if waiting:
                self._arm(min(waiting) - now)
        self._write(due)

    def _collect(self, now: float, due: list[_Window]) -> None:
        """Forget the windows that are over; those that suppressed lines go to ``due``."""
        self._collected = now
        for key in [k for k, w in self._windows.items() if now - w.start >= WINDOW]:
            window = self._windows.pop(key)
            if window.suppressed:
                due.append(window)

    def _write(self, due: list[_Window]) -> None:
        for window in due:
            summary = {**window.fields, "suppressed": window.suppressed, "within_seconds": WINDOW}
            self.emit(window.level, summary)

    def _arm(self, delay: float) -> None:
        if not self.timer or (self._pending is not None and self._pending.is_alive()):
            return
        self._pending = threading.Timer(max(0.0, delay) + 0.01, self.flush)
        self._pending.daemon = True
        self._pending.start()

    def __call__(
        self, _: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if event_dict.pop(UNLIMITED, False):
            return event_dict
        level = _LEVEL_OF.get(method, method)
        like = str(event_dict.get("event", ""))[:200]
        kept = {k: event_dict[k] for k in KEY_FIELDS if k in event_dict}
        key = ("structlog", level, like, *sorted((k, str(v)) for k, v in kept.items()))
        if not self.allow(key, level, {"like": like, **kept}):
            raise structlog.DropEvent
        return event_dict

    def filter(self, record: logging.LogRecord) -> bool:
        like = str(record.msg)[:200]
        level = record.levelname.lower()
        key = ("logging", record.name, level, like)
        return self.allow(key, level, {"like": like, "logger": record.name})
