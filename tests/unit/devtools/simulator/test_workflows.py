"""The simulator's Workflows JSON routes, lifecycles, scenarios and admin API, over loopback
HTTP (the SSE stream has its own tests in test_workflows_stream.py)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from watcher.devtools.simulator import (
    WORKFLOW_LIFECYCLES,
    RunningSimulator,
    Simulator,
    WorkflowSpec,
    WorkflowStep,
    load_full_demo,
    parse_full_scenario,
    random_workflow_scenario,
    run_simulator,
    simulator,
)
from watcher.model.statuses import WORKFLOW_TERMINAL

KEY = "test-key"
T0 = 1_800_000_000.0
RUNS = "/v1/workflows/runs"
EXECUTIONS = "/v1/workflows/executions"
ITEM_KEYS = {
    "workflow_name",
    "workflow_id",
    "deployment_name",
    "execution_id",
    "parent_execution_id",
    "root_execution_id",
    "run_id",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "total_duration_ms",
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def running(clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with simulator(api_key=KEY, seed=7, clock=clock) as served:
        yield served


@pytest.fixture
async def client(running: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=running.base_url, headers=headers, timeout=10) as c:
        yield c


def step(action: str, after: float = 0.0, **params: Any) -> WorkflowStep:
    return WorkflowStep(action=action, after=after, **params)


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/_sim/workflows", json=body)
    assert 200 == answer.status_code, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def act(client: httpx.AsyncClient, execution_id: str, action: str, **params: Any) -> Any:
    answer = await client.post(f"/_sim/workflows/{execution_id}/{action}", json=params)
    assert 200 == answer.status_code, answer.text
    return answer.json()


async def test_list_items_have_exactly_the_schema_fields(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """List items carry the schema's fields only; times are ISO with microseconds and Z;
    end_time is null while running; the detail adds ``result``."""
    created = await create(client, workflow_name="etl", execution_id="exec-1")
    clock.now += 2.5
    page = (await client.get(RUNS)).json()
    assert {"executions", "next_page_token"} == set(page)
    assert page["next_page_token"] is None
    (item,) = page["executions"]
    assert ITEM_KEYS == set(item)
    assert ("exec-1", "exec-1", None, "RUNNING") == (
        item["execution_id"],
        item["root_execution_id"],
        item["parent_execution_id"],
        item["status"],
    )
    assert ISO.match(item["start_time"])
    assert item["end_time"] is None and item["total_duration_ms"] is None
    await act(client, "exec-1", "complete", result={"rows": 3})
    detail = (await client.get(f"{EXECUTIONS}/exec-1")).json()
    assert ITEM_KEYS | {"result"} == set(detail)
    assert ("COMPLETED", {"rows": 3}, 2500) == (
        detail["status"],
        detail["result"],
        detail["total_duration_ms"],
    )
    assert ISO.match(detail["end_time"])
    by_run = (await client.get(f"{RUNS}/{created['run_id']}")).json()
    assert detail == by_run


async def test_unknown_execution_or_run_is_a_404_with_its_code(client: httpx.AsyncClient) -> None:
    for path in (f"{EXECUTIONS}/nope", f"{RUNS}/00000000-0000-4000-8000-000000000000"):
        answer = await client.get(path)
        assert 404 == answer.status_code
        assert "WF_1100" == answer.json()["code"]
        assert isinstance(answer.json()["detail"], str)


async def test_pages_follow_the_cursor_to_a_null_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Seven executions in pages of three: 3, 3, 1, newest first; asc reverses; nothing
    repeats or goes missing when an execution appears between two pages."""
    for i in range(7):
        await create(client, execution_id=f"exec-{i}")
        clock.now += 1

    async def walk(*, insert: bool = False, **params: Any) -> list[str]:
        seen: list[str] = []
        token = None
        while True:
            query = {**params, "page_size": 3, **({"next_page_token": token} if token else {})}
            page = (await client.get(RUNS, params=query)).json()
            seen += [item["execution_id"] for item in page["executions"]]
            token = page["next_page_token"]
            if token is None:
                assert len(page["executions"]) <= 3
                return seen
            if insert and len(seen) == 3:
                await create(client, execution_id="exec-late")  # newest: before the cursor

    assert [f"exec-{i}" for i in reversed(range(7))] == await walk(insert=True)
    assert [*(f"exec-{i}" for i in range(7)), "exec-late"] == await walk(order="asc")
    by_end = await walk(sort_by="end_time", order="asc")
    assert "exec-late" == by_end[-1] and 8 == len(set(by_end))


