"""Workflows executions and stream frames as watcher reads them, and the family's facts as
the diff reports them (workflows reference §3, §6, §7)."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest

from tests.unit.sources.workflow_fakes import T, config, execution, frame, iso
from watcher.detect.diff import diff
from watcher.model.jobs import Job, MalformedItem, StreamEvent
from watcher.model.snapshot import JobKind, Snapshot
from watcher.model.transitions import Transition
from watcher.sources.workflow_jobs import MESSAGE_LIMIT, parse_execution, parse_frame
from watcher.sources.workflows import WorkflowsSource

# --- parse_execution -------------------------------------------------------------------


def test_the_reference_example_is_read_field_by_field() -> None:
    """Every field of ``WorkflowExecutionWithoutResultResponse`` lands where messages and
    rules look for it; fields watcher does not model are kept as sent."""
    raw = {
        "workflow_name": "support-workflow",
        "workflow_id": "5f0c6a0e-2f7b-4c52-9d1e-3c2b1f9e8a11",
        "deployment_name": "prod",
        "execution_id": "019b2bd7-96e7-7219-8c0b-45a73da50088",
        "parent_execution_id": None,
        "root_execution_id": "019b2bd7-96e7-7219-8c0b-45a73da50088",
        "run_id": "7d0c2b8e-0b7e-4b8e-9a59-2b1f0c9d3e44",
        "user_id": "u_123",
        "status": "FAILED",
        "start_time": "2026-08-01T10:25:07.818693Z",
        "end_time": "2026-08-01T10:26:10.001Z",
        "total_duration_ms": 62183,
        "search_keys": {"customer": "acme"},
        "brand_new_field": [1, 2],
    }
    job = parse_execution(raw)
    assert "019b2bd7-96e7-7219-8c0b-45a73da50088" == job.id
    assert "FAILED" == job.status
    assert T == job.created_at
    assert T + 63 == job.modified_at  # the end, to the second
    view = job.view
    assert "7d0c2b8e-0b7e-4b8e-9a59-2b1f0c9d3e44" == view["run_id"]
    assert "support-workflow" == view["workflow_name"]
    assert "prod" == view["deployment_name"]
    assert "2026-08-01T10:25:07.818693Z" == view["start_time"]
    assert "2026-08-01T10:26:10.001Z" == view["end_time"]
    assert view["parent_execution_id"] is None
    assert job.id == view["root_execution_id"]
    assert "u_123" == view["user_id"]
    assert 62183 == view["total_duration_ms"]
    assert "metadata" not in view  # no expected duration configured
    assert {"brand_new_field": [1, 2]} == job.extra
    assert "FAILED" == job.summary()["status"]


def test_a_detail_answer_is_read_like_a_list_item() -> None:
    """``GET /executions/{id}`` adds ``result`` (any JSON, maybe huge or encrypted): it is
    not kept."""
    raw = execution(status="COMPLETED", ended=T + 5, result={"value": "x" * 10_000})
    job = parse_execution(raw)
    assert "COMPLETED" == job.status
    assert "result" not in job.extra and "result" not in job.view


@pytest.mark.parametrize("status", [None, "missing"])
def test_a_null_or_missing_status_is_unknown(status: str | None) -> None:
    raw = execution(status=status)
    if status == "missing":
        del raw["status"]
    assert "UNKNOWN" == parse_execution(raw).status


def test_a_status_is_read_in_any_case() -> None:
    assert "TIMED_OUT" == parse_execution(execution(status=" timed_out ")).status


def test_a_continued_as_new_row_is_a_running_execution() -> None:
    """The row of the run that continued as new: the execution goes on (same id, new run),
    ``run_status`` says what the run did."""
    raw = execution(status="CONTINUED_AS_NEW", ended=T + 100, run_id="run-1")
    job = parse_execution(raw)
    assert "RUNNING" == job.status
    assert "CONTINUED_AS_NEW" == job.view["run_status"]
    assert "run-1" == job.view["run_id"]
    assert T == job.modified_at  # not ended


@pytest.mark.parametrize(
    "start",
    [
        "2026-08-01T10:25:07Z",
        "2026-08-01T10:25:07.818693Z",
        "2026-08-01T10:25:07.818693123Z",  # nanosecond fraction
        "2026-08-01T12:25:07+02:00",
        "2026-08-01T10:25:07",  # no zone: UTC
        "2026-08-01 10:25:07z",
        T,
        T * 1000,
        T * 1_000_000_000,  # Unix nanoseconds
        str(T),
        float(T) + 0.5,
    ],
)
def test_start_times_in_every_shape(start: Any) -> None:
    raw = execution()
    raw["start_time"] = start
    assert T == parse_execution(raw).created_at


@pytest.mark.parametrize("end", ["soon", "", {"at": 1}, True, -5])
def test_an_unreadable_end_time_is_no_end(end: Any) -> None:
    raw = execution(status="COMPLETED")
    raw["end_time"] = end
    job = parse_execution(raw)
    assert "COMPLETED" == job.status
    assert T == job.modified_at


def test_an_end_before_the_start_does_not_move_time_back() -> None:
    job = parse_execution(execution(status="FAILED", ended=T - 500))
    assert T == job.modified_at


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="null"),
        pytest.param([execution()], id="a list"),
        pytest.param("exec-1", id="a string"),
        pytest.param({k: v for k, v in execution().items() if k != "execution_id"}, id="no id"),
        pytest.param(execution(execution_id=""), id="empty id"),
        pytest.param({**execution(), "execution_id": 42}, id="numeric id"),
        pytest.param(execution(execution_id="a" * 257), id="id over 256"),
        pytest.param(execution(execution_id="x" * 10_000), id="10 kB id"),
        pytest.param(execution(execution_id="exec\n1"), id="newline in id"),
        pytest.param(execution(execution_id="exec\x1b[31m"), id="escape in id"),
        pytest.param(execution(execution_id="exec-\ud800"), id="lone surrogate in id"),
        pytest.param({k: v for k, v in execution().items() if k != "start_time"}, id="no start"),
        pytest.param({**execution(), "start_time": None}, id="null start"),
        pytest.param({**execution(), "start_time": "yesterday"}, id="prose start"),
        pytest.param({**execution(), "start_time": "1969-12-31T23:59:59Z"}, id="before 1970"),
        pytest.param({**execution(), "start_time": [T]}, id="list start"),
        pytest.param({**execution(), "start_time": True}, id="boolean start"),
        pytest.param({**execution(), "start_time": float("nan")}, id="NaN start"),
        pytest.param({**execution(), "status": 3}, id="numeric status"),
        pytest.param({**execution(), "status": "RUN\x00NING"}, id="NUL in status"),
        pytest.param({**execution(), "status": "R" * 10_000}, id="10 kB status"),
    ],
)
def test_unusable_executions_are_malformed_items(raw: Any) -> None:
    with pytest.raises(MalformedItem):
        parse_execution(raw)


def test_hostile_optional_fields_are_tolerated() -> None:
    """Optional fields of the wrong type are dropped; text is kept as valid UTF-8 (it is
    escaped where it is shown, not here), however long."""
    raw = execution(
        workflow="w\x1b[2J\x07" + "n" * 10_000,
        deployment="dep-\ud800",
        run_id={"not": "a string"},  # type: ignore[arg-type]
    )
    raw.update(user_id=["u"], total_duration_ms="12", parent_execution_id=7)
    job = parse_execution(raw)
    assert job.view["workflow_name"].startswith("w\x1b[2J\x07nnn")
    assert 10_006 == len(job.view["workflow_name"])
    json.dumps(job.summary()).encode("utf-8")  # no lone surrogate left
    assert "\ud800" not in job.view["deployment_name"]
    assert job.view["run_id"] is None
    assert job.view["user_id"] is None
    assert job.view["total_duration_ms"] is None
    assert "7" == job.view["parent_execution_id"]


def test_a_missing_root_is_the_execution_itself() -> None:
    raw = execution()
    del raw["root_execution_id"]
    assert "exec-1" == parse_execution(raw).view["root_execution_id"]


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        ("support-workflow", 600.0),  # the first glob that matches wins
        ("support-nightly", 7200.0),
        ("billing", 60.0),
        ("other", None),
    ],
)
def test_expected_durations_by_glob(workflow: str, expected: float | None) -> None:
    durations = {"support-w*": 600.0, "support-*": 7200.0, "bill?ng": 60.0}
    job = parse_execution(execution(workflow=workflow), durations)
    if expected is None:
        assert "metadata" not in job.view
    else:
        assert {"expected_duration_seconds": expected} == job.view["metadata"]


def test_expected_durations_come_from_the_config() -> None:
    """``expected_durations`` in the config (durations as text) reach the jobs the source
    parses, so that the overrun rule sees them."""
    settings = config(expected_durations={"support-*": "2h"})
    src = WorkflowsSource(settings, httpx.AsyncClient())
    assert {"expected_duration_seconds": 7200.0} == src.parse(execution()).view["metadata"]


# --- parse_frame -----------------------------------------------------------------------


def test_the_reference_frame_is_read() -> None:
    body = frame(42, "WORKFLOW_EXECUTION_FAILED", run_id="7d0c2b8e-x", event_id="evt_9",
                 at=1785579970001000000, failure={"message": "KeyError: 'customer'"},
                 attempt=1)  # fmt: skip
    event = parse_frame(json.dumps(body))
    assert event == StreamEvent(
        id="evt_9",
        type="WORKFLOW_EXECUTION_FAILED",
        at=1785579970,
        sequence=42,
        job_id="exec-1",
        run_id="7d0c2b8e-x",
        attributes={"task_id": "t1", "failure": {"message": "KeyError: 'customer'"}, "attempt": 1},
    )


@pytest.mark.parametrize(
    "data",
    [
        '{"error": "stream_failed", "reason": "upstream closed"}',
        "[]",
        '"text"',
        "42",
        "null",
        '{"stream": "token", "data": {}}',  # no broker_sequence
    ],
)
def test_what_is_not_an_event_payload_is_none(data: str) -> None:
    assert parse_frame(data) is None


@pytest.mark.parametrize("data", ["", "not json", "{", "data: {}", "[" * 100_000 + "]" * 100_000])
def test_what_is_not_json_is_malformed(data: str) -> None:
    with pytest.raises(MalformedItem):
        parse_frame(data)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"broker_sequence": -1}, id="negative sequence"),
        pytest.param({"broker_sequence": "42"}, id="sequence as text"),
        pytest.param({"broker_sequence": None}, id="null sequence"),
        pytest.param({"broker_sequence": True}, id="boolean sequence"),
        pytest.param({"data": None}, id="null data"),
        pytest.param({"data": ["x"]}, id="list data"),
    ],
)
def test_a_payload_without_sequence_or_data_is_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedItem):
        parse_frame(json.dumps({**frame(1, "ACTIVITY_TASK_RETRYING"), **change}))


def test_the_run_chain_fields_may_be_absent() -> None:
    """[PY] makes them optional: ``continued_run_id``, ``first_execution_run_id``,
    ``chain_run_id``, ``schedule_id``."""
    body = frame(7, "WORKFLOW_EXECUTION_STARTED")
    for name in ("continued_run_id", "first_execution_run_id", "schedule_id"):
        del body["data"][name]
    del body["metadata"], body["timestamp"]
    event = parse_frame(json.dumps(body))
    assert event is not None
    assert (7, "run-1") == (event.sequence, event.run_id)


def test_the_execution_id_may_come_from_the_context_only() -> None:
    body = frame(3, "ACTIVITY_TASK_RETRYING", job_id="child-1", root="exec-1")
    del body["data"]["workflow_exec_id"]
    event = parse_frame(json.dumps(body))
    assert event is not None and "child-1" == event.job_id
    del body["workflow_context"]["workflow_exec_id"]
    with pytest.raises(MalformedItem):
        parse_frame(json.dumps(body))


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        (1785579970001000000, 1785579970),  # Unix nanoseconds (the schema)
        ("2026-08-01T10:26:10.001Z", 1785579970),  # an ISO string (a docs example)
        ("2026-08-01T10:26:10", 1785579970),
        (1785579970, 1785579970),
    ],
)
def test_event_timestamps_in_both_documented_shapes(stamp: Any, seconds: int) -> None:
    event = parse_frame(json.dumps(frame(1, "WORKFLOW_EXECUTION_COMPLETED", at=stamp)))
    assert event is not None and seconds == event.at


def test_an_unreadable_event_timestamp_falls_back_to_the_envelope() -> None:
    body = frame(1, "WORKFLOW_EXECUTION_COMPLETED", at="later")
    body["timestamp"] = "2026-08-01T10:26:10Z"
    event = parse_frame(json.dumps(body))
    assert event is not None and 1785579970 == event.at


def test_deeply_nested_attributes_are_kept() -> None:
    nested: Any = "deep"
    for _ in range(200):
        nested = {"x": nested}
    event = parse_frame(json.dumps(frame(1, "CUSTOM_TASK_IN_PROGRESS", payload=nested)))
    assert event is not None and "payload" in event.attributes


def test_hostile_frame_text_is_bounded_and_valid_utf8() -> None:
    body = frame(5, "ACTIVITY_TASK_RETRYING" + "\x1b" * 500, event_id="e-\ud800" + "i" * 1000)
    event = parse_frame(json.dumps(body))
    assert event is not None
    assert len(event.id) <= 256 and len(event.type) <= 128
    (event.id + event.type).encode("utf-8")


def test_a_missing_event_id_is_derived_from_the_sequence() -> None:
    body = frame(9, "ACTIVITY_TASK_FAILED")
    del body["data"]["event_id"]
    event = parse_frame(json.dumps(body))
    assert event is not None and "seq-9" == event.id


# --- the family's facts, through the diff ----------------------------------------------


@pytest.fixture
def kind() -> JobKind:
    """The source's own JobKind."""
    return WorkflowsSource(config(), httpx.AsyncClient()).kind


