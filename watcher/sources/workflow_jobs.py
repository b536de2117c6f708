"""Workflows executions as watcher understands them: the parser of one execution (a
``/v1/workflows/runs`` item or a ``/v1/workflows/executions/{id}`` answer), the parser of
one event-stream frame, and the family's facts (pure: no I/O).

An execution keeps its ``execution_id`` across runs (workflows reference §6): a
continue-as-new or a workflow-level retry starts a new run under the same id, so watcher's
execution is RUNNING until a terminal status that is not CONTINUED_AS_NEW. A row that shows
the old run's CONTINUED_AS_NEW is read as RUNNING (``run_status`` says what the run did).

Facts, each under one id whoever saw it first (the stream or a poll):

- ``workflow.execution.continued_as_new`` / ``workflow.execution.retrying``: the execution
  went on in a new run (id derived from the run that ended);
- ``workflow.activity.retrying`` / ``workflow.activity.failed``: from the stream only (id
  derived from the event's ``event_id``).

A status change to FAILED or CANCELED says why when the stream did (``failure``, ``reason``).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import types
from watcher.model.jobs import (
    Job,
    MalformedItem,
    StreamEvent,
    key,
    moment,
    opt_int,
    opt_str,
    text,
)
from watcher.model.snapshot import Fact, Snapshot

MESSAGE_LIMIT = 2000  # characters of a failure message kept
CONTINUED = "CONTINUED_AS_NEW"

# Stream event types (reference §7.6) that tell something a poll cannot.
STARTED = "WORKFLOW_EXECUTION_STARTED"
COMPLETED = "WORKFLOW_EXECUTION_COMPLETED"
FAILED = "WORKFLOW_EXECUTION_FAILED"
CANCELED = "WORKFLOW_EXECUTION_CANCELED"
CONTINUED_EVENT = "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
ACTIVITY_RETRYING = "ACTIVITY_TASK_RETRYING"
ACTIVITY_FAILED = "ACTIVITY_TASK_FAILED"
# The events that end a run: a GET confirms what became of the execution.
LIFECYCLE = frozenset({STARTED, COMPLETED, FAILED, CANCELED, CONTINUED_EVENT})
KEPT = LIFECYCLE | {ACTIVITY_RETRYING, ACTIVITY_FAILED}

_MODELED = frozenset(
    {
        "execution_id", "status", "start_time", "end_time", "workflow_name", "workflow_id",
        "deployment_name", "parent_execution_id", "root_execution_id", "run_id", "user_id",
        "total_duration_ms", "result", "search_keys",
    }
)  # fmt: skip


def expected_for(durations: Mapping[str, float], workflow: str | None) -> float | None:
    """The expected duration configured for ``workflow`` (the first glob that matches)."""
    if workflow is None:
        return None
    for pattern, seconds in durations.items():
        if fnmatch.fnmatchcase(workflow, pattern):
            return seconds
    return None


def parse_execution(raw: Any, durations: Mapping[str, float] | None = None) -> Job:
    """A :class:`Job` from one execution; ``execution_id`` and ``start_time`` are required,
    a missing or null status is kept as ``UNKNOWN``."""
    if not isinstance(raw, Mapping):
        raise MalformedItem("execution is not a JSON object")
    job_id = key(raw.get("execution_id"), field="execution_id", limit=256)
    status_raw = raw.get("status")
    status = key(status_raw, field="status", limit=128) if status_raw is not None else "UNKNOWN"
    status = status.strip().upper()
    started = moment(raw.get("start_time"), field="start_time")
    ended = None if raw.get("end_time") is None else _optional(raw.get("end_time"), "end_time")
    workflow = opt_str(raw.get("workflow_name"))
    view: dict[str, Any] = {
        "run_id": opt_str(raw.get("run_id")),
        "workflow_name": workflow,
        "deployment_name": opt_str(raw.get("deployment_name")),
        "start_time": opt_str(raw.get("start_time")),
        "end_time": opt_str(raw.get("end_time")),
        "parent_execution_id": opt_str(raw.get("parent_execution_id")),
        "root_execution_id": opt_str(raw.get("root_execution_id")) or job_id,
        "user_id": opt_str(raw.get("user_id")),
        "attempt": None,  # only the stream tells (carried over from what it said)
        "total_duration_ms": opt_int(raw.get("total_duration_ms")),
    }
    if status == CONTINUED:
        status, view["run_status"] = "RUNNING", CONTINUED  # the execution goes on
        ended = None
    expected = expected_for(durations or {}, workflow)
    if expected is not None:
        view["metadata"] = {"expected_duration_seconds": expected}
    return Job(
        id=job_id,
        status=status,
        created_at=started,
        modified_at=max(started, ended or started),
        view=view,
        extra={k: v for k, v in raw.items() if k not in _MODELED},
    )


def _optional(value: Any, field: str) -> int | None:
    try:
        return moment(value, field=field)
    except MalformedItem:
        return None


def carry(job: Job, previous: Snapshot | None) -> Job:
    """What only the stream told of an execution (its attempt) stays known when a list item
    that cannot say it comes."""
    if previous is None or job.view.get("attempt") is not None:
        return job
    attempt = previous.job.get("attempt")
    if attempt is None or previous.job.get("run_id") != job.view.get("run_id"):
        return job
    return job.model_copy(update={"view": {**job.view, "attempt": attempt}})


def parse_frame(data: str) -> StreamEvent | None:
    """One stream frame's ``data`` (a ``StreamEventSsePayload``) as a :class:`StreamEvent`;
    ``None`` for what is not one (an ``{error, reason}`` body, a frame of another shape).
    Raises :class:`MalformedItem` for data that is not JSON."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise MalformedItem("stream frame is not JSON") from None
    if not isinstance(body, Mapping) or "broker_sequence" not in body:
        return None
    sequence = opt_int(body.get("broker_sequence"))
    event = body.get("data")
    if sequence is None or sequence < 0 or not isinstance(event, Mapping):
        raise MalformedItem("stream frame has no broker_sequence or data")
    context = body.get("workflow_context")
    return parse_event(event, sequence, context, body.get("timestamp"))


