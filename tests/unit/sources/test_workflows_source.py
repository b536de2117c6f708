"""The Workflows source's cycles against an in-memory ``/v1/workflows/runs`` and
``/v1/workflows/executions/{id}`` (httpx.MockTransport): listings by watermark and status,
token paging, filters, and the hinted cycles the event streams wake."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest

from tests.unit.sources.workflow_fakes import Harness, RunsApi, T, execution, frame
from watcher.exceptions import SourceProtocolError
from watcher.model.jobs import StreamEvent
from watcher.sources.jobs import iso
from watcher.sources.workflow_jobs import parse_frame
from watcher.sources.workflows import DEFER_AT_MOST, RESYNC_WINDOW

NOW = float(T + 3600)  # the harness's first cycle


def ev(h: Harness, sequence: int, type_: str, job_id: str = "exec-1", *, root: str = "exec-1",
       run: str = "run-1", **attributes: Any) -> StreamEvent:  # fmt: skip
    """An event the stream of ``root`` just sent (at the harness's clock)."""
    body = frame(sequence, type_, job_id=job_id, root=root, run_id=run, at=int(h.now), **attributes)
    parsed = parse_frame(json.dumps(body))
    assert parsed is not None
    return parsed


def tell(h: Harness, *events: StreamEvent, root: str = "exec-1") -> None:
    """What the follower does with each frame of ``root``'s stream."""
    for event in events:
        h.src.hints.add(root, event)


async def started(api: RunsApi, **overrides: Any) -> Harness:
    """A harness past its silent first cycle, its clock 30 s on (the next cycle is a
    whole one)."""
    h = Harness(api, **overrides)
    await h.poll()
    return h


# --- the listings ----------------------------------------------------------------------


async def test_the_first_cycle_lists_the_last_week() -> None:
    api = RunsApi(execution("exec-1"))
    h = Harness(api)
    result = await h.poll()
    (query,) = api.queries
    assert iso(int(NOW) - RESYNC_WINDOW) == query["start_time_after"]
    assert ("start_time", "desc", "50") == (query["sort_by"], query["order"], query["page_size"])
    assert "status" not in query
    assert ["exec-1"] == [j.id for j in result.jobs]
    assert 1 == result.requests
    assert [] == h.reported  # the baseline is silent


async def test_a_steady_cycle_is_new_executions_and_the_followed_statuses() -> None:
    api = RunsApi(
        execution("exec-1", started=T),
        execution("exec-2", "RETRYING_AFTER_ERROR", started=T + 100),
        execution("exec-3", "COMPLETED", started=T + 50, ended=T + 60),
    )
    h = await started(api)
    api.queries.clear()
    result = await h.poll()
    new, followed = api.queries
    assert iso(T + 100 - 60) == new["start_time_after"]  # the watermark, minus an overlap
    assert "status" not in new
    assert ["RETRYING_AFTER_ERROR", "RUNNING"] == followed.get_list("status")  # one listing
    assert "start_time_after" not in followed
    assert 2 == result.requests


@pytest.mark.parametrize("history", [5, 300])
async def test_a_steady_cycle_costs_the_same_whatever_the_history(history: int) -> None:
    """Terminal executions are never read again."""
    done = [
        execution(f"old-{i}", "COMPLETED", started=T - 5000 + i, ended=T - 4000 + i)
        for i in range(history)
    ]
    api = RunsApi(*done, execution("exec-1", started=T), execution("exec-2", started=T + 1))
    h = await started(api)
    api.queries.clear()
    api.details.clear()
    for _ in range(3):
        result = await h.poll()
        assert 2 == result.requests
    assert 6 == api.requests


async def test_a_followed_execution_missing_from_its_listing_is_read_once() -> None:
    """TERMINATED, say: its status listing no longer shows it, the detail tells why."""
    api = RunsApi(execution("exec-1", started=T), execution("exec-0", started=T + 1000))
    h = await started(api)
    api.executions["exec-1"].update(status="TERMINATED", end_time="2026-08-01T11:00:00Z")
    await h.poll()
    assert ["exec-1"] == api.details
    assert ["workflow.execution.terminated"] == h.types()
    await h.poll()
    assert ["exec-1"] == api.details  # terminal: never again


async def test_pages_follow_next_page_token() -> None:
    api = RunsApi(*(execution(f"exec-{i}", started=T + i) for i in range(5)))
    h = Harness(api, page_size=2)
    result = await h.poll()
    assert [None, "2", "4"] == [q.get("next_page_token") for q in api.queries]
    assert {"2"} == {q["page_size"] for q in api.queries}
    assert 5 == len(result.jobs)
    assert 3 == result.requests


async def test_one_page_of_the_runs_listing_follows_the_tokens_to_it() -> None:
    """The runs listing has no page numbers: page 1 is the one the first token leads to, a
    page past the end is empty, and neither has a total."""
    api = RunsApi(*(execution(f"exec-{i}", started=T + i) for i in range(5)))
    h = Harness(api, page_size=2)
    first = await h.src.page({}, 0)
    second = await h.src.page({}, 1)
    past = await h.src.page({}, 7)
    assert (2, None, 2) == (len(first[0]), first[2], first[3])
    assert (2, None, 2) == (len(second[0]), second[2], second[3])
    assert not {j.id for j in first[0]} & {j.id for j in second[0]}
    assert ([], 0, None, 0) == past
    assert [None, None, "2", None, "2", "4"] == [q.get("next_page_token") for q in api.queries]


@pytest.mark.parametrize(
    ("tokens", "requests"),
    [(["same"], 2), (["A", "B"], 3), ([""], 1)],
    ids=["a token that repeats", "tokens in a loop", "an empty token"],
)
async def test_a_looping_token_ends_the_listing(tokens: list[str], requests: int) -> None:
    api = RunsApi(execution("exec-1"))
    api.loop_token = tokens
    h = Harness(api)
    result = await h.poll()
    assert requests == len(api.queries)
    assert ["exec-1"] == [j.id for j in result.jobs]


async def test_a_page_without_executions_is_a_protocol_error() -> None:
    class Odd(RunsApi):
        def handler(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"executions": {"a": 1}})

    h = Harness(Odd())
    with pytest.raises(SourceProtocolError):
        await h.poll()


