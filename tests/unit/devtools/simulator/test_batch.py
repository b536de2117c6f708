"""The simulator's batch jobs: engine (fake clock), ``/v1/batch/jobs`` and the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from watcher.devtools.simulator import (
    BATCH_STATUSES,
    BatchSpec,
    JobSpec,
    RunningSimulator,
    Simulator,
    parse_full_scenario,
    parse_scenario,
    random_batch_scenario,
    simulator,
)
from watcher.devtools.simulator.batch import BATCH_TERMINAL

KEY = "test-key"
T0 = 1_800_000_000.0
BATCHES = "/v1/batch/jobs"
JOBS = "/v1/fine_tuning/jobs"
MISSING = "00000000-0000-4000-8000-000000000000"
JOB_KEYS = {
    "id",
    "object",
    "input_files",
    "endpoint",
    "model",
    "agent_id",
    "metadata",
    "errors",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "total_requests",
    "completed_requests",
    "succeeded_requests",
    "failed_requests",
    "output_file",
    "error_file",
}


class FakeClock:
    """A clock that only moves when told to."""

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


async def create(client: httpx.AsyncClient, **body: Any) -> list[str]:
    response = await client.post("/_sim/batch/jobs", json=body)
    assert 200 == response.status_code, response.text
    ids: list[str] = response.json()["ids"]
    return ids


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    with anyio.fail_after(5):
        response = await client.get(url, params=params)
    assert 200 == response.status_code, response.text
    return response.json()


async def listed_ids(client: httpx.AsyncClient, params: Any = None) -> list[str]:
    with anyio.fail_after(5):
        response = await client.get(BATCHES, params=params)
    assert 200 == response.status_code, response.text
    return [job["id"] for job in response.json()["data"]]


def counters(batch: Any) -> tuple[int, int, int, int]:
    body = batch if isinstance(batch, dict) else batch.to_json()
    return (
        body["total_requests"],
        body["completed_requests"],
        body["succeeded_requests"],
        body["failed_requests"],
    )


def running_spec(**overrides: Any) -> BatchSpec:
    fields: dict[str, Any] = {"steps": (("RUNNING", 2.0), ("SUCCESS", 12.0))}
    return BatchSpec(**{**fields, **overrides})


# -- engine, on a fake clock ---------------------------------------------------------------


def test_counters_advance_linearly_while_running(clock: FakeClock) -> None:
    """From RUNNING at 2 s to SUCCESS at 12 s, 100 requests are half done at 7 s."""
    sim = Simulator(clock=clock, seed=1)
    batch = sim.create_batch(running_spec(failure_rate=0.1))
    assert ("QUEUED", (0, 0, 0, 0), None) == (batch.status, counters(batch), batch.started_at)
    clock.now = T0 + 7
    sim.advance()
    assert ("RUNNING", (100, 50, 45, 5)) == (batch.status, counters(batch))
    assert int(T0) + 2 == batch.started_at
    assert batch.completed_at is None
    clock.now = T0 + 12
    sim.advance()
    assert ("SUCCESS", (100, 100, 90, 10)) == (batch.status, counters(batch))
    assert int(T0) + 12 == batch.completed_at


def test_counters_do_not_depend_on_the_polling_rhythm(clock: FakeClock) -> None:
    """The same job polled often or once shows the same counters at the same time."""
    often, once = Simulator(clock=clock, seed=1), Simulator(clock=clock, seed=1)
    spec = BatchSpec(
        total_requests=977,
        failure_rate=0.3,
        steps=(("RUNNING", 1.0), ("TIMEOUT_EXCEEDED", 31.0)),
    )
    polled, unpolled = often.create_batch(spec), once.create_batch(spec)
    for tick in range(1, 31):
        clock.now = T0 + tick * 0.7
        often.advance()
    once.advance()
    assert ("RUNNING", 325) == (polled.status, polled.completed_requests)
    assert polled.to_json() == unpolled.to_json()
    clock.now = T0 + 40
    often.advance()
    once.advance()
    assert ("TIMEOUT_EXCEEDED", 488) == (polled.status, polled.completed_requests)
    assert polled.to_json() == unpolled.to_json()


def test_invariant_holds_at_every_moment(clock: FakeClock) -> None:
    """completed = succeeded + failed <= total, and counters never go back, at every poll."""
    sim = Simulator(clock=clock, seed=2)
    sim.schedule(random_batch_scenario(2, 40, step_gap=(0.5, 3.0)))
    previous: dict[str, tuple[int, int, int, int]] = {}
    for tick in range(200):
        clock.now = T0 + tick * 0.25
        sim.advance()
        for batch in sim.batch_jobs.values():
            total, completed, succeeded, failed = counters(batch)
            assert completed == succeeded + failed
            assert 0 <= failed <= completed <= total
            before = previous.get(batch.id, (0, 0, 0, 0))
            assert all(
                b <= a for b, a in zip(before[1:], (completed, succeeded, failed), strict=True)
            )
            previous[batch.id] = (total, completed, succeeded, failed)
    assert 40 == len(sim.batch_jobs)


def test_total_stays_zero_while_queued_unless_known(clock: FakeClock) -> None:
    """total_requests is 0 while QUEUED, or the planned total with total_while_queued."""
    sim = Simulator(clock=clock)
    hidden = sim.create_batch(BatchSpec(total_requests=40))
    shown = sim.create_batch(BatchSpec(total_requests=40, total_while_queued=True))
    assert (0, 40) == (hidden.total_requests, shown.total_requests)
    sim.set_batch_status(hidden.id, "RUNNING")
    assert (40, 0) == (hidden.total_requests, hidden.completed_requests)


def test_terminal_statuses_freeze_the_counters(clock: FakeClock) -> None:
    """A run cut short reaches its progress share; TIMEOUT_EXCEEDED and FAILED freeze it."""
    sim = Simulator(clock=clock)
    steps = (("RUNNING", 0.0), ("TIMEOUT_EXCEEDED", 10.0))
    spec = BatchSpec(steps=steps, total_requests=10, failure_rate=0.5, progress=0.6)
    batch = sim.create_batch(spec)
    clock.now = T0 + 5
    sim.advance()
    assert ("RUNNING", (10, 3, 1, 2)) == (batch.status, counters(batch))
    clock.now = T0 + 100
    sim.advance()
    assert ("TIMEOUT_EXCEEDED", (10, 6, 3, 3)) == (batch.status, counters(batch))
    assert ([], int(T0) + 10) == (batch.errors, batch.completed_at)
    assert batch.output_file is not None
    assert batch.error_file is not None
    sim.set_batch_status(batch.id, "FAILED")
    assert ("FAILED", (10, 6, 3, 3)) == (batch.status, counters(batch))
    assert [{"message": "The batch job failed (simulated).", "count": 3}] == batch.errors


def test_success_with_failures_reports_errors_and_files(clock: FakeClock) -> None:
    """SUCCESS completes every request; failed ones split across the error messages."""
    sim = Simulator(clock=clock)
    spec = BatchSpec(status="SUCCESS", total_requests=9, failure_rate=1.0, errors=("a", "b"))
    batch = sim.create_batch(spec)
    assert (9, 9, 0, 9) == counters(batch)
    assert [{"message": "a", "count": 5}, {"message": "b", "count": 4}] == batch.errors
    assert batch.output_file is not None
    assert batch.error_file is not None
    clean = sim.create_batch(BatchSpec(status="SUCCESS"))
    assert ([], None) == (clean.errors, clean.error_file)
    assert clean.output_file is not None


def test_queued_straight_to_success(clock: FakeClock) -> None:
    """A job skipping RUNNING gets started_at and completed_at at the same second."""
    sim = Simulator(clock=clock)
    batch = sim.create_batch(BatchSpec(steps=(("SUCCESS", 25.0),)))
    clock.now = T0 + 30
    sim.advance()
    assert ("SUCCESS", (100, 100, 100, 0)) == (batch.status, counters(batch))
    assert int(T0) + 25 == batch.started_at == batch.completed_at
    assert [("QUEUED", "SUCCESS")] == [
        (e["previous_status"], e["status"]) for e in sim.log if e["previous_status"]
    ]


def test_frozen_batch_never_moves(clock: FakeClock) -> None:
    """A frozen job ignores its script and the follow-up of a cancellation."""
    sim = Simulator(clock=clock)
    batch = sim.create_batch(BatchSpec(status="RUNNING", steps=(("SUCCESS", 5.0),), frozen=True))
    clock.now = T0 + 100
    sim.advance()
    assert ("RUNNING", (100, 50, 50, 0)) == (batch.status, counters(batch))
    sim.cancel_batch(batch.id)
    clock.now = T0 + 200
    sim.advance()
    assert "CANCELLATION_REQUESTED" == batch.status


def test_created_in_every_status_with_progress(clock: FakeClock) -> None:
    """A job created in any status ends there, its progress share done (SUCCESS: all)."""
    sim = Simulator(clock=clock)
    for status in (*BATCH_STATUSES, "PAUSED"):
        spec = BatchSpec(status=status, total_requests=50, progress=0.4, failure_rate=0.25)
        batch = sim.create_batch(spec, log=False)
        assert status == batch.status
        expected = (0, 0, 0, 0) if status == "QUEUED" else (50, 20, 15, 5)
        if status == "SUCCESS":
            expected = (50, 50, 37, 13)
        assert expected == counters(batch), status
        assert (status in BATCH_TERMINAL) == (batch.completed_at is not None)
        assert batch.created_at <= (batch.started_at or batch.created_at) <= int(T0)
    assert [] == sim.log


def test_admin_progress_then_linear_progress(clock: FakeClock) -> None:
    """Counters set directly are where a RUNNING job moves on from; bad ones are refused."""
    sim = Simulator(clock=clock)
    batch = sim.create_batch(BatchSpec(status="RUNNING", steps=(("SUCCESS", 10.0),)))
    sim.set_batch_progress(batch.id, 60, 6)
    assert (100, 60, 54, 6) == counters(batch)
    clock.now = T0 + 5
    sim.advance()
    assert (100, 80, 74, 6) == counters(batch)
    for completed, failed in ((101, 0), (10, 11), (-1, 0)):
        with pytest.raises(ValueError, match="must be between"):
            sim.set_batch_progress(batch.id, completed, failed)


def test_random_batch_scenario_is_seeded_and_varied(clock: FakeClock) -> None:
    """The same seed gives the same jobs, and a big one covers every lifecycle."""
    assert random_batch_scenario(3, 20) == random_batch_scenario(3, 20)
    assert random_batch_scenario(3, 20) != random_batch_scenario(4, 20)
    sim = Simulator(clock=clock, seed=3)
    sim.schedule(random_batch_scenario(3, 60))
    clock.now = T0 + 120
    sim.advance()
    assert BATCH_TERMINAL == {batch.status for batch in sim.batch_jobs.values()}
    changes = {(e["previous_status"], e["status"]) for e in sim.log}
    assert {("QUEUED", "SUCCESS"), ("QUEUED", "CANCELLATION_REQUESTED")} <= changes
    assert {"RUNNING"} == {e["previous_status"] for e in sim.log if e["status"] == "FAILED"}
    assert any(b.failed_requests and b.status == "SUCCESS" for b in sim.batch_jobs.values())
    assert {"batch"} == {e["kind"] for e in sim.log}


def test_scenario_file_with_batches() -> None:
    """A scenario's batches list parses next to its jobs; model null stays null."""
    text = """
jobs: [{name: ft}]
batches:
  - {name: a, model: null, agent_id: ag_1, metadata: {team: ml}, steps: [[RUNNING, 1]]}
  - {total_requests: 5, failure_rate: 0.5, errors: [boom], progress: 0.2, status: FAILED}
"""
    scenario = parse_full_scenario(text, source="s.yaml")
    assert ["ft"] == [spec.name for spec in scenario.jobs]
    first, second = scenario.batches
    assert (None, "ag_1", {"team": "ml"}) == (first.model, first.agent_id, first.metadata)
    assert ("mistral-small-latest", ("boom",), 0.2) == (
        second.model,
        second.errors,
        second.progress,
    )
    assert ["ft"] == [spec.name for spec in parse_scenario(text)]
    assert () == parse_full_scenario("batches: []").jobs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("batches: 3", "batches: must be a list", id="not a list"),
        pytest.param("batches: [{colour: red}]", r"batches\[0\]\.colour: unknown", id="field"),
        pytest.param("batches: [{failure_rate: 2}]", r"\.failure_rate: must be a", id="rate"),
        pytest.param("batches: [{progress: -1}]", r"\.progress: must be a", id="progress"),
        pytest.param("batches: [{total_requests: x}]", r"\.total_requests: must", id="total"),
        pytest.param("batches: [{errors: [1]}]", r"\.errors: must be a list", id="errors"),
        pytest.param("batches: [{metadata: [1]}]", r"\.metadata: must be a mapping", id="meta"),
        pytest.param("batches: [{name: a}, {name: a}]", r"batches\[1\]\.name: duplicate", id="dup"),
        pytest.param("{}", "jobs: must be a list", id="neither"),
    ],
)
def test_batch_scenario_errors_name_the_field(text: str, message: str) -> None:
    """A bad batch entry raises ValueError naming the offending field."""
    with pytest.raises(ValueError, match=message):
        parse_full_scenario(text, source="s.yaml")