async def test_bad_list_queries_are_422s(client: httpx.AsyncClient) -> None:
    for params in (
        {"page_size": "0"},
        {"page_size": "1001"},
        {"next_page_token": "not-a-token"},
        {"status": "PAUSED"},
        {"order": "sideways"},
        {"sort_by": "name"},
    ):
        answer = await client.get(RUNS, params=params)
        assert 422 == answer.status_code, params
        assert isinstance(answer.json()["detail"], list)
    assert 200 == (await client.get(RUNS, params={"page_size": "1000"})).status_code


async def test_filters(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """status (repeated key), workflow_identifier, deployment_name, the inclusive start-time
    bounds and root_execution_id (the whole tree)."""
    await create(client, execution_id="a", workflow_name="etl", deployment_name="prod")
    clock.now += 10
    await create(client, execution_id="b", workflow_name="etl", deployment_name="staging")
    await create(client, execution_id="b-child", parent_execution_id="b", workflow_name="sub")
    clock.now += 10
    await create(client, execution_id="c", workflow_name="report")
    await act(client, "a", "fail")
    await act(client, "c", "terminate")

    async def ids(params: Any) -> list[str]:
        page = (await client.get(RUNS, params=params)).json()
        return sorted(item["execution_id"] for item in page["executions"])

    assert ["a", "c"] == await ids([("status", "FAILED"), ("status", "TERMINATED")])
    assert ["b", "b-child"] == await ids({"status": "RUNNING"})
    assert ["a", "b"] == await ids({"workflow_identifier": "etl"})
    assert ["b"] == await ids({"deployment_name": "staging"})
    after = "2027-01-15T08:00:10Z"  # T0 + 10 s, inclusive
    assert ["b", "b-child", "c"] == await ids({"start_time_after": after})
    assert ["a", "b", "b-child"] == await ids({"start_time_before": after})
    assert ["b", "b-child"] == await ids({"root_execution_id": "b"})
    tree = (await client.get(RUNS, params={"root_execution_id": "b"})).json()["executions"]
    child = next(item for item in tree if item["execution_id"] == "b-child")
    assert ("b", "b") == (child["parent_execution_id"], child["root_execution_id"])


async def test_cancel_and_terminate(client: httpx.AsyncClient) -> None:
    """204 with no body; CANCELED has an event, TERMINATED none; then 409 WF_1102 with the
    status; unknown 404 WF_1100."""
    await create(client, execution_id="x")
    await create(client, execution_id="y")
    answer = await client.post(f"{EXECUTIONS}/x/cancel")
    assert (204, b"") == (answer.status_code, answer.content)
    answer = await client.post(f"{EXECUTIONS}/y/terminate")
    assert (204, b"") == (answer.status_code, answer.content)
    for execution_id, status in (("x", "CANCELED"), ("y", "TERMINATED")):
        detail = (await client.get(f"{EXECUTIONS}/{execution_id}")).json()
        assert status == detail["status"]
        for action in ("cancel", "terminate"):
            again = await client.post(f"{EXECUTIONS}/{execution_id}/{action}")
            assert 409 == again.status_code
            assert {"detail": "Workflow not running", "code": "WF_1102", "status": status} == (
                again.json()
            )
    assert 404 == (await client.post(f"{EXECUTIONS}/nope/cancel")).status_code
    events = (await client.get("/v1/workflows/events/list")).json()["events"]
    types = [(e["workflow_exec_id"], e["event_type"]) for e in events]
    assert ("x", "WORKFLOW_EXECUTION_CANCELED") in types
    assert not [t for t in types if t[0] == "y" and t[1] != "WORKFLOW_EXECUTION_STARTED"]
    batch = await client.post(f"{EXECUTIONS}/cancel", json={"execution_ids": ["x", "nope"]})
    assert {"x": "failure", "nope": "failure"} == {
        k: v["status"] for k, v in batch.json()["results"].items()
    }


async def test_events_list_pages_with_its_cursor(client: httpx.AsyncClient) -> None:
    await create(client, execution_id="e")
    for _ in range(4):
        await act(client, "e", "activity_retrying", activity="fetch")
    await act(client, "e", "activity_failed", activity="fetch")
    types: list[str] = []
    cursor = None
    while True:
        params = {"workflow_exec_id": "e", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/workflows/events/list", params=params)).json()
        types += [event["event_type"] for event in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [
        "WORKFLOW_EXECUTION_STARTED",
        "ACTIVITY_TASK_STARTED",
        *["ACTIVITY_TASK_RETRYING"] * 4,
        "ACTIVITY_TASK_FAILED",
    ] == types
    assert 422 == (await client.get("/v1/workflows/events/list", params={"limit": 0})).status_code


async def test_workflow_retry_and_continue_as_new_keep_the_execution(
    client: httpx.AsyncClient,
) -> None:
    """A workflow-level retry and a continue-as-new give new runs of one execution; the
    old runs stay readable by run id."""
    first = await create(client, execution_id="w")
    await act(client, "w", "fail", retry=True, message="boom")
    retried = (await client.get(f"{EXECUTIONS}/w")).json()
    assert "RUNNING" == retried["status"] and retried["run_id"] != first["run_id"]
    await act(client, "w", "continue_as_new", input={"page": 2})
    shown = await act(client, "w", "complete")
    assert [("FAILED", 1), ("CONTINUED_AS_NEW", 2), ("COMPLETED", 1)] == [
        (run["status"], run["attempt"]) for run in shown["runs"]
    ]
    old = (await client.get(f"{RUNS}/{first['run_id']}")).json()
    assert ("w", "FAILED", None) == (old["execution_id"], old["status"], old["result"])
    rows = (await client.get(RUNS)).json()["executions"]
    assert [("w", "COMPLETED")] == [(r["execution_id"], r["status"]) for r in rows]


async def test_admin_validation(client: httpx.AsyncClient) -> None:
    await create(client, execution_id="v", name="named")
    assert "v" == (await client.get("/_sim/workflows/named")).json()["execution_id"]
    for path, body in (
        ("/_sim/workflows", {"colour": "red"}),
        ("/_sim/workflows", {"steps": [["explode", 1]]}),
        ("/_sim/workflows", {"parent_execution_id": "nobody"}),
        ("/_sim/workflows/v/explode", {}),
        ("/_sim/workflows/v/fail", {"retry": "yes"}),
        ("/_sim/workflows/streams/refuse", {"status": 500}),
        ("/_sim/workflows/streams/idle-close", {"after": -1}),
    ):
        answer = await client.post(path, json=body)
        assert 400 == answer.status_code, (path, body, answer.text)
    assert 409 == (await client.post("/_sim/workflows", json={"execution_id": "v"})).status_code
    assert 404 == (await client.post("/_sim/workflows/nope/complete")).status_code
    await act(client, "v", "time_out")
    assert 409 == (await client.post("/_sim/workflows/v/complete")).status_code


async def test_request_kinds_are_counted(client: httpx.AsyncClient) -> None:
    before = (await client.get("/_sim/stats")).json()["requests"]
    assert "workflow_list" not in before  # the fine-tuning-only shape until workflows are used
    await create(client, execution_id="k")
    await client.get(RUNS)
    await client.get(f"{EXECUTIONS}/k")
    await client.get("/v1/workflows/events/list")
    await client.post(f"{EXECUTIONS}/k/cancel")
    await client.get("/v1/workflows/events/stream")  # 422, still counted
    requests = (await client.get("/_sim/stats")).json()["requests"]
    assert {k: 1 for k in ("workflow_list", "workflow_detail", "workflow_events")} | {
        "workflow_action": 1,
        "workflow_stream": 1,
    } == {k: v for k, v in requests.items() if k.startswith("workflow_")}
    reset = (await client.post("/_sim/stats/reset")).json()
    assert 0 == reset["requests"]["total"]


def test_scenario_workflows_section_and_its_errors() -> None:
    scenario = parse_full_scenario(
        """
workflows:
  - name: root
    steps:
      - [activity_retrying, 1, {activity: fetch, message: slow}]
      - {action: fail, at: 2, retry: true}
  - name: child
    parent: root
    create_after: 1
"""
    )
    root, child = scenario.workflows
    assert ("fetch", "slow", True) == (
        root.steps[0].activity,
        root.steps[0].message,
        root.steps[1].retry,
    )
    assert "root" == child.parent
    for text, message in (
        ("workflows: [{steps: [[explode, 1]]}]", "workflows\\[0\\].steps\\[0\\]"),
        ("workflows: [{name: a, parent: b}, {name: b}]", "names no earlier"),
        ("workflows: [{steps: [[fail, 2], [complete, 1]]}]", "time order"),
        ("workflows: [{colour: red}]", "colour: unknown field"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_full_scenario(text)


def test_demo_workflow_fails_after_activity_retries() -> None:
    clock = FakeClock()
    sim = Simulator(clock=clock)
    demo = load_full_demo()
    assert 3 == len(demo.jobs) and 1 == len(demo.workflows)
    sim.schedule(demo.specs)
    clock.now = T0 + 25
    sim.advance()
    (execution,) = sim.executions.values()
    assert "FAILED" == execution.status
    types = [e.event_type for e in sim.workflow_events]
    assert 2 == types.count("ACTIVITY_TASK_RETRYING")
    assert types[-2:] == ["ACTIVITY_TASK_FAILED", "WORKFLOW_EXECUTION_FAILED"]


def test_random_workflow_scenario_covers_every_lifecycle() -> None:
    """Eight executions cover completed, failed after retries, retried then completed,
    canceled, terminated, timed out, continued-as-new and a child failing under its root."""
    specs = random_workflow_scenario(3, 8)
    assert specs == random_workflow_scenario(3, 8)
    assert 8 == len(WORKFLOW_LIFECYCLES)
    clock = FakeClock()
    sim = Simulator(clock=clock, seed=3)
    sim.schedule(specs)
    clock.now = T0 + 600
    sim.advance()
    executions = list(sim.executions.values())
    assert 9 == len(executions)  # the child comes on top
    assert all(e.status in WORKFLOW_TERMINAL for e in executions)
    ends = Counter(e.status for e in executions)
    assert {"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"} == set(ends)
    runs = [[r.status for r in e.runs] for e in executions]
    assert any(r[0] == "CONTINUED_AS_NEW" and r[-1] == "COMPLETED" for r in runs)
    assert any(r == ["FAILED", "COMPLETED"] for r in runs)
    (child,) = [e for e in executions if e.parent_execution_id is not None]
    parent = sim.executions[child.parent_execution_id or ""]
    assert ("FAILED", "FAILED") == (child.status, parent.status)
    assert child.run.end is not None and parent.run.end is not None
    assert child.run.end < parent.run.end
    types = Counter(e.event_type for e in sim.workflow_events)
    assert types["ACTIVITY_TASK_FAILED"] >= 2 and types["WORKFLOW_EXECUTION_CANCELED"] == 1


def test_ending_a_parent_terminates_its_running_children() -> None:
    sim = Simulator(clock=FakeClock())
    root = sim.create_execution(WorkflowSpec(execution_id="root"))
    sim.create_execution(WorkflowSpec(execution_id="kid", parent="root"))
    sim.act(root.execution_id, step("cancel"))
    assert "TERMINATED" == sim.executions["kid"].status
    kid_events = [e.event_type for e in sim.workflow_events if e.execution_id == "kid"]
    assert ["WORKFLOW_EXECUTION_STARTED"] == kid_events


@pytest.mark.parametrize("seed", [None, 4], ids=["demo", "seeded"])
async def test_watcher_simulate_serves_workflows(seed: int | None) -> None:
    """Without a scenario file, ``run_simulator`` plays the demo's workflow next to its jobs;
    with a seed, random workflows."""
    urls: list[str] = []
    listening = anyio.Event()

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    names: set[str] = set()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            serve = partial(
                run_simulator,
                host="127.0.0.1",
                port=0,
                scenario=None,
                speed=100,
                seed=seed,
                api_key=KEY,
                ready=ready,
            )
            tg.start_soon(serve)
            await listening.wait()
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=urls[0], headers=headers) as c:
                while not names:
                    await anyio.sleep(0.05)
                    page = (await c.get(RUNS)).json()["executions"]
                    names = {item["workflow_name"] for item in page}
            tg.cancel_scope.cancel()
    if seed is None:
        assert {"invoice-sync"} == names
    else:
        assert all(name.startswith("sim-") for name in names)