def job(status: str = "RUNNING", *, run: str = "run-1", stream: tuple[Any, ...] = (),
        **kwargs: Any) -> Job:  # fmt: skip
    """exec-1 in ``status`` (its run ``run``), with the stream's events."""
    ended = T + 600 if status not in ("RUNNING", "CONTINUED_AS_NEW") else None
    parsed = parse_execution(execution(status=status, run_id=run, ended=ended, **kwargs))
    events = tuple(e if isinstance(e, StreamEvent) else event(*e) for e in stream)
    return parsed.model_copy(update={"stream": events})


def event(sequence: int, type_: str, run: str = "run-1", **attributes: Any) -> StreamEvent:
    parsed = parse_frame(json.dumps(frame(sequence, type_, run_id=run, **attributes)))
    assert parsed is not None
    return parsed


def seen(kind: JobKind, current: Job, previous: Snapshot | None = None) -> Snapshot:
    return diff(previous, current, source="wf", kind=kind)[0]


def found(kind: JobKind, previous: Snapshot | None, current: Job) -> list[Transition]:
    return diff(previous, current, source="wf", kind=kind)[1]


def test_an_activity_retry_and_its_final_failure(kind: JobKind) -> None:
    before = seen(kind, job())
    failure = {"message": "TimeoutError: crm"}
    current = job(stream=((10, "ACTIVITY_TASK_RETRYING", "run-1"),))
    current = job(stream=(
        event(10, "ACTIVITY_TASK_RETRYING", activity_name="fetch_crm", attempt=1, failure=failure),
        event(11, "ACTIVITY_TASK_RETRYING", activity_name="fetch_crm", attempt=2, failure=failure),
        event(12, "ACTIVITY_TASK_FAILED", activity_name="fetch_crm", attempt=3, failure=failure),
    ))  # fmt: skip
    out = found(kind, before, current)
    assert [
        "workflow.activity.retrying",
        "workflow.activity.retrying",
        "workflow.activity.failed",
    ] == [t.type for t in out]
    assert {"exec-1"} == {t.job_id for t in out}
    activity = out[2].details["activity"]
    assert ("fetch_crm", 3, "TimeoutError: crm") == (
        activity["name"],
        activity["attempt"],
        activity["failure"]["message"],
    )
    assert T + 60 + 12 == out[2].occurred_at
    assert 3 == len({t.id for t in out})
    # Replayed after a restart (same events from the committed position): same ids.
    replay = found(kind, seen(kind, current, before), current)
    assert [t.id for t in out] == [t.id for t in replay]