# -- the /v1 batch API over HTTP -------------------------------------------------------------


async def test_job_shape(client: httpx.AsyncClient) -> None:
    """A job carries exactly the documented fields, with uuids and integer timestamps."""
    [job_id] = await create(
        client, status="SUCCESS", metadata={"team": "ml"}, failure_rate=0.1, errors=["x"]
    )
    job = await get(client, f"{BATCHES}/{job_id}", inline="true")
    assert JOB_KEYS == set(job)
    assert ("batch", "SUCCESS", job_id) == (job["object"], job["status"], job["id"])
    assert ("/v1/chat/completions", "mistral-small-latest") == (job["endpoint"], job["model"])
    assert (None, {"team": "ml"}) == (job["agent_id"], job["metadata"])
    assert [{"message": "x", "count": 10}] == job["errors"]
    assert (100, 100, 90, 10) == counters(job)
    for key in ("created_at", "started_at", "completed_at"):
        assert isinstance(job[key], int)
    assert 36 == len(job["input_files"][0]) == len(job["output_file"]) == len(job["error_file"])
    assert [job] == (await get(client, BATCHES))["data"]


async def test_paging_and_total(client: httpx.AsyncClient) -> None:
    """Pages are 0-based slices, page_size defaults to 100, total counts every match."""
    await create(client, count=25, status="RUNNING")
    pages = [(await get(client, BATCHES, page=p, page_size=10)) for p in range(4)]
    assert [25] * 4 == [page["total"] for page in pages]
    assert [10, 10, 5, 0] == [len(page["data"]) for page in pages]
    assert 25 == len({job["id"] for page in pages for job in page["data"]})
    assert {"list"} == {page["object"] for page in pages}
    assert 25 == len((await get(client, BATCHES))["data"])
    for params in ({"page_size": 0}, {"page": -1}, {"created_by_me": "x"}):
        response = await client.get(BATCHES, params=params)
        assert 422 == response.status_code
        assert ["query", next(iter(params))] == response.json()["detail"][0]["loc"]


