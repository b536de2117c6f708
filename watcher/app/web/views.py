"""How the status page shows things: durations, short ids, a source's health, a batch job's
progress, a training curve. Pure functions over the store's values; the templates escape
every string they are given (autoescape), and the one piece of markup made here (the SVG
chart) escapes its own texts (:mod:`watcher.render.charts`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from watcher.detect.rules import expected_duration
from watcher.model.snapshot import Cursor, Snapshot
from watcher.render import charts
from watcher.render.text import clean, to_float

SHORT_ID = 12  # characters of a job id shown; the whole id is in the DOM (title, link)


def ago(seconds: float | None) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``; ``—`` for ``None``."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def when(timestamp: float | None) -> str:
    """A wall time as ``2026-11-18 11:06:40Z``; ``—`` for none."""
    if not timestamp:
        return "—"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def short(job_id: str) -> str:
    """The start of a long id, with an ellipsis (the template puts the whole in ``title``)."""
    shown = clean(job_id, 200)
    return shown if len(shown) <= SHORT_ID else shown[: SHORT_ID - 1] + "…"


@dataclass(frozen=True)
class SourceHealth:
    """One line of the sources table."""

    name: str
    kind: str
    state: str  # ok, failing, unreachable, retired, degraded, not polled yet
    detail: str
    last_poll_at: float | None
    streams: int | None  # event streams followed (workflows), else None
    owner: str  # the replica polling it


def source_health(
    name: str,
    kind: str,
    cursor: Cursor | None,
    last_poll_at: float | None,
    owner: str,
    now: float,
) -> SourceHealth:
    """What the cursor (shared by every replica) says of a source."""
    streams = len(cursor.streams) if cursor is not None and "workflow" in kind else None
    polled = last_poll_at if last_poll_at else None
    if cursor is None or not cursor.baseline_done:
        return SourceHealth(name, kind, "not polled yet", "", polled, streams, owner)
    if cursor.retired:
        return SourceHealth(
            name, kind, "retired", "the API answered 410 Gone", polled, streams, owner
        )
    if cursor.failing_since is not None:
        state = "unreachable" if cursor.unreachable else "failing"
        detail = f"failing since {when(cursor.failing_since)} ({ago(now - cursor.failing_since)})"
        return SourceHealth(name, kind, state, detail, polled, streams, owner)
    if cursor.degraded_since is not None:
        detail = f"since {when(cursor.degraded_since)}"
        return SourceHealth(name, kind, "degraded", detail, polled, streams, owner)
    return SourceHealth(name, kind, "ok", "", polled, streams, owner)


@dataclass(frozen=True)
class Pager:
    """Which slice of a long list a page shows: page ``number`` (from 1) of ``pages``."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def previous(self) -> int:
        """The page before this one (the last page, from past the end)."""
        return min(self.number - 1, self.pages)

    @property
    def first(self) -> int:
        """The 1-based position of the page's first row (0 when the page is empty)."""
        return self.offset + 1 if self.offset < self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.size, self.total)


MAX_PAGE = 1_000_000  # past any real list: a bigger number is read as the last of these


def page_number(raw: str | None) -> int:
    """The ``page`` query parameter as a page number from 1; anything else is page 1."""
    if raw is None or not raw.isascii() or not raw.isdigit():
        return 1
    return max(1, min(int(raw), MAX_PAGE)) if len(raw) <= 7 else MAX_PAGE


def requests(count: int, budget: int | None) -> str:
    """``12 / 60`` (requests in the last minute against the source's budget), or ``12``."""
    return f"{count} / {budget}" if budget is not None else str(count)


def expectation(snapshot: Snapshot, now: float, factor: float | None) -> str | None:
    """``expected 15m, 40m in: overrun`` for a running job whose metadata says how long it
    should take (overrun past the ``overrun`` rule's factor, when one applies), else
    ``None``."""
    expected = expected_duration(snapshot)
    if expected is None or snapshot.status != "RUNNING":
        return None
    held = max(0.0, now - snapshot.status_since)
    said = f"expected {ago(expected)}, {ago(held)} in"
    if factor is not None and held > expected * factor:
        return f"{said}: overrun"
    return said


def progress(job: Mapping[str, Any]) -> str | None:
    """A batch job's ``completed / total (p%)``; ``None`` for jobs without counters."""
    total = to_float(job.get("total_requests"))
    if total is None:
        return None
    done = to_float(job.get("completed_requests")) or 0.0
    share = f" ({done / total:.0%})" if total > 0 else ""
    return f"{int(done)} / {int(total)}{share}"


def loss_chart(job: Mapping[str, Any], *, width: int = 240, height: int = 90) -> Markup | None:
    """The training curve (train and valid loss by step, the API's ``0.0`` valid_loss
    placeholders left out) as inline SVG with labelled axes; ``None`` when there is none."""
    curve = job.get("loss_curve")
    if not curve:
        return None
    series = charts.loss_series(curve)
    if not any(series.values()):
        return None
    svg = charts.svg_chart(series, width=width, height=height, x_label="step", y_label="loss")
    return Markup(svg)  # noqa: S704 - svg_chart escapes every text it shows
