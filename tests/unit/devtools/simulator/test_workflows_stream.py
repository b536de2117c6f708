"""The simulator's Workflows event stream (SSE) over loopback HTTP: framing, replay and
resume, what is (and is not) emitted, sub-workflow trees, stream faults and counters,
disconnects and shutdown."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from watcher.devtools.simulator import RunningSimulator, simulator

KEY = "test-key"
STREAM = "/v1/workflows/events/stream"
EXECUTIONS = "/v1/workflows/executions"
PAYLOAD_KEYS = {"stream", "timestamp", "broker_sequence", "metadata", "workflow_context", "data"}
ENVELOPE_KEYS = {
    "event_id",
    "event_timestamp",
    "root_workflow_exec_id",
    "parent_workflow_exec_id",
    "continued_run_id",
    "first_execution_run_id",
    "schedule_id",
    "workflow_exec_id",
    "workflow_run_id",
    "workflow_name",
    "event_type",
    "attributes",
}


@dataclass
class Frame:
    """One SSE message as it came: its fields, its raw lines."""

    lines: list[str] = field(default_factory=list)
    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: bool = False


@dataclass
class Reader:
    """What one stream connection received, and whether the server closed it."""

    frames: list[Frame] = field(default_factory=list)
    status: int = 0
    closed: bool = False

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f.data for f in self.frames if f.data is not None and f.event is None]

    def types(self) -> list[str]:
        return [e["data"]["event_type"] for e in self.events]


@pytest.fixture
async def running() -> AsyncIterator[RunningSimulator]:
    async with simulator(api_key=KEY, seed=5) as served:
        yield served


@pytest.fixture
async def client(running: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=running.base_url, headers=headers, timeout=10) as c:
        yield c


async def read(
    client: httpx.AsyncClient,
    reader: Reader,
    params: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    """Read a stream into ``reader`` until the server closes it."""
    async with client.stream("GET", STREAM, params=params, headers=headers) as answer:
        reader.status = answer.status_code
        if answer.status_code != 200:
            await answer.aread()
            reader.closed = True
            return
        assert answer.headers["content-type"].startswith("text/event-stream")
        frame = Frame()
        async for line in answer.aiter_lines():
            if line == "":
                reader.frames.append(frame)
                frame = Frame()
                continue
            frame.lines.append(line)
            name, _, value = line.partition(": ")
            if line.startswith(":"):
                frame.comment = True
            elif name == "id":
                frame.id = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                assert frame.data is None, "one data line per frame"
                frame.data = json.loads(value)
    reader.closed = True


async def until(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not check():  # noqa: ASYNC110 (polls state the server changes, no event to await)
            await anyio.sleep(0.02)
    assert check(), what


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/_sim/workflows", json=body)
    assert 200 == answer.status_code, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def act(client: httpx.AsyncClient, execution_id: str, action: str, **params: Any) -> None:
    answer = await client.post(f"/_sim/workflows/{execution_id}/{action}", json=params)
    assert 200 == answer.status_code, answer.text


async def streams(client: httpx.AsyncClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.get("/_sim/workflows/streams")).json()
    return answer


async def follow(
    client: httpx.AsyncClient, params: dict[str, Any], body: Callable[[Reader], Awaitable[None]]
) -> Reader:
    """Read a stream in the background while ``body`` runs, then until it closes."""
    reader = Reader()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, client, reader, params)
            await body(reader)
    return reader


async def test_a_filter_is_required(client: httpx.AsyncClient) -> None:
    """Without root/exec/parent filter (``*`` counts as none) the answer is a clear 422."""
    for params in ({}, {"workflow_name": "etl"}, {"root_workflow_exec_id": "*"}):
        answer = await client.get(STREAM, params=params)
        assert 422 == answer.status_code
        (error,) = answer.json()["detail"]
        assert "root_workflow_exec_id" in error["msg"] and "required" in error["msg"]
    bad = await client.get(STREAM, params={"workflow_exec_id": "x", "start_seq": "-1"})
    assert 422 == bad.status_code


async def test_replay_then_live_then_close_after_the_end(client: httpx.AsyncClient) -> None:
    """History first, live events next, each frame ``id: <seq>`` + one ``data:`` line; the
    server closes after the terminal event."""
    await create(client, execution_id="e1", workflow_name="etl")
    await act(client, "e1", "activity_retrying", activity="fetch", message="slow")

    async def drive(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 3, "the replayed events")
        assert not reader.closed
        await act(client, "e1", "activity_completed", activity="fetch")
        await act(client, "e1", "complete", result={"rows": 1})

    reader = await follow(client, {"root_workflow_exec_id": "e1"}, drive)
    assert [
        "WORKFLOW_EXECUTION_STARTED",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_RETRYING",
        "ACTIVITY_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ] == reader.types()
    seqs = [e["broker_sequence"] for e in reader.events]
    assert seqs == sorted(set(seqs))
    for frame in reader.frames:
        assert [f"id: {frame.data['broker_sequence']}", frame.lines[1]] == frame.lines
        assert PAYLOAD_KEYS == set(frame.data)
        assert ENVELOPE_KEYS == set(frame.data["data"])
        assert isinstance(frame.data["data"]["event_timestamp"], int)
        assert frame.data["timestamp"].endswith("Z")
        assert {
            "namespace",
            "workflow_name",
            "workflow_exec_id",
            "parent_workflow_exec_id",
            "root_workflow_exec_id",
        } == set(frame.data["workflow_context"])
    retrying = reader.events[2]["data"]["attributes"]
    assert (1, {"message": "slow"}, "fetch") == (
        retrying["attempt"],
        retrying["failure"],
        retrying["activity_name"],
    )
    assert "ended" == (await streams(client))["connections"][0]["closed_by"]


async def test_resume_by_start_seq_and_last_event_id(client: httpx.AsyncClient) -> None:
    """start_seq is inclusive; last-event-id resumes after it; a second connection from 0
    for the same filter counts as a replay from zero."""
    await create(client, execution_id="r")
    await act(client, "r", "activity_started")
    await act(client, "r", "fail")
    whole = Reader()
    await read(client, whole, {"workflow_exec_id": "r"})
    seqs = [e["broker_sequence"] for e in whole.events]
    assert 3 == len(seqs)
    tail = Reader()
    await read(client, tail, {"workflow_exec_id": "r", "start_seq": seqs[1]})
    assert seqs[1:] == [e["broker_sequence"] for e in tail.events]
    resumed = Reader()
    await read(client, resumed, {"workflow_exec_id": "r"}, {"last-event-id": str(seqs[1])})
    assert seqs[2:] == [e["broker_sequence"] for e in resumed.events]
    counters = await streams(client)
    assert (0, 3) == (counters["replays_from_zero"], counters["opened"])
    assert [0, seqs[1], seqs[2]] == [c["start_seq"] for c in counters["connections"]]
    again = Reader()
    await read(client, again, {"workflow_exec_id": "r", "start_seq": 0})
    assert 1 == (await streams(client))["replays_from_zero"]


async def test_terminate_and_time_out_emit_nothing_but_end_the_stream(
    client: httpx.AsyncClient,
) -> None:
    await create(client, execution_id="t")
    await create(client, execution_id="o")

    async def terminate(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 1, "STARTED")
        answer = await client.post(f"{EXECUTIONS}/t/terminate")
        assert 204 == answer.status_code

    async def time_out(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 1, "STARTED")
        await act(client, "o", "time_out")

    endings = (("t", terminate, "TERMINATED"), ("o", time_out, "TIMED_OUT"))
    for execution_id, body, status in endings:
        reader = await follow(client, {"workflow_exec_id": execution_id}, body)
        assert ["WORKFLOW_EXECUTION_STARTED"] == reader.types()
        detail = (await client.get(f"{EXECUTIONS}/{execution_id}")).json()
        assert status == detail["status"] and detail["end_time"] is not None


async def test_continue_as_new_and_retry_runs_on_the_stream(client: httpx.AsyncClient) -> None:
    """CAN names the next run, which starts under the same execution with continued_run_id;
    a workflow-level retry emits FAILED, then STARTED with attempt 2."""
    first = await create(client, execution_id="c")
    await act(client, "c", "continue_as_new", input={"page": 2})
    await act(client, "c", "fail", retry=True, message="flaky")
    await act(client, "c", "complete")
    reader = Reader()
    await read(client, reader, {"workflow_exec_id": "c"})
    data = [e["data"] for e in reader.events]
    assert [
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_EXECUTION_FAILED",
        "WORKFLOW_EXECUTION_STARTED",
        "WORKFLOW_EXECUTION_COMPLETED",
    ] == [d["event_type"] for d in data]
    can, second = data[1], data[2]
    assert first["run_id"] == can["workflow_run_id"]
    assert can["attributes"]["new_execution_run_id"] == second["workflow_run_id"]
    assert (first["run_id"], 1) == (second["continued_run_id"], second["attributes"]["attempt"])
    assert {"c"} == {d["workflow_exec_id"] for d in data}
    assert {first["run_id"]} == {d["first_execution_run_id"] for d in data}
    assert (1, 2) == (data[3]["attributes"]["attempt"], data[4]["attributes"]["attempt"])
    assert data[4]["workflow_run_id"] not in (first["run_id"], second["workflow_run_id"])


async def test_a_root_stream_carries_the_whole_tree(client: httpx.AsyncClient) -> None:
    """Filtered by root: the child's events too (with parent/root set); the stream stays
    open while the root runs after the child failed, and ends with the root. Filtered by
    parent: the children's events only, open as long as the parent runs."""
    await create(client, execution_id="root", workflow_name="pipeline")
    await create(client, execution_id="kid", parent_execution_id="root", workflow_name="step")
    by_parent = Reader()

    async def drive(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 2, "both STARTED")
        await act(client, "kid", "activity_failed", message="bad row")
        await act(client, "kid", "fail")
        await until(lambda: len(reader.events) == len(by_parent.events) + 1 == 5, "the child")
        assert not reader.closed and not by_parent.closed
        await act(client, "root", "fail", message="child failed")

    async def both(reader: Reader) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, client, by_parent, {"parent_workflow_exec_id": "root"})
            await drive(reader)

    reader = await follow(client, {"root_workflow_exec_id": "root"}, both)
    assert ["root", "kid", "kid", "kid", "kid", "root"] == [
        e["data"]["workflow_exec_id"] for e in reader.events
    ]
    kid = reader.events[1]
    assert ("root", "root") == (
        kid["workflow_context"]["parent_workflow_exec_id"],
        kid["data"]["root_workflow_exec_id"],
    )
    assert {"kid"} == {e["data"]["workflow_exec_id"] for e in by_parent.events}


