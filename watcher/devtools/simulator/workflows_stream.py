"""``GET /v1/workflows/events/stream``: the Workflows event stream as Server-Sent Events
(workflows reference §7.2 to §7.8).

One of ``root_workflow_exec_id``, ``workflow_exec_id`` and ``parent_workflow_exec_id`` is
required (``*``, the SDK's default, counts as absent): without one the answer is a 422. The
stream replays the stored events with ``broker_sequence >= start_seq`` (inclusive), then
sends live ones as they happen. With the ``last-event-id`` header and no positive
``start_seq`` it resumes after that sequence. Frames::

    id: <broker_sequence>
    data: <StreamEventSsePayload on one line>

``: ping`` comment lines keep an idle stream alive (every ``ping_interval`` seconds, real
time). An injected error sends ``event: error`` with ``data: {"error", "reason"}``. The server
closes the stream once every execution its filter names or matches has ended (after the last
event), on an injected idle close, error or outage, and when it shuts down; a client that
disconnects ends the generator (Starlette cancels it). A filter naming an execution that does
not exist (yet) keeps the stream open, with pings.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from watcher.devtools.simulator.engine import Simulator
from watcher.devtools.simulator.query import Answer, ListQuery
from watcher.devtools.simulator.workflows import WorkflowEvent
from watcher.devtools.simulator.workflows_streams import StreamConnection, StreamFilter

EXEC_FILTERS = ("root_workflow_exec_id", "workflow_exec_id", "parent_workflow_exec_id")
SCOPES = ("activity", "workflow", "*")
# ``WorkflowEventType`` (§7.6): the ``workflow_event_types`` filter's values.
EVENT_TYPES = (
    "WORKFLOW_EXECUTION_STARTED",
    "WORKFLOW_EXECUTION_COMPLETED",
    "WORKFLOW_EXECUTION_FAILED",
    "WORKFLOW_EXECUTION_CANCELED",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
    "WORKFLOW_TASK_TIMED_OUT",
    "WORKFLOW_TASK_FAILED",
    "CUSTOM_TASK_STARTED",
    "CUSTOM_TASK_IN_PROGRESS",
    "CUSTOM_TASK_COMPLETED",
    "CUSTOM_TASK_FAILED",
    "CUSTOM_TASK_TIMED_OUT",
    "CUSTOM_TASK_CANCELED",
    "ACTIVITY_TASK_STARTED",
    "ACTIVITY_TASK_COMPLETED",
    "ACTIVITY_TASK_RETRYING",
    "ACTIVITY_TASK_FAILED",
)
FILTER_REQUIRED = (
    "One of root_workflow_exec_id, parent_workflow_exec_id or workflow_exec_id is required: "
    "a workspace-wide event stream is not served"
)
PING = b": ping\n\n"
UNAVAILABLE = {"detail": "An error occurred", "code": "WF_1400"}  # the docs' 5xx body
REFUSED = "Stream refused (simulated)"


def stream_events(sim: Simulator, request: Request) -> Answer:
    """Validate the request and open a stream (or answer why not)."""
    query = ListQuery(request)
    params = query.params

    def given(name: str) -> str | None:
        value = params.get(name)
        return None if value in (None, "", "*") else value

    scope = query.choice("scope", SCOPES, "*")
    start_seq = query.integer("start_seq", 0, minimum=0)
    types = query.statuses("workflow_event_types", EVENT_TYPES)
    header = request.headers.get("last-event-id")
    after: int | None = None
    if header is not None and header.strip():
        try:
            after = int(header.strip())
        except ValueError:
            query.errors.append(_error("header", "last-event-id", "int_parsing", header))
    if all(given(name) is None for name in EXEC_FILTERS):
        query.errors.append(
            {**_error("query", "root_workflow_exec_id", "missing", None), "msg": FILTER_REQUIRED}
        )
    query.raise_errors()
    refusal = sim.stream_refusal()
    if refusal is not None or sim.streams_closing:
        status = refusal or 503
        body = UNAVAILABLE if status >= 500 else {"detail": REFUSED}
        return status, JSONResponse(body, status_code=status)
    flt = StreamFilter(
        workflow_exec_id=given("workflow_exec_id"),
        root_workflow_exec_id=given("root_workflow_exec_id"),
        parent_workflow_exec_id=given("parent_workflow_exec_id"),
        workflow_name=given("workflow_name"),
        scope=None if scope == "*" else scope,
        event_types=frozenset(types) if types else None,
    )
    start = start_seq if start_seq > 0 or after is None else max(0, after + 1)
    connection = sim.open_stream(
        flt,
        start_seq=start,
        requested_start_seq=start_seq if "start_seq" in params else None,
        last_event_id=header,
    )
    return 200, EventStream(sim, connection)


class EventStream(StreamingResponse):
    """The SSE response of one connection; the connection is marked closed however the
    response ends (the server closing it, the client going away, cancellation)."""

    def __init__(self, sim: Simulator, connection: StreamConnection) -> None:
        super().__init__(
            _frames(sim, connection),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self.sim = sim
        self.connection = connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.sim.close_stream(self.connection, "client")


def frame(event: WorkflowEvent) -> bytes:
    data = json.dumps(event.payload(), separators=(",", ":"))
    return f"id: {event.seq}\ndata: {data}\n\n".encode()


def error_frame(error: str, reason: str) -> bytes:
    data = json.dumps({"error": error, "reason": reason}, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()


async def _frames(sim: Simulator, connection: StreamConnection) -> AsyncIterator[bytes]:
    """Replay, then follow, until the server closes the stream or the client leaves."""
    matches = connection.filter.matches
    last_ping = time.monotonic()
    while True:
        sim.advance()
        if connection.pending_error is not None:
            error, reason, close = connection.pending_error
            connection.pending_error = None
            yield error_frame(error, reason)
            if close:
                sim.close_stream(connection, "error")
                return
        closed_by = sim.close_reason(connection)
        if closed_by is not None:
            sim.close_stream(connection, closed_by)
            return
        done = sim.tree_done(connection.filter)
        for event in sim.events_from(connection.position, matches):
            yield frame(event)
            sim.sent(connection, event)
        if done:
            sim.close_stream(connection, "ended")
            return
        now = time.monotonic()
        if now >= last_ping + sim.stream_faults.ping_interval:
            yield PING
            last_ping = now
        wait = min(sim.stream_tick, last_ping + sim.stream_faults.ping_interval - now)
        deadline = sim.idle_deadline(connection)
        if deadline is not None:
            wait = min(wait, deadline - now)
        await sim.wait_change(wait)


def _error(where: str, name: str, kind: str, value: Any) -> dict[str, Any]:
    messages = {
        "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
        "missing": "Field required",
    }
    return {"type": kind, "loc": [where, name], "msg": messages[kind], "input": value}