def test_a_failure_message_is_bounded(kind: JobKind) -> None:
    before = seen(kind, job())
    huge = {"message": "m" * 50_000}
    current = job(stream=(event(1, "ACTIVITY_TASK_FAILED", failure=huge, attempt=5),))
    (out,) = found(kind, before, current)
    assert MESSAGE_LIMIT == len(out.details["activity"]["failure"]["message"])


def continued_ids(kind: JobKind) -> dict[str, list[Transition]]:
    """A continue-as-new of run-1 into run-2, as each observer can see it."""
    before = seen(kind, job(run="run-1"))
    can = event(20, "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", "run-1", new_execution_run_id="run-2")
    after_can_row = seen(kind, job("CONTINUED_AS_NEW", run="run-1"), before)
    return {
        "stream, then GET of the new run": found(kind, before, job(run="run-2", stream=(can,))),
        "stream, GET of the CAN row": found(
            kind, before, job("CONTINUED_AS_NEW", run="run-1", stream=(can,))
        ),
        "poll: the run changed": found(kind, before, job(run="run-2")),
        "poll: a CAN row": found(kind, before, job("CONTINUED_AS_NEW", run="run-1")),
        "poll: a CAN row, then the new run": found(kind, after_can_row, job(run="run-2")),
        "poll: a CAN row, then the stream": found(
            kind, after_can_row, job(run="run-2", stream=(can,))
        ),
    }