async def test_pings_idle_close_and_error_frames(client: httpx.AsyncClient) -> None:
    await create(client, execution_id="p")
    await client.post("/_sim/workflows/streams/ping", json={"interval": 0.1})

    async def pings(reader: Reader) -> None:
        await until(lambda: sum(f.comment for f in reader.frames) >= 2, "two pings")
        answer = await client.post("/_sim/workflows/streams/idle-close", json={"after": 0.3})
        assert 200 == answer.status_code

    started = time.monotonic()
    reader = await follow(client, {"workflow_exec_id": "p"}, pings)
    assert [": ping"] == next(f for f in reader.frames if f.comment).lines
    assert time.monotonic() - started >= 0.3
    assert "idle_close" == (await streams(client))["connections"][-1]["closed_by"]
    await client.delete("/_sim/workflows/streams/faults")

    async def error(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 1, "STARTED")
        answer = await client.post("/_sim/workflows/streams/error", json={"error": "broker"})
        assert {"streams": 1} == answer.json()

    reader = await follow(client, {"workflow_exec_id": "p"}, error)
    last = reader.frames[-1]
    assert ("error", {"error": "broker", "reason": "stream_error"}) == (last.event, last.data)
    assert "error" == (await streams(client))["connections"][-1]["closed_by"]