@pytest.mark.parametrize(
    ("filters", "server_side", "kept"),
    [
        ({"workflows": ["support-workflow"]}, {"workflow_identifier": "support-workflow"},
         {"a", "b"}),
        ({"workflows": ["support-*"]}, {}, {"a", "b", "c"}),
        ({"workflows": ["billing", "support-nightly"]}, {}, {"c", "d"}),
        ({"workflows": ["support-workflow"], "deployments": ["prod"]},
         {"workflow_identifier": "support-workflow", "deployment_name": "prod"}, {"a"}),
        ({"deployments": ["prod-*"]}, {}, {"d"}),
        ({"deployments": ["prod", "staging"]}, {}, {"a", "b", "c"}),
        ({}, {}, {"a", "b", "c", "d"}),
    ],
)  # fmt: skip
async def test_workflow_and_deployment_filters(
    filters: dict[str, Any], server_side: dict[str, str], kept: set[str]
) -> None:
    """One name without a glob is filtered by the API; several names, or globs, by the
    source."""
    api = RunsApi(
        execution("a", workflow="support-workflow", deployment="prod"),
        execution("b", workflow="support-workflow", deployment="staging"),
        execution("c", workflow="support-nightly", deployment="prod"),
        execution("d", workflow="billing", deployment="prod-eu"),
    )
    h = Harness(api, **filters)
    result = await h.poll()
    (query,) = api.queries
    for param in ("workflow_identifier", "deployment_name"):
        assert server_side.get(param) == query.get(param)
    assert kept == {j.id for j in result.jobs}


async def test_malformed_rows_are_skipped_and_counted() -> None:
    api = RunsApi(execution("exec-1"), execution("bad"))
    api.executions["bad"]["start_time"] = "whenever"
    h = Harness(api)
    result = await h.poll()
    assert ["exec-1"] == [j.id for j in result.jobs]
    assert 1 == result.malformed