def test_a_continue_as_new_is_one_fact_whoever_sees_it(kind: JobKind) -> None:
    seen_as = continued_ids(kind)
    for how, out in seen_as.items():
        assert ["workflow.execution.continued_as_new"] == [t.type for t in out], how
        assert "RUNNING" == out[0].job["status"], how
    assert 1 == len({out[0].id for out in seen_as.values()}), {
        how: out[0].id for how, out in seen_as.items()
    }
    stream = seen_as["stream, then GET of the new run"][0]
    assert ("run-1", "run-2") == (stream.details["run_id"], stream.details["new_run_id"])
    assert T + 60 + 20 == stream.occurred_at


def test_a_workflow_level_retry_is_retrying_not_failed(kind: JobKind) -> None:
    """FAILED fires on every failing attempt: one followed by a new run of the execution
    is a retry."""
    before = seen(kind, job(run="run-1"))
    failed = event(30, "WORKFLOW_EXECUTION_FAILED", "run-1", attempt=1,
                   failure={"message": "KeyError: 'customer'"})  # fmt: skip
    out = found(kind, before, job(run="run-2", stream=(failed,)))
    assert ["workflow.execution.retrying"] == [t.type for t in out]
    assert 1 == out[0].details["attempt"]
    assert "KeyError: 'customer'" == out[0].details["failure"]["message"]
    assert "run-1" == out[0].details["run_id"]