def parse_event(
    event: Any, sequence: int, context: Any = None, envelope_time: Any = None
) -> StreamEvent:
    """One event (the ``data`` of a stream frame, or an item of ``/events/list``), at
    ``sequence`` in its stream (an item of a list has its rank)."""
    if not isinstance(event, Mapping):
        raise MalformedItem("event is not a JSON object")
    context = context if isinstance(context, Mapping) else {}
    job_id = key(
        event.get("workflow_exec_id") or context.get("workflow_exec_id"),
        field="workflow_exec_id",
        limit=256,
    )
    at = _optional(event.get("event_timestamp"), "event_timestamp")
    if at is None:
        at = _optional(envelope_time, "timestamp") or 0
    attributes = event.get("attributes")
    return StreamEvent(
        id=text(str(event.get("event_id") or f"seq-{sequence}"))[:256],
        type=text(str(event.get("event_type") or "UNKNOWN"))[:128],
        at=at,
        sequence=sequence,
        job_id=job_id,
        run_id=opt_str(event.get("workflow_run_id")),
        attributes=dict(attributes) if isinstance(attributes, Mapping) else {},
    )


def _message(attributes: Mapping[str, Any]) -> str | None:
    failure = attributes.get("failure")
    message = failure.get("message") if isinstance(failure, Mapping) else failure
    return text(str(message))[:MESSAGE_LIMIT] if message is not None else None


def _activity(event: StreamEvent) -> dict[str, Any]:
    attributes = event.attributes
    return {
        "run_id": event.run_id,
        "activity": {
            "name": opt_str(attributes.get("activity_name")),
            "attempt": opt_int(attributes.get("attempt")),
            "failure": {"message": _message(attributes)},
            "task_id": opt_str(attributes.get("task_id")),
        },
    }