# --- hinted cycles ---------------------------------------------------------------------


async def test_an_activity_retry_costs_no_request() -> None:
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    await h.poll(after=1)  # a whole cycle; the next comes right after it: hinted
    requests = api.requests
    tell(h, ev(h, 10, "ACTIVITY_TASK_RETRYING", activity_name="crm", attempt=1,
               failure={"message": "timeout"}))  # fmt: skip
    result = await h.poll(after=1)
    assert requests == api.requests
    assert 0 == result.requests
    assert ["workflow.activity.retrying"] == h.types()
    assert {"exec-1": 10} == result.cursor.streams
    # Committed: the next cycle has no hint, so it is a whole one (its two listings), and
    # says nothing new.
    again = await h.poll(after=1)
    assert ([], 2) == (again.jobs, again.requests)
    assert ["workflow.activity.retrying"] == h.types()


async def test_a_lifecycle_event_is_confirmed_by_one_get() -> None:
    api = RunsApi(execution("exec-1"), execution("exec-2", root="exec-1", started=T + 1))
    h = await started(api)
    await h.poll(after=1)
    api.executions["exec-2"].update(status="FAILED", end_time="2026-08-01T11:00:00Z")
    tell(h, ev(h, 30, "WORKFLOW_EXECUTION_FAILED", "exec-2", attempt=1,
               failure={"message": "KeyError: 'customer'"}))  # fmt: skip
    result = await h.poll(after=1)
    assert ["exec-2"] == api.details
    assert 1 == result.requests
    (failed,) = h.reported
    assert ("workflow.execution.failed", "exec-2") == (failed.type, failed.job_id)
    assert "KeyError: 'customer'" == failed.details["failure"]["message"]
    assert {"exec-1": 30} == result.cursor.streams


async def test_a_workflow_level_retry_seen_by_the_stream() -> None:
    api = RunsApi(execution("exec-1", run_id="run-1"))
    h = await started(api)
    await h.poll(after=1)
    api.executions["exec-1"]["run_id"] = "run-2"
    tell(h, ev(h, 40, "WORKFLOW_EXECUTION_FAILED", attempt=1, failure={"message": "boom"}))
    await h.poll(after=1)
    assert ["workflow.execution.retrying"] == h.types()
    assert "RUNNING" == h.snapshots["exec-1"].status


async def test_an_ended_stream_has_a_poll_confirm_the_execution() -> None:
    """TERMINATED has no event: when a stream ends, a GET tells."""
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    await h.poll(after=1)
    api.executions["exec-1"].update(status="TERMINATED", end_time="2026-08-01T11:00:00Z")
    h.src.hints.check("exec-1")
    result = await h.poll(after=1)
    assert ["exec-1"] == api.details
    assert ["workflow.execution.terminated"] == h.types()
    assert [] == h.src.follower.wanted  # nothing left to stream
    assert {} == result.cursor.streams


async def test_an_unknown_sub_workflow_is_read_when_its_root_speaks_of_it() -> None:
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    await h.poll(after=1)
    child = execution("child-1", root="exec-1", parent="exec-1", started=T + 10)
    api.executions["child-1"] = child  # started since the last listing
    tell(h, ev(h, 50, "ACTIVITY_TASK_RETRYING", "child-1", attempt=1, failure={"message": "x"}))
    await h.poll(after=1)
    assert ["child-1"] == api.details
    assert {"workflow.execution.running", "workflow.activity.retrying"} == set(h.types())


async def test_a_lagging_lifecycle_event_waits_for_the_api() -> None:
    """The stream says COMPLETED before the API does: the event waits (its position held
    back) and is told once the API agrees."""
    api = RunsApi(execution("exec-1"), execution("exec-2", root="exec-1", started=T + 1))
    h = await started(api)
    await h.poll(after=1)
    tell(h, ev(h, 20, "ACTIVITY_TASK_RETRYING", attempt=1, failure={"message": "x"}),
         ev(h, 21, "WORKFLOW_EXECUTION_COMPLETED", "exec-2"))  # fmt: skip
    waiting = await h.poll(after=1)
    assert ["workflow.activity.retrying"] == h.types()
    assert {"exec-1": 20} == waiting.cursor.streams  # 21 is not committed
    assert "RUNNING" == h.snapshots["exec-2"].status
    api.executions["exec-2"].update(status="COMPLETED", end_time="2026-08-01T11:00:00Z")
    agreed = await h.poll(after=1)
    assert ["workflow.activity.retrying", "workflow.execution.completed"] == h.types()
    assert {"exec-1": 21} == agreed.cursor.streams