async def test_status_filter_is_multi_valued(client: httpx.AsyncClient) -> None:
    """status takes repeated keys or one value; an unknown value is a FastAPI-style 422."""
    [queued] = await create(client, created_at=1_700_000_000)
    [running] = await create(client, status="RUNNING", created_at=1_700_000_100)
    await create(client, status="SUCCESS", created_at=1_700_000_200)
    assert [running, queued] == await listed_ids(
        client, [("status", "RUNNING"), ("status", "QUEUED")]
    )
    assert [running] == await listed_ids(client, {"status": "RUNNING"})
    assert [] == await listed_ids(client, {"status": "CANCELLED"})
    response = await client.get(BATCHES, params=[("status", "RUNNING"), ("status", "PAUSED")])
    assert 422 == response.status_code
    [error] = response.json()["detail"]
    assert ("enum", ["query", "status", 1], "PAUSED") == (
        error["type"],
        error["loc"],
        error["input"],
    )


async def test_order_by(client: httpx.AsyncClient) -> None:
    """-created (the default) lists newest first, created oldest first; others are a 422."""
    ids = [(await create(client, created_at=1_700_000_000 + i))[0] for i in range(3)]
    assert ids[::-1] == await listed_ids(client)
    assert ids[::-1] == await listed_ids(client, {"order_by": "-created"})
    assert ids == await listed_ids(client, {"order_by": "created"})
    response = await client.get(BATCHES, params={"order_by": "created_at"})
    assert 422 == response.status_code
    assert ["query", "order_by"] == response.json()["detail"][0]["loc"]