def test_the_final_failure_says_why(kind: JobKind) -> None:
    before = seen(kind, job(run="run-2"))
    failed = event(31, "WORKFLOW_EXECUTION_FAILED", "run-2", attempt=3,
                   failure={"message": "ValueError: bad input"})  # fmt: skip
    out = found(kind, before, job("FAILED", run="run-2", stream=(failed,)))
    assert ["workflow.execution.failed"] == [t.type for t in out]
    assert ("RUNNING", "FAILED") == (out[0].previous_status, out[0].status)
    assert {"attempt": 3, "failure": {"message": "ValueError: bad input"}} == out[0].details


def test_the_failure_is_the_last_run_s_not_a_retried_attempt_s(kind: JobKind) -> None:
    """A FAILED execution whose last run ended without its own event (a timeout of the
    attempt, say) does not borrow the message of an earlier, retried attempt."""
    before = seen(kind, job(run="run-1"))
    earlier = event(10, "WORKFLOW_EXECUTION_FAILED", "run-1", attempt=1,
                    failure={"message": "first attempt"})  # fmt: skip
    out = found(kind, before, job("FAILED", run="run-2", stream=(earlier,)))
    assert {"workflow.execution.retrying", "workflow.execution.failed"} == {t.type for t in out}
    (failed,) = [t for t in out if t.type == "workflow.execution.failed"]
    assert {} == failed.details