async def test_outage_and_refusals(client: httpx.AsyncClient) -> None:
    """An outage closes open streams and answers 503 to new ones while JSON routes answer;
    a refusal answers its 4xx the given number of times."""
    await create(client, execution_id="q")

    async def outage(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 1, "STARTED")
        await client.post("/_sim/workflows/streams/outage", json={"seconds": 0.5})

    reader = await follow(client, {"workflow_exec_id": "q"}, outage)
    assert reader.closed
    refused = await client.get(STREAM, params={"workflow_exec_id": "q"})
    assert (503, "WF_1400") == (refused.status_code, refused.json()["code"])
    assert 200 == (await client.get(f"{EXECUTIONS}/q")).status_code
    await anyio.sleep(0.6)
    await client.post("/_sim/workflows/streams/refuse", json={"status": 429, "count": 1})
    assert 429 == (await client.get(STREAM, params={"workflow_exec_id": "q"})).status_code
    await act(client, "q", "complete")
    back = Reader()
    await read(client, back, {"workflow_exec_id": "q", "start_seq": 1})
    assert (200, 2) == (back.status, len(back.events))


async def test_counters_and_their_reset(client: httpx.AsyncClient) -> None:
    await create(client, execution_id="n")

    async def look(reader: Reader) -> None:
        await until(lambda: len(reader.events) == 1, "STARTED")
        counters = await streams(client)
        assert (1, 1, 1) == (counters["opened"], counters["open"], counters["events_sent"])
        (connection,) = counters["connections"]
        assert "n" == connection["filter"]["workflow_exec_id"]
        assert (0, True) == (connection["start_seq"], connection["open"])
        stats = (await client.get("/_sim/stats")).json()
        assert 1 == stats["workflow_streams"]["open"]
        await client.post("/_sim/stats/reset")
        assert (1, 0) == ((await streams(client))["opened"], stats["requests"]["list"])
        await act(client, "n", "terminate")

    await follow(client, {"workflow_exec_id": "n"}, look)
    counters = await streams(client)
    assert (0, 0) == (counters["open"], counters["events_sent"])


async def test_a_client_leaving_ends_the_generator(
    client: httpx.AsyncClient, running: RunningSimulator
) -> None:
    await create(client, execution_id="d")
    async with client.stream("GET", STREAM, params={"workflow_exec_id": "d"}) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("data:"):
                break
    await until(lambda: running.sim.stream_stats()["open"] == 0, "the server to notice")
    assert "client" == running.sim.stream_connections[0].closed_by


async def test_open_streams_do_not_hold_the_shutdown() -> None:
    """Leaving the simulator's block ends its open streams at once (no 5 s grace wait)."""
    reader = Reader()
    async with anyio.create_task_group() as tg:
        async with simulator(api_key=KEY) as served:
            headers = {"Authorization": f"Bearer {KEY}"}
            client = httpx.AsyncClient(base_url=served.base_url, headers=headers, timeout=10)
            await create(client, execution_id="s")
            tg.start_soon(read, client, reader, {"workflow_exec_id": "s"})
            await until(lambda: len(reader.events) == 1, "STARTED")
            started = time.monotonic()
        assert time.monotonic() - started < 2
        await until(lambda: reader.closed, "the stream to close")
        await client.aclose()
    assert "shutdown" == served.sim.stream_connections[0].closed_by