async def test_filters_and_unknown_keys(client: httpx.AsyncClient) -> None:
    """created_after is inclusive; model, agent_id, created_by_me filter; other keys are ignored."""
    [old] = await create(client, created_at=1_700_000_000, model="m")
    [edge] = await create(client, created_at=1_700_000_100, model=None, agent_id="ag_1")
    [new] = await create(client, created_at=1_700_000_200, created_by_me=False)
    assert [new, edge] == await listed_ids(client, {"created_after": "2023-11-14T22:15:00Z"})
    assert [new, edge] == await listed_ids(client, {"created_after": "2023-11-14T23:15:00+01:00"})
    assert [old] == await listed_ids(client, {"model": "m"})
    assert [edge] == await listed_ids(client, {"agent_id": "ag_1"})
    assert [edge, old] == await listed_ids(client, {"created_by_me": "true"})
    flattened = {"team": "ml", "run": "7", "inline": "maybe", "created_by_me": "false"}
    assert [new, edge, old] == await listed_ids(client, flattened)


async def test_counters_advance_over_http(
    clock: FakeClock, running: RunningSimulator, client: httpx.AsyncClient
) -> None:
    """The counters a client sees follow the injected clock, no sleeping involved."""
    [job_id] = await create(client, steps=[["RUNNING", 2], ["SUCCESS", 12]])
    clock.now = T0 + 7
    assert (100, 50, 50, 0) == counters(await get(client, f"{BATCHES}/{job_id}"))
    clock.now = T0 + 12
    assert "SUCCESS" == (await get(client, BATCHES))["data"][0]["status"]