def _new_run(previous: Snapshot | None, current: Job) -> Fact | None:
    """The execution went on in a new run, as a poll sees it: the row shows its old run's
    CONTINUED_AS_NEW, or another run than the last one seen."""
    run = current.view.get("run_id")
    if current.view.get("run_status") == CONTINUED and run:
        return _continued(str(run), None, None)
    old = previous.job.get("run_id") if previous is not None else None
    if old and run and old != run:
        return _continued(str(old), str(run), None)
    return None


def _continued(run: str, new_run: str | None, at: int | None) -> Fact:
    return Fact(
        key=(run,),
        type=types.status_slug(CONTINUED),
        occurred_at=at,
        details={
            "status": CONTINUED,
            "previous_status": "RUNNING",
            "run_id": run,
            "new_run_id": new_run,
        },
        ident=("run", run),
    )


def _retrying(event: StreamEvent) -> Fact:
    run = event.run_id or ""
    return Fact(
        key=(run,),
        type=types.RETRYING,
        occurred_at=event.at,
        details={
            "attempt": opt_int(event.attributes.get("attempt")),
            "failure": {"message": _message(event.attributes)},
            "run_id": event.run_id,
        },
        ident=("run", run),
    )


def _from_event(event: StreamEvent, current: Job) -> Fact | None:
    """The fact one stream event tells (``None``: it tells none of its own)."""
    if event.type in (ACTIVITY_RETRYING, ACTIVITY_FAILED):
        suffix = types.RETRYING if event.type == ACTIVITY_RETRYING else types.ACTIVITY_FAILED
        return Fact(
            key=("event", event.id),
            type=suffix,
            occurred_at=event.at,
            details=_activity(event),
            prefix=types.WORKFLOW_ACTIVITY,
        )
    if event.type == CONTINUED_EVENT and event.run_id:
        new_run = opt_str(event.attributes.get("new_execution_run_id"))
        return _continued(event.run_id, new_run, event.at)
    # A failing attempt that a workflow-level retry ran again under a new run (whatever
    # became of that run).
    retried = current.view.get("run_id") not in (None, event.run_id)
    if event.type == FAILED and event.run_id and retried:
        return _retrying(event)
    return None


def workflow_facts(previous: Snapshot | None, current: Job) -> Sequence[Fact]:
    """The :class:`~watcher.model.snapshot.JobKind` facts of an execution: what its stream
    events tell, then a new run a poll noticed (same id as the stream's)."""
    out: list[Fact] = []
    runs: set[object] = set()
    for event in sorted(current.stream, key=lambda e: e.sequence):
        fact = _from_event(event, current)
        if fact is not None and (fact.ident is None or fact.ident not in runs):
            out.append(fact)
            runs.add(fact.ident)
    polled = _new_run(previous, current)
    if polled is not None and polled.ident not in runs:
        out.append(polled)
    return out


def status_details(current: Job, status: str) -> Mapping[str, Any]:
    """Why the execution entered ``status``, when its stream said (``failure`` of FAILED,
    ``reason`` of CANCELED) and the attempt that ended."""
    wanted = {"FAILED": FAILED, "CANCELED": CANCELED, "COMPLETED": COMPLETED}.get(status)
    run = current.view.get("run_id")
    for event in sorted(current.stream, key=lambda e: -e.sequence):
        if event.type != wanted or run not in (None, event.run_id):
            continue  # another event, or an earlier attempt's
        details: dict[str, Any] = {}
        attempt = opt_int(event.attributes.get("attempt"))
        if attempt is not None:
            details["attempt"] = attempt
        if wanted == FAILED:
            details["failure"] = {"message": _message(event.attributes)}
        elif wanted == CANCELED:
            details["reason"] = opt_str(event.attributes.get("reason"))
        return details
    return {}


def attempt_of(events: Sequence[StreamEvent], run_id: str | None) -> int | None:
    """The attempt the stream last gave for the run ``run_id``."""
    for event in sorted(events, key=lambda e: -e.sequence):
        if event.run_id == run_id and event.type in LIFECYCLE:
            attempt = opt_int(event.attributes.get("attempt"))
            if attempt is not None:
                return attempt
    return None