def test_a_cancel_says_its_reason(kind: JobKind) -> None:
    before = seen(kind, job())
    canceled = event(5, "WORKFLOW_EXECUTION_CANCELED", reason="operator asked")
    (out,) = found(kind, before, job("CANCELED", stream=(canceled,)))
    assert "workflow.execution.canceled" == out.type
    assert "operator asked" == out.details["reason"]


@pytest.mark.parametrize("status", ["TERMINATED", "TIMED_OUT"])
def test_silent_endings_come_from_the_status_alone(kind: JobKind, status: str) -> None:
    before = seen(kind, job())
    snapshot, out = diff(before, job(status), source="wf", kind=kind)
    assert [f"workflow.execution.{status.lower()}"] == [t.type for t in out]
    assert {} == out[0].details
    assert snapshot.terminal


def test_a_continue_as_new_does_not_end_the_execution(kind: JobKind) -> None:
    assert not seen(kind, job("CONTINUED_AS_NEW")).terminal


def test_unknown_event_types_and_statuses_are_kept(kind: JobKind) -> None:
    before = seen(kind, job())
    odd = (
        event(1, "WORKFLOW_EXECUTION_PAUSED", note="new"),
        event(2, "CUSTOM_TASK_IN_PROGRESS", custom_task_id="c", payload={"type": "json_patch"}),
        event(3, "ACTIVITY_TASK_RETRYING", "run-1", attempt="two", failure="plain text"),
        event(4, "WORKFLOW_EXECUTION_FAILED", None, failure=None),  # type: ignore[arg-type]
    )
    snapshot, out = diff(before, job("PAUSED", stream=odd), source="wf", kind=kind)
    assert ["workflow.activity.retrying", "workflow.execution.paused"] == sorted(
        t.type for t in out
    )
    retry = next(t for t in out if t.type == "workflow.activity.retrying")
    assert retry.details["activity"]["attempt"] is None
    assert "plain text" == retry.details["activity"]["failure"]["message"]
    assert not snapshot.terminal


def test_a_new_execution_seen_first_by_the_stream(kind: JobKind) -> None:
    """No snapshot yet: its status and the stream's facts are all reported."""
    retrying = event(2, "ACTIVITY_TASK_RETRYING", attempt=1, failure={"message": "x"})
    out = found(kind, None, job(stream=(event(1, "WORKFLOW_EXECUTION_STARTED"), retrying)))
    assert {"workflow.execution.running", "workflow.activity.retrying"} == {t.type for t in out}


def test_the_start_time_is_iso_in_the_view() -> None:
    assert iso(T) == parse_execution(execution()).view["start_time"]
