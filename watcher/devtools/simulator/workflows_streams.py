"""The Workflows event streams' bookkeeping: what each connection asked for
(:class:`StreamFilter`), where it stands (:class:`StreamConnection`), the stream faults the
admin API sets (:class:`StreamFaults`) and the counters that prove a client resumes.

Stream faults and keep-alives run on real (monotonic) time, like the ``slow`` fault: they
are about connections, not about the simulated history. The SSE framing itself is in
:mod:`.workflows_stream`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from watcher.devtools.simulator.workflows import WorkflowEvent

DEFAULT_PING_INTERVAL = 15.0  # seconds between ``: ping`` comment lines
DEFAULT_TICK = 0.05  # how often an open stream looks for scripted steps that came due
# An error frame's ``data``: ``error`` is a message, ``reason`` one of the values mistralai
# 3.7.0 knows (``read_error``, ``stream_error``, ``internal_error``; it maps others to
# ``stream_error``) and raises as ``StreamDisconnectedError``: the frame ends the stream.
STREAM_ERROR = "Stream failed (simulated)"
STREAM_ERROR_REASON = "stream_error"


@dataclass(frozen=True, kw_only=True)
class StreamFilter:
    """The filters of one ``/v1/workflows/events/stream`` request; None stands for ``*``."""

    workflow_exec_id: str | None = None
    root_workflow_exec_id: str | None = None
    parent_workflow_exec_id: str | None = None
    workflow_name: str | None = None
    scope: str | None = None
    event_types: frozenset[str] | None = None

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        """What counts as "the same filter" for :attr:`WorkflowStreams.replays_from_zero`."""
        return (self.root_workflow_exec_id, self.workflow_exec_id, self.parent_workflow_exec_id)

    def matches(self, event: WorkflowEvent) -> bool:
        return (
            (self.workflow_exec_id is None or event.execution_id == self.workflow_exec_id)
            and (
                self.root_workflow_exec_id is None
                or event.root_execution_id == self.root_workflow_exec_id
            )
            and (
                self.parent_workflow_exec_id is None
                or event.parent_execution_id == self.parent_workflow_exec_id
            )
            and (self.workflow_name is None or event.workflow_name == self.workflow_name)
            and (self.scope is None or event.scope == self.scope)
            and (self.event_types is None or event.event_type in self.event_types)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "root_workflow_exec_id": self.root_workflow_exec_id,
            "workflow_exec_id": self.workflow_exec_id,
            "parent_workflow_exec_id": self.parent_workflow_exec_id,
            "workflow_name": self.workflow_name,
            "scope": self.scope,
            "workflow_event_types": None if self.event_types is None else sorted(self.event_types),
        }


@dataclass(eq=False, kw_only=True)
class StreamConnection:
    """One stream connection: its filter, where it started and what it was sent."""

    id: int
    filter: StreamFilter
    start_seq: int  # the first broker sequence it may be sent (after last-event-id, if used)
    requested_start_seq: int | None  # the query's ``start_seq``, None when absent
    last_event_id: str | None  # the ``last-event-id`` header
    opened_at: float  # monotonic
    position: int = 0  # the next broker sequence it may be sent
    events_sent: int = 0
    open: bool = True
    closed_by: str | None = None  # client, ended, idle_close, error, outage, shutdown
    pending_error: tuple[str, str, bool] | None = None  # (error, reason, close) to send

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filter": self.filter.to_json(),
            "start_seq": self.start_seq,
            "requested_start_seq": self.requested_start_seq,
            "last_event_id": self.last_event_id,
            "events_sent": self.events_sent,
            "next_seq": self.position,
            "open": self.open,
            "closed_by": self.closed_by,
        }


@dataclass(kw_only=True)
class StreamFaults:
    """What the admin API did to the streams (all times monotonic seconds)."""

    ping_interval: float = DEFAULT_PING_INTERVAL
    idle_close_after: float | None = None  # close each open stream this long after it opened
    idle_close_since: float = 0.0  # ...or after the setting was made, whichever is later
    outage_until: float = 0.0  # new streams answer 503 and open ones close until then
    refuse_status: int | None = None  # new streams answer this 4xx
    refuse_count: int | None = None  # how many more times (None: until cleared)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "ping_interval": self.ping_interval,
            "idle_close_after": self.idle_close_after,
            "outage_remaining": round(max(0.0, self.outage_until - now), 3),
            "refuse": None
            if self.refuse_status is None
            else {"status": self.refuse_status, "count": self.refuse_count},
        }


class WorkflowStreams:
    """Open stream connections, their counters and faults, and the wake-up of open streams
    when something happens (an event, a fault, the server shutting down)."""

    stream_connections: list[StreamConnection]
    stream_faults: StreamFaults
    stream_tick: float
    streams_opened: int
    stream_events_sent: int
    replays_from_zero: int
    streams_closing: bool
    _stream_ids: Iterator[int]
    _filters_seen: set[tuple[str | None, str | None, str | None]]
    _waiters: set[anyio.Event]

    def _start_streams(self) -> None:
        self.stream_connections = []
        self.stream_faults = StreamFaults()
        self.stream_tick = DEFAULT_TICK
        self.streams_closing = False
        self._stream_ids = itertools.count(1)
        self._filters_seen = set()
        self._waiters = set()
        self.reset_stream_stats()

    def open_stream(
        self,
        flt: StreamFilter,
        *,
        start_seq: int,
        requested_start_seq: int | None,
        last_event_id: str | None,
    ) -> StreamConnection:
        """Count a new connection; ``start_seq`` 0 for a filter seen before is a replay."""
        if start_seq == 0 and flt.key in self._filters_seen:
            self.replays_from_zero += 1
        self._filters_seen.add(flt.key)
        self.streams_opened += 1
        connection = StreamConnection(
            id=next(self._stream_ids),
            filter=flt,
            start_seq=start_seq,
            requested_start_seq=requested_start_seq,
            last_event_id=last_event_id,
            opened_at=time.monotonic(),
            position=start_seq,
        )
        self.stream_connections.append(connection)
        return connection

    def close_stream(self, connection: StreamConnection, by: str) -> None:
        """Mark ``connection`` closed (the first reason given wins)."""
        if connection.open:
            connection.open = False
            connection.closed_by = by

    def sent(self, connection: StreamConnection, event: WorkflowEvent) -> None:
        connection.position = event.seq + 1
        connection.events_sent += 1
        self.stream_events_sent += 1

    def open_streams(self) -> list[StreamConnection]:
        return [c for c in self.stream_connections if c.open]

    def stream_refusal(self) -> int | None:
        """The status a new stream request answers instead of streaming (503 in an outage,
        the refused 4xx), or None; a counted refusal is used up."""
        faults = self.stream_faults
        if time.monotonic() < faults.outage_until:
            return 503
        if faults.refuse_status is not None:
            status = faults.refuse_status
            if faults.refuse_count is not None:
                faults.refuse_count -= 1
                if faults.refuse_count <= 0:
                    faults.refuse_status = faults.refuse_count = None
            return status
        return None

    def close_reason(self, connection: StreamConnection) -> str | None:
        """Why the server closes ``connection`` now (a fault, shutdown), or None."""
        now = time.monotonic()
        faults = self.stream_faults
        if self.streams_closing:
            return "shutdown"
        if now < faults.outage_until:
            return "outage"
        deadline = self.idle_deadline(connection)
        if deadline is not None and now >= deadline:
            return "idle_close"
        return None

    def idle_deadline(self, connection: StreamConnection) -> float | None:
        after = self.stream_faults.idle_close_after
        if after is None:
            return None
        return max(connection.opened_at, self.stream_faults.idle_close_since) + after

    def set_idle_close(self, after: float | None) -> None:
        self.stream_faults.idle_close_after = after
        self.stream_faults.idle_close_since = time.monotonic()
        self._notify()

    def set_ping_interval(self, seconds: float) -> None:
        self.stream_faults.ping_interval = seconds
        self._notify()

    def start_outage(self, seconds: float) -> None:
        self.stream_faults.outage_until = time.monotonic() + seconds
        self._notify()

    def refuse_streams(self, status: int | None, count: int | None = None) -> None:
        self.stream_faults.refuse_status = status
        self.stream_faults.refuse_count = None if status is None else count

    def inject_stream_error(
        self, error: str = STREAM_ERROR, reason: str = STREAM_ERROR_REASON, *, close: bool = True
    ) -> int:
        """Have every open stream send an ``event: error`` frame (then close, if ``close``);
        returns how many streams it reached."""
        hit = self.open_streams()
        for connection in hit:
            connection.pending_error = (error, reason, close)
        self._notify()
        return len(hit)

    def clear_stream_faults(self) -> None:
        self.stream_faults = StreamFaults(ping_interval=self.stream_faults.ping_interval)
        self._notify()

    def close_all_streams(self) -> None:
        """Server shutdown: every open stream ends at once, and no new one streams."""
        self.streams_closing = True
        self._notify()

    def stream_stats(self, *, connections: bool = True) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "opened": self.streams_opened,
            "open": len(self.open_streams()),
            "events_sent": self.stream_events_sent,
            "replays_from_zero": self.replays_from_zero,
        }
        if connections:
            shown["connections"] = [c.to_json() for c in self.stream_connections]
            shown["faults"] = self.stream_faults.to_json(time.monotonic())
        return shown

    def reset_stream_stats(self) -> None:
        """Zero the counters and forget closed connections; open ones stay, counted anew.

        The filters already seen are kept: a later connection from 0 for one of them is
        still a replay.
        """
        self.stream_connections = self.open_streams()
        for connection in self.stream_connections:
            connection.events_sent = 0
        self.streams_opened = len(self.stream_connections)
        self.stream_events_sent = 0
        self.replays_from_zero = 0

    async def wait_change(self, seconds: float) -> None:
        """Sleep until something happens to the workflows or the streams, or ``seconds``."""
        event = anyio.Event()
        self._waiters.add(event)
        try:
            with anyio.move_on_after(max(0.0, seconds)):
                await event.wait()
        finally:
            self._waiters.discard(event)

    def _notify(self) -> None:
        for event in self._waiters:
            event.set()
        self._waiters.clear()