async def test_cancel_flow(clock: FakeClock, client: httpx.AsyncClient) -> None:
    """Cancel answers CANCELLATION_REQUESTED, CANCELLED follows; finished jobs answer 409."""
    [job_id] = await create(client, steps=[["RUNNING", 0], ["SUCCESS", 10]])
    clock.now = T0 + 5
    cancelled = await client.post(f"{BATCHES}/{job_id}/cancel")
    assert ("CANCELLATION_REQUESTED", 50) == (
        cancelled.json()["status"],
        cancelled.json()["completed_requests"],
    )
    again = await client.post(f"{BATCHES}/{job_id}/cancel")
    assert "CANCELLATION_REQUESTED" == again.json()["status"]
    clock.now = T0 + 30
    job = await get(client, f"{BATCHES}/{job_id}")
    assert ("CANCELLED", 50, int(T0) + 8) == (
        job["status"],
        job["completed_requests"],
        job["completed_at"],
    )
    assert 409 == (await client.post(f"{BATCHES}/{job_id}/cancel")).status_code
    assert 404 == (await client.post(f"{BATCHES}/{MISSING}/cancel")).status_code


async def test_delete_then_404(client: httpx.AsyncClient) -> None:
    """DELETE answers the deletion; the job then leaves the list and its GET is a 404."""
    [gone, kept] = await create(client, count=2)
    response = await client.delete(f"{BATCHES}/{gone}")
    assert {"id": gone, "object": "batch", "deleted": True} == response.json()
    assert [kept] == await listed_ids(client)
    missing = await client.get(f"{BATCHES}/{gone}")
    assert (404, {"detail": "No batch job matches the given query."}) == (
        missing.status_code,
        missing.json(),
    )
    assert 404 == (await client.delete(f"{BATCHES}/{gone}")).status_code


async def test_auth_is_required(running: RunningSimulator) -> None:
    """Batch routes without the right bearer key answer 401."""
    async with httpx.AsyncClient(base_url=running.base_url, timeout=5) as anonymous:
        assert 401 == (await anonymous.get(BATCHES)).status_code
        assert 401 == (await anonymous.get(f"{BATCHES}/{MISSING}")).status_code