async def test_a_lifecycle_event_the_api_never_confirms_stops_waiting() -> None:
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    await h.poll(after=1)
    tell(h, ev(h, 21, "WORKFLOW_EXECUTION_COMPLETED"))
    first = await h.poll(after=DEFER_AT_MOST + 1)
    assert {"exec-1": 20} == first.cursor.streams
    later = await h.poll(after=1)  # a whole cycle: the API still lists it RUNNING
    assert {"exec-1": 21} == later.cursor.streams
    assert [] == h.types()  # the API is the authority on the status
    assert "RUNNING" == h.snapshots["exec-1"].status


async def test_a_continue_as_new_confirmed_by_its_row_does_not_wait() -> None:
    api = RunsApi(execution("exec-1", run_id="run-1"))
    h = await started(api)
    await h.poll(after=1)
    api.executions["exec-1"]["status"] = "CONTINUED_AS_NEW"  # GET shows the run that ended
    tell(h, ev(h, 60, "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", new_execution_run_id="run-2"))
    result = await h.poll(after=1)
    (fact,) = h.reported
    assert "workflow.execution.continued_as_new" == fact.type
    assert "run-2" == fact.details["new_run_id"]
    assert {"exec-1": 60} == result.cursor.streams


@pytest.mark.parametrize("first", ["stream", "poll"])
async def test_a_continue_as_new_seen_by_the_stream_and_a_poll_is_one_transition(
    first: str,
) -> None:
    api = RunsApi(execution("exec-1", run_id="run-1"))
    h = await started(api)
    if first == "stream":
        await h.poll(after=1)
    api.executions["exec-1"]["run_id"] = "run-2"
    if first == "poll":
        await h.poll(after=1)  # a whole cycle lists run-2
    tell(h, ev(h, 61, "WORKFLOW_EXECUTION_CONTINUED_AS_NEW", new_execution_run_id="run-2"))
    await h.poll(after=40)  # hinted
    await h.poll()  # whole
    assert {"workflow.execution.continued_as_new"} == set(h.types())
    assert 1 == len({t.id for t in h.reported})  # the store keeps one


async def test_streams_follow_the_roots_of_followed_executions_newest_first() -> None:
    api = RunsApi(
        execution("old", started=T),
        execution("new", started=T + 100),
        execution("child", root="old", started=T + 200),
        execution("done", "COMPLETED", started=T + 300, ended=T + 400),
    )
    h = await started(api)
    assert ["old", "new"] == h.src.follower.wanted


async def test_a_cycle_without_hints_is_whole_however_soon_it_comes() -> None:
    """The schedule's cycles are never skipped: only stream hints make a cycle partial."""
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    await h.poll(after=1)
    result = await h.poll(after=1)
    assert ([], 2) == (result.jobs, result.requests)
    assert 5 == len(api.queries)  # full, then new + status, twice


async def test_a_whole_cycle_says_the_streams_are_degraded() -> None:
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    h.src.follower.problem = "the event stream was refused: HTTP 422"
    result = await h.poll(after=1)
    assert "the event stream was refused: HTTP 422" == result.degraded


async def test_a_hinted_cycle_without_news_still_says_the_streams_are_degraded() -> None:
    api = RunsApi(execution("exec-1"))
    h = await started(api)
    h.src.follower.problem = "the event stream was refused: HTTP 422"
    await h.poll(after=1)
    result = await h.poll(after=1)  # nudged by a stream that ended: nothing to take
    assert "the event stream was refused: HTTP 422" == result.degraded