# -- faults, retirement, stats, log ----------------------------------------------------------


async def test_fault_routes_cover_batch(client: httpx.AsyncClient) -> None:
    """batch_list and batch_detail faults hit their route only; all hits batch routes too."""
    [job_id] = await create(client)
    await client.post("/_sim/faults", json={"mode": "500", "route": "batch_list", "count": 1})
    await client.post("/_sim/faults", json={"mode": "503", "route": "batch_detail", "count": 1})
    await client.post("/_sim/faults", json={"mode": "429", "route": "list", "count": 1})
    assert 503 == (await client.get(f"{BATCHES}/{job_id}")).status_code
    assert 500 == (await client.get(BATCHES)).status_code
    assert 200 == (await client.get(BATCHES)).status_code
    assert 429 == (await client.get(JOBS)).status_code
    await client.post("/_sim/faults", json={"mode": "502", "route": "all", "count": 2})
    assert 502 == (await client.get(BATCHES)).status_code
    assert 502 == (await client.get(f"{BATCHES}/{job_id}")).status_code
    assert 200 == (await client.get(BATCHES)).status_code
    bad = await client.post("/_sim/faults", json={"mode": "500", "route": "batch"})
    assert 400 == bad.status_code


async def test_malformed_and_truncated_faults_on_batch_list(client: httpx.AsyncClient) -> None:
    """malformed sends a list that stops short; truncated drops one batch item's id."""
    await create(client, count=3, status="RUNNING")
    await client.post("/_sim/faults", json={"mode": "malformed", "route": "batch_list"})
    malformed = await client.get(BATCHES)
    assert malformed.text.startswith('{"object": "list"')
    await client.post("/_sim/faults", json={"mode": "truncated", "route": "batch_list"})
    body = (await client.get(BATCHES)).json()
    assert [True, False, True] == ["id" in job for job in body["data"]]


async def test_retired_batch_routes_answer_410(client: httpx.AsyncClient) -> None:
    """Retirement and the gone fault answer 410 on every batch route."""
    [job_id] = await create(client)
    await client.post("/_sim/faults", json={"mode": "gone", "route": "batch_detail"})
    assert 410 == (await client.get(f"{BATCHES}/{job_id}")).status_code
    await client.post("/_sim/retire")
    for response in (
        await client.get(BATCHES),
        await client.get(f"{BATCHES}/{job_id}"),
        await client.post(f"{BATCHES}/{job_id}/cancel"),
        await client.delete(f"{BATCHES}/{job_id}"),
    ):
        assert (410, {"detail": "This API has been retired"}) == (
            response.status_code,
            response.json(),
        )
    await client.delete("/_sim/retire")
    assert [job_id] == await listed_ids(client)


async def test_stats_count_batch_requests(client: httpx.AsyncClient) -> None:
    """Batch list and detail requests get their own counters; cancel and delete are other."""
    before = (await client.get("/_sim/stats")).json()["requests"]
    assert {"list", "detail", "other", "total"} == set(before)
    [job_id] = await create(client)
    await client.get(BATCHES)
    await client.get(BATCHES, headers={"Authorization": "Bearer nope"})
    await client.get(f"{BATCHES}/{job_id}")
    await client.post(f"{BATCHES}/{job_id}/cancel")
    await client.delete(f"{BATCHES}/{job_id}")
    await client.get(JOBS)
    stats = (await client.get("/_sim/stats")).json()
    expected = {"list": 1, "detail": 0, "other": 2, "batch_list": 2, "batch_detail": 1}
    assert {**expected, "total": 6} == stats["requests"]
    reset = (await client.post("/_sim/stats/reset")).json()["requests"]
    assert {"list", "detail", "other", "batch_list", "batch_detail", "total"} == set(reset)
    assert 0 == reset["total"]


async def test_applied_log_has_kinds(running: RunningSimulator, client: httpx.AsyncClient) -> None:
    """Batch status changes land in the applied log with kind batch, next to fine_tuning."""
    running.sim.create(JobSpec())
    [job_id] = await create(client)
    response = await client.post(f"/_sim/batch/jobs/{job_id}/status", json={"status": "PAUSED"})
    assert "PAUSED" == response.json()["status"]
    await client.post(f"{BATCHES}/{job_id}/cancel")
    log = (await client.get("/_sim/log")).json()["log"]
    assert [
        ("fine_tuning", None, "QUEUED"),
        ("batch", None, "QUEUED"),
        ("batch", "QUEUED", "PAUSED"),
        ("batch", "PAUSED", "CANCELLATION_REQUESTED"),
    ] == [(e["kind"], e["previous_status"], e["status"]) for e in log]
    assert {"job_id", "previous_status", "status", "at", "kind"} == set(log[-1])
    assert job_id == log[-1]["job_id"]


# -- admin API -----------------------------------------------------------------------------


async def test_admin_batch_api(clock: FakeClock, client: httpx.AsyncClient) -> None:
    """Admin creates, lists, re-scripts and sets the progress of batch jobs."""
    [job_id] = await create(client, name="nightly", total_requests=10, endpoint="/v1/ocr")
    listing = (await client.get("/_sim/batch/jobs")).json()
    assert {"nightly": job_id} == listing["names"]
    assert ["/v1/ocr"] == [job["endpoint"] for job in listing["jobs"]]
    body = {"status": "RUNNING", "steps": [["SUCCESS", 4]]}
    assert 200 == (await client.post(f"/_sim/batch/jobs/{job_id}/status", json=body)).status_code
    progress = await client.post(f"/_sim/batch/jobs/{job_id}/progress", json={"completed": 4})
    assert (10, 4, 4, 0) == counters(progress.json())
    progress = await client.post(f"/_sim/batch/jobs/{job_id}/progress", json={"failed": 2})
    assert (10, 4, 2, 2) == counters(progress.json())
    clock.now = T0 + 5
    assert "SUCCESS" == (await client.get(f"/_sim/batch/jobs/{job_id}")).json()["status"]
    bulk = await create(client, count=500, status="SUCCESS")
    assert 500 == len(set(bulk))
    assert 501 == (await get(client, BATCHES, page_size=1))["total"]


async def test_admin_batch_validation(client: httpx.AsyncClient) -> None:
    """Bad admin bodies answer 400 naming the field; unknown ids answer 404."""
    [job_id] = await create(client)
    for body, field in (
        ({"count": "many"}, "count"),
        ({"colour": 1}, "colour"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"steps": [["RUNNING"]]}, "steps[0]"),
        ({"metadata": "x"}, "metadata"),
        ({"name": "n", "count": 2}, "name"),
        ({"checkpoints": 1}, "checkpoints"),
    ):
        response = await client.post("/_sim/batch/jobs", json=body)
        assert 400 == response.status_code
        assert response.json()["detail"].startswith(field), response.json()
    for url, body in (
        (f"/_sim/batch/jobs/{job_id}/progress", {"completed": 101}),
        (f"/_sim/batch/jobs/{job_id}/progress", {"completed": -1}),
        (f"/_sim/batch/jobs/{job_id}/progress", {"total": 1}),
        (f"/_sim/batch/jobs/{job_id}/status", {"status": ""}),
    ):
        assert 400 == (await client.post(url, json=body)).status_code
    response = await client.post(f"/_sim/batch/jobs/{MISSING}/status", json={"status": "X"})
    assert 404 == response.status_code
    assert 404 == (await client.get(f"/_sim/batch/jobs/{MISSING}")).status_code


async def test_simulator_schedules_batches() -> None:
    """Batch specs handed to simulator() are created after their delay, next to jobs."""
    clock = FakeClock()
    batch = BatchSpec(name="late", create_after=3.0, steps=(("RUNNING", 1.0),))
    async with simulator(jobs=[JobSpec()], batches=[batch], api_key=KEY, clock=clock) as served:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as c:
            assert 0 == (await get(c, BATCHES))["total"]
            clock.now = T0 + 4
            assert ["RUNNING"] == [job["status"] for job in (await get(c, BATCHES))["data"]]
            assert 1 == (await get(c, JOBS))["total"]
        assert {"late"} == set(served.sim.batch_names)
