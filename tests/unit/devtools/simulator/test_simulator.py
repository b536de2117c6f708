"""The built-in fine-tuning API simulator: its engine (fake clock), its API and admin API."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.waiting import wait_until
from watcher.devtools.simulator import (
    JobSpec,
    RunningSimulator,
    Simulator,
    create_app,
    format_banner,
    load_demo,
    load_scenario,
    parse_scenario,
    random_scenario,
    run_simulator,
    simulator,
)
from watcher.devtools.simulator.engine import Fault
from watcher.devtools.simulator.jobs import STATUSES, TERMINAL

KEY = "test-key"
T0 = 1_800_000_000.0
JOBS = "/v1/fine_tuning/jobs"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def running() -> AsyncIterator[RunningSimulator]:
    async with simulator(api_key=KEY, seed=7) as served:
        yield served


@pytest.fixture
async def client(running: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=running.base_url, headers=headers, timeout=10) as c:
        yield c


async def create(client: httpx.AsyncClient, **body: Any) -> list[str]:
    response = await client.post("/_sim/jobs", json=body)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["ids"]
    return ids


async def add_fault(client: httpx.AsyncClient, **body: Any) -> None:
    response = await client.post("/_sim/faults", json=body)
    assert response.status_code == 200, response.text


def statuses(job: dict[str, Any]) -> list[str]:
    return [event["data"]["status"] for event in job["events"]]


# -- engine, on a fake clock ---------------------------------------------------------------


def scripted(**overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "name": "job",
        "steps": (("VALIDATING", 2.0), ("VALIDATED", 4.0), ("RUNNING", 6.0), ("SUCCESS", 14.0)),
        "checkpoints": 3,
    }
    return JobSpec(**{**fields, **overrides})


def test_lifecycle_advances_with_the_clock() -> None:
    """Scripted steps apply when due, each with its own event, modified_at and log entry."""
    clock = FakeClock()
    sim = Simulator(clock=clock, seed=1)
    sim.schedule([scripted(create_after=2.0)])
    assert 0 == sim.advance()
    clock.now = T0 + 2 + 5
    sim.advance()
    job = sim.jobs[sim.names["job"]]
    assert "VALIDATED" == job.status
    assert int(T0) + 2 == job.created_at
    assert int(T0) + 6 == job.modified_at
    clock.now = T0 + 2 + 20
    sim.advance()
    detailed = job.detailed()
    assert ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "SUCCESS"] == statuses(detailed)
    assert [int(T0) + t for t in (2, 4, 6, 8, 16)] == [e["created_at"] for e in detailed["events"]]
    expected_log = [
        (None, "QUEUED"),
        ("QUEUED", "VALIDATING"),
        ("VALIDATING", "VALIDATED"),
        ("VALIDATED", "RUNNING"),
        ("RUNNING", "SUCCESS"),
    ]
    assert expected_log == [(e["previous_status"], e["status"]) for e in sim.log]
    assert {job.id} == {e["job_id"] for e in sim.log}


def test_success_fills_fine_tuned_model_and_metadata() -> None:
    """fine_tuned_model appears on SUCCESS only; metadata once validated; classifiers differ."""
    clock = FakeClock()
    sim = Simulator(clock=clock, seed=1)
    completion = sim.create(scripted(name="c"))
    classifier = sim.create(scripted(name="k", job_type="classifier"))
    assert (None, None) == (completion.fine_tuned_model, completion.metadata)
    clock.now = T0 + 4
    sim.advance()
    assert completion.metadata is not None
    assert "EUR" == completion.metadata["cost_currency"]
    assert completion.fine_tuned_model is None
    clock.now = T0 + 14
    sim.advance()
    assert f"ft:open-mistral-7b:sim:20270115:{completion.id[:8]}" == completion.fine_tuned_model
    assert classifier.fine_tuned_model is not None
    assert classifier.fine_tuned_model.startswith("ft:classifier:ministral-3b-latest:sim:")
    assert "classifier_targets" in classifier.detailed()
    assert "repositories" not in classifier.summary()
    assert [] == completion.summary()["repositories"]


def test_speed_divides_every_delay() -> None:
    """At speed 10 a step scripted at 14 s is applied 1.4 s after creation."""
    clock = FakeClock()
    sim = Simulator(clock=clock, speed=10)
    sim.schedule([scripted(create_after=10.0)])
    clock.now = T0 + 1 + 1.39
    sim.advance()
    job = sim.jobs[sim.names["job"]]
    assert "RUNNING" == job.status
    clock.now = T0 + 1 + 1.4
    sim.advance()
    assert "SUCCESS" == job.status


def test_checkpoints_do_not_bump_modified_at() -> None:
    """Checkpoints arrive during RUNNING, newest first, without touching modified_at."""
    clock = FakeClock()
    sim = Simulator(clock=clock)
    job = sim.create(scripted())
    clock.now = T0 + 6
    sim.advance()
    running_since = job.modified_at
    clock.now = T0 + 12.5
    sim.advance()
    detailed = job.detailed()
    assert "RUNNING" == detailed["status"]
    assert running_since == detailed["modified_at"]
    assert [30, 20, 10] == [c["step_number"] for c in detailed["checkpoints"]]
    assert [int(T0) + t for t in (12, 10, 8)] == [c["created_at"] for c in detailed["checkpoints"]]
    unvalidated = detailed["checkpoints"][2]["metrics"]
    assert (0.0, 0.0) == (unvalidated["valid_loss"], unvalidated["valid_mean_token_accuracy"])
    assert detailed["checkpoints"][1]["metrics"]["valid_loss"] > 0


def test_listing_matches_a_full_sort_as_jobs_come_and_statuses_move() -> None:
    """The cached newest-first order and its created_after/before cuts agree with a plain
    filter and sort, also after new jobs appear and statuses change."""
    sim = Simulator(clock=FakeClock(), seed=3)
    for i in range(40):
        sim.create(
            JobSpec(status="SUCCESS" if i % 3 else "RUNNING", frozen=True), created_at=1000 + i // 4
        )

    def reference(after: float | None, before: float | None, status: str | None) -> list[str]:
        found = [
            job
            for job in sim.jobs.values()
            if (after is None or job.created_at >= after)
            and (before is None or job.created_at < before)
            and (status is None or job.status == status)
        ]
        return [j.id for j in sorted(found, key=lambda j: (-j.created_at, j.id))]

    bounds = (None, 999, 1000, 1003.5, 1005, 1009, 1010, 2000)
    for round_ in range(2):
        for after, before, status in itertools.product(bounds, bounds, (None, "RUNNING")):
            listed = sim.list_jobs(created_after=after, created_before=before, status=status)
            assert reference(after, before, status) == [job.id for job in listed]
        if round_ == 0:
            sim.create(JobSpec(status="QUEUED", frozen=True), created_at=1004)
            sim.set_status(next(iter(sim.jobs)), "RUNNING")


def test_frozen_job_never_moves() -> None:
    """A frozen job ignores its script and the follow-up of a cancellation."""
    clock = FakeClock()
    sim = Simulator(clock=clock)
    job = sim.create(scripted(frozen=True))
    clock.now = T0 + 100
    sim.advance()
    assert ("QUEUED", []) == (job.status, job.checkpoints)
    sim.cancel(job.id)
    clock.now = T0 + 200
    sim.advance()
    assert "CANCELLATION_REQUESTED" == job.status


def test_cancel_replaces_the_script() -> None:
    """Cancelling a running job ends in CANCELLED; its scripted SUCCESS never comes."""
    clock = FakeClock()
    sim = Simulator(clock=clock)
    job = sim.create(scripted())
    clock.now = T0 + 7
    sim.advance()
    sim.cancel(job.id)
    clock.now = T0 + 30
    sim.advance()
    assert ["RUNNING", "CANCELLATION_REQUESTED", "CANCELLED"] == statuses(job.detailed())[-3:]
    assert job.fine_tuned_model is None


def test_start_moves_a_parked_job_back_to_queued() -> None:
    """/start on VALIDATED goes QUEUED, RUNNING, SUCCESS; on another status it is refused."""
    clock = FakeClock()
    sim = Simulator(clock=clock)
    job = sim.create(
        JobSpec(job_type="classifier", auto_start=False, status="VALIDATED", checkpoints=2)
    )
    sim.start(job.id)
    assert "QUEUED" == job.status
    clock.now = T0 + 60
    sim.advance()
    expected = ["QUEUED", "VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "SUCCESS"]
    assert expected == statuses(job.detailed())
    assert 2 == len(job.checkpoints)
    with pytest.raises(ValueError, match="not VALIDATED"):
        sim.start(job.id)


def test_events_can_be_listed_newest_first() -> None:
    """events_order newest_first lists the events like the 2024 API did."""
    sim = Simulator(clock=FakeClock())
    job = sim.create(JobSpec(status="SUCCESS", events_order="newest_first"))
    assert ["SUCCESS", "RUNNING", "VALIDATED", "VALIDATING", "QUEUED"] == statuses(job.detailed())


def test_creation_in_a_late_status_back_dates_its_history() -> None:
    """A job created in CANCELLED has the events of every status before it, oldest first."""
    sim = Simulator(clock=FakeClock())
    job = sim.create(JobSpec(status="CANCELLED", checkpoints=2), log=False)
    detailed = job.detailed()
    expected = ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "CANCELLATION_REQUESTED"]
    assert [*expected, "CANCELLED"] == statuses(detailed)
    times = [e["created_at"] for e in detailed["events"]]
    assert sorted(times) == times
    assert (times[-1], times[0]) == (detailed["modified_at"], detailed["created_at"])
    assert 2 == len(detailed["checkpoints"])
    assert [] == sim.log


def test_faults_are_consumed_in_order_per_route() -> None:
    """Each request takes the first fault matching its route; counted faults run out."""
    sim = Simulator()
    sim.add_fault(Fault(mode="500", count=1, route="detail"))
    sim.add_fault(Fault(mode="429", count=2, route="all"))
    taken = [sim.take_fault(route) for route in ("list", "detail", "list", "detail")]
    assert ["429", "500", "429", None] == [f.mode if f else None for f in taken]


def test_random_scenario_is_seeded_and_varied() -> None:
    """The same seed gives the same jobs, and a big one covers every kind of ending."""
    assert random_scenario(3, 20) == random_scenario(3, 20)
    assert random_scenario(3, 20) != random_scenario(4, 20)
    clock = FakeClock()
    sim = Simulator(clock=clock, seed=3)
    sim.schedule(random_scenario(3, 60))
    clock.now = T0 + 120
    sim.advance()
    ends = {job.status for job in sim.jobs.values()}
    assert TERMINAL | {"VALIDATED"} == ends
    assert {"completion", "classifier"} == {job.job_type for job in sim.jobs.values()}


def test_demo_scenario_ends_within_25_seconds() -> None:
    """The demo plays SUCCESS, FAILED and CANCELLED, steps at least 2 s apart, in 25 s."""
    specs = load_demo()
    assert 3 == len(specs)
    for spec in specs:
        assert 2 <= spec.create_after <= 4
        times = [0.0] + [after for _, after in spec.steps]
        assert all(b - a >= 2 for a, b in itertools.pairwise(times))
    clock = FakeClock()
    sim = Simulator(clock=clock)
    sim.schedule(specs)
    clock.now = T0 + 25
    sim.advance()
    ends = {name: sim.jobs[job_id].status for name, job_id in sim.names.items()}
    assert {"SUCCESS", "FAILED", "CANCELLED"} == set(ends.values())
    assert 3 == len(sim.jobs[sim.names["support-bot"]].checkpoints)
    assert "CANCELLATION_REQUESTED" in [entry["status"] for entry in sim.log]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[]", "a mapping with a 'jobs' list", id="not a mapping"),
        pytest.param("jobs: 3", "jobs: must be a list", id="jobs not a list"),
        pytest.param("jobz: []", "jobz: unknown field", id="unknown top-level field"),
        pytest.param("jobs: [{colour: red}]", r"jobs\[0\]\.colour: unknown field", id="field"),
        pytest.param(
            "jobs: [{steps: [[RUNNING, 5], [SUCCESS, 2]]}]",
            r"jobs\[0\]\.steps\[1\]: steps must be in time order",
            id="steps out of order",
        ),
        pytest.param(
            "jobs: [{steps: [RUNNING]}]", r"jobs\[0\]\.steps\[0\]: must be a", id="bad step"
        ),
        pytest.param(
            "jobs: [{steps: [[RUNNING, -1]]}]", r"steps\[0\]: must not be negative", id="negative"
        ),
        pytest.param("jobs: [{checkpoints: two}]", r"\.checkpoints: must be", id="checkpoints"),
        pytest.param("jobs: [{create_after: soon}]", r"\.create_after: must be", id="delay"),
        pytest.param("jobs: [{events_order: random}]", r"\.events_order: must be", id="order"),
        pytest.param("jobs: [{auto_start: maybe}]", r"\.auto_start: must be true", id="bool"),
        pytest.param("jobs: [{suffix: [1]}]", r"\.suffix: must be a string", id="suffix"),
        pytest.param("jobs: [{name: a}, {name: a}]", r"jobs\[1\]\.name: duplicate", id="dup"),
        pytest.param("jobs: [\n  - {", "not valid YAML", id="yaml"),
    ],
)
def test_scenario_errors_name_the_field(text: str, message: str) -> None:
    """A bad scenario raises ValueError naming the offending field."""
    with pytest.raises(ValueError, match=message):
        parse_scenario(text, source="s.yaml")


def test_scenario_file_accepts_hostile_strings(tmp_path: Path) -> None:
    """Any string goes as suffix or model; a missing file is a ValueError naming it."""
    path = tmp_path / "s.yaml"
    path.write_text('jobs:\n  - {suffix: "<b>\\n\'; --", model: "ü 🚀", job_type: FT}\n')
    [spec] = load_scenario(path)
    assert ("<b>\n'; --", "ü 🚀", "FT") == (spec.suffix, spec.model, spec.job_type)
    with pytest.raises(ValueError, match=r"nope\.yaml"):
        load_scenario(tmp_path / "nope.yaml")


# -- the /v1 API over HTTP ---------------------------------------------------------------


async def test_pagination_total_and_newest_first(
    running: RunningSimulator, client: httpx.AsyncClient
) -> None:
    """Pages are 0-based slices of the newest-first list; total counts every match."""
    for i in range(25):  # in-process: 25 admin round trips would only slow the test down
        running.sim.create(JobSpec(suffix=f"s{i}"), created_at=1_700_000_000 + i // 2)
    pages = []
    for page in range(4):
        with anyio.fail_after(5):
            response = await client.get(JOBS, params={"page": page, "page_size": 10})
        body = response.json()
        assert ("list", 25) == (body["object"], body["total"])
        pages.append(body["data"])
    assert [10, 10, 5, 0] == [len(p) for p in pages]
    items = [job for page in pages for job in page]
    assert 25 == len({job["id"] for job in items})
    keys = [(job["created_at"], job["id"]) for job in items]
    assert sorted(keys, key=lambda k: (-k[0], k[1])) == keys
    assert not {"events", "checkpoints"} & set(items[0])
    default = (await client.get(JOBS)).json()
    assert 25 == len(default["data"])


async def test_page_size_is_capped_and_validated(client: httpx.AsyncClient) -> None:
    """page_size above 1000 is capped; bad page or page_size answer a FastAPI-style 422."""
    await create(client, count=1001, status="SUCCESS")
    capped = (await client.get(JOBS, params={"page_size": 5000})).json()
    assert (1001, 1000) == (capped["total"], len(capped["data"]))
    for params in ({"page_size": 0}, {"page": -1}, {"page": "abc"}, {"created_by_me": "x"}):
        response = await client.get(JOBS, params=params)
        assert 422 == response.status_code
        [error] = response.json()["detail"]
        assert ["query", next(iter(params))] == error["loc"]


async def test_list_filters(client: httpx.AsyncClient) -> None:
    """status, model, suffix and the created_after (inclusive) / before bounds filter."""
    [old] = await create(client, created_at=1_700_000_000, status="RUNNING", suffix="a")
    [edge] = await create(client, created_at=1_700_000_100, status="SUCCESS", model="m")
    [new] = await create(client, created_at=1_700_000_200, status="RUNNING", suffix="b")

    async def ids(**params: Any) -> list[str]:
        response = await client.get(JOBS, params=params)
        assert 200 == response.status_code, response.text
        return [job["id"] for job in response.json()["data"]]

    assert [new, old] == await ids(status="RUNNING")
    assert [edge] == await ids(model="m")
    assert [new] == await ids(suffix="b")
    assert [new, edge] == await ids(created_after="2023-11-14T22:15:00Z")  # == edge's second
    assert [new, edge] == await ids(created_after="2023-11-14T23:15:00+01:00")
    assert [old] == await ids(created_before="2023-11-14T22:15:00Z")
    assert [] == await ids(status="FAILED")
    response = await client.get(JOBS, params={"status": "PAUSED"})
    assert 422 == response.status_code
    assert "enum" == response.json()["detail"][0]["type"]


async def test_auth_is_required(running: RunningSimulator) -> None:
    """/v1 without the right bearer key answers 401 with a message and a request id."""
    async with httpx.AsyncClient(base_url=running.base_url, timeout=5) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            response = await anonymous.get(JOBS, headers=headers)
            assert 401 == response.status_code
            body = response.json()
            assert "Unauthorized" == body["message"]
            int(body["request_id"], 16)
        assert 200 == (await anonymous.get("/_sim/stats")).status_code


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    """An unknown job id answers the API's 404 body."""
    response = await client.get(f"{JOBS}/00000000-0000-4000-8000-000000000000")
    assert 404 == response.status_code
    assert {"detail": "No fine tuning job matches the given query."} == response.json()


async def test_detail_carries_events_and_checkpoints(client: httpx.AsyncClient) -> None:
    """The single-job GET adds events and checkpoints to the summary fields."""
    [job_id] = await create(client, status="RUNNING", checkpoints=2, wandb_project="p")
    body = (await client.get(f"{JOBS}/{job_id}")).json()
    assert ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING"] == statuses(body)
    assert [20, 10] == [c["step_number"] for c in body["checkpoints"]]
    assert body["integrations"][0]["url"].startswith("https://wandb.ai/")
    summary = (await client.get(JOBS)).json()["data"][0]
    assert summary == {k: v for k, v in body.items() if k not in ("events", "checkpoints")}


async def test_cancel_and_start_over_http(client: httpx.AsyncClient) -> None:
    """POST cancel and start answer the detailed job; a finished job cannot be cancelled."""
    [running_id] = await create(client, status="RUNNING")
    [parked_id] = await create(client, status="VALIDATED", job_type="classifier")
    [done_id] = await create(client, status="SUCCESS")
    cancelled = await client.post(f"{JOBS}/{running_id}/cancel")
    assert "CANCELLATION_REQUESTED" == cancelled.json()["status"]
    started = await client.post(f"{JOBS}/{parked_id}/start")
    assert ("QUEUED", "classifier") == (started.json()["status"], started.json()["job_type"])
    assert 409 == (await client.post(f"{JOBS}/{done_id}/cancel")).status_code
    assert 404 == (await client.post(f"{JOBS}/{done_id}/nope")).status_code


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status_code", "retry_after"),
    [("429", 429, "2"), ("500", 500, None), ("502", 502, None), ("503", 503, "1.5")],
)
async def test_error_faults(
    client: httpx.AsyncClient, mode: str, status_code: int, retry_after: str | None
) -> None:
    """An error fault answers its status (Retry-After for 429/503) once, then normal."""
    await add_fault(client, mode=mode, count=1, retry_after=2 if mode == "429" else 1.5)
    faulted = await client.get(JOBS)
    assert (status_code, retry_after) == (faulted.status_code, faulted.headers.get("retry-after"))
    assert 200 == (await client.get(JOBS)).status_code


async def test_fault_routes_and_unlimited_count(client: httpx.AsyncClient) -> None:
    """A detail-only fault spares the list; count null lasts until the faults are cleared."""
    [job_id] = await create(client)
    await add_fault(client, mode="500", count=None, route="detail")
    for _ in range(3):
        assert 500 == (await client.get(f"{JOBS}/{job_id}")).status_code
        assert 200 == (await client.get(JOBS)).status_code
    listed = (await client.get("/_sim/faults")).json()["faults"]
    fault = {"mode": "500", "count": None, "retry_after": None, "delay": 1.0, "route": "detail"}
    assert [fault] == listed
    await client.delete("/_sim/faults")
    assert 200 == (await client.get(f"{JOBS}/{job_id}")).status_code


async def test_malformed_fault_sends_invalid_json(client: httpx.AsyncClient) -> None:
    """malformed answers 200 with a body that is not JSON."""
    await add_fault(client, mode="malformed")
    response = await client.get(JOBS)
    assert 200 == response.status_code
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_truncated_fault_breaks_one_item(client: httpx.AsyncClient) -> None:
    """truncated answers a list where one item lacks its id among good ones."""
    await create(client, count=3, status="RUNNING")
    await add_fault(client, mode="truncated", route="list")
    body = (await client.get(JOBS)).json()
    assert [True, False, True] == ["id" in job for job in body["data"]]
    assert 3 == body["total"]


async def test_gone_fault_and_retire(client: httpx.AsyncClient) -> None:
    """gone and retire answer 410 on every /v1 route; un-retiring restores the API."""
    [job_id] = await create(client)
    await add_fault(client, mode="gone", count=1)
    gone = await client.get(f"{JOBS}/{job_id}")
    assert (410, {"detail": "This API has been retired"}) == (gone.status_code, gone.json())
    await client.post("/_sim/retire")
    for response in (
        await client.get(JOBS),
        await client.get(f"{JOBS}/{job_id}"),
        await client.post(f"{JOBS}/{job_id}/cancel"),
    ):
        assert 410 == response.status_code
    await client.delete("/_sim/retire")
    assert 200 == (await client.get(JOBS)).status_code


async def test_slow_fault_delays_the_answer(client: httpx.AsyncClient) -> None:
    """slow holds the request for its delay, visible as in_flight, then answers normally."""
    await add_fault(client, mode="slow", delay=0.5)
    results: list[int] = []

    async def slow_request() -> None:
        results.append((await client.get(JOBS)).status_code)

    async def one_in_flight() -> bool:
        return 1 == (await client.get("/_sim/stats")).json()["in_flight"]

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            started = time.monotonic()
            tg.start_soon(slow_request)
            await wait_until(one_in_flight, within=5, what="the slow request in flight")
    assert [200] == results
    assert time.monotonic() - started >= 0.5


async def test_bad_fault_is_refused(client: httpx.AsyncClient) -> None:
    """An unknown fault mode answers 400 naming the field."""
    response = await client.post("/_sim/faults", json={"mode": "teapot"})
    assert 400 == response.status_code
    assert response.json()["detail"].startswith("mode:")


# -- admin API -----------------------------------------------------------------------------


async def test_stats_count_v1_requests(client: httpx.AsyncClient) -> None:
    """Stats count list, detail and other /v1 requests, faulted and unauthorized included."""
    [job_id] = await create(client)
    await add_fault(client, mode="500", route="list")
    await client.get(JOBS)
    await client.get(JOBS)
    await client.get(f"{JOBS}/{job_id}")
    await client.get(f"{JOBS}/{job_id}", headers={"Authorization": "Bearer nope"})
    await client.post(f"{JOBS}/{job_id}/cancel")
    stats = (await client.get("/_sim/stats")).json()
    expected = {"requests": {"list": 2, "detail": 2, "other": 1, "total": 5}, "in_flight": 0}
    assert expected == stats
    reset = (await client.post("/_sim/stats/reset")).json()
    assert 0 == reset["requests"]["total"]


async def test_applied_log_and_unknown_status(client: httpx.AsyncClient) -> None:
    """Admin status changes apply now, any string included, and land in the applied log."""
    [job_id] = await create(client)
    response = await client.post(f"/_sim/jobs/{job_id}/status", json={"status": "PAUSED"})
    assert "PAUSED" == response.json()["status"]
    before = response.json()["modified_at"]
    checkpointed = (await client.post(f"/_sim/jobs/{job_id}/checkpoint")).json()
    assert (1, before) == (len(checkpointed["checkpoints"]), checkpointed["modified_at"])
    log = (await client.get("/_sim/log")).json()["log"]
    assert [(None, "QUEUED"), ("QUEUED", "PAUSED")] == [
        (e["previous_status"], e["status"]) for e in log
    ]
    assert {job_id} == {e["job_id"] for e in log}
    assert ["PAUSED"] == [j["status"] for j in (await client.get(JOBS)).json()["data"]]


async def test_admin_status_with_steps(running: RunningSimulator) -> None:
    """An admin status change can carry the steps the job follows next."""
    clock = FakeClock()
    running.sim.clock = clock
    job = running.sim.create(JobSpec())
    async with httpx.AsyncClient(base_url=running.base_url, timeout=5) as admin:
        body = {"status": "RUNNING", "steps": [["SUCCESS", 4]], "checkpoints": 1}
        assert 200 == (await admin.post(f"/_sim/jobs/{job.id}/status", json=body)).status_code
        clock.now = T0 + 5
        detailed = (await admin.get(f"/_sim/jobs/{job.id}")).json()
    assert ("SUCCESS", 1) == (detailed["status"], len(detailed["checkpoints"]))


async def test_bulk_creation_of_terminal_jobs_is_fast(client: httpx.AsyncClient) -> None:
    """5,000 SUCCESS jobs are created in well under a second, with history but no log."""
    started = time.monotonic()
    with anyio.fail_after(5):
        ids = await create(client, count=5000, status="SUCCESS")
    assert time.monotonic() - started < 2.0
    assert 5000 == len(set(ids))
    assert [] == (await client.get("/_sim/log")).json()["log"]
    page = (await client.get(JOBS, params={"page": 4, "page_size": 1000})).json()
    assert (5000, 1000) == (page["total"], len(page["data"]))
    detailed = (await client.get(f"{JOBS}/{ids[1234]}")).json()
    assert ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "SUCCESS"] == statuses(detailed)
    assert detailed["fine_tuned_model"]


async def test_admin_jobs_listing_and_validation(client: httpx.AsyncClient) -> None:
    """GET /_sim/jobs lists detailed jobs and names; bad bodies answer 400 naming the field."""
    [job_id] = await create(client, name="mine", job_type="classifier")
    listing = (await client.get("/_sim/jobs")).json()
    assert {"mine": job_id} == listing["names"]
    assert "classifier_targets" in listing["jobs"][0]
    for body, field in (
        ({"count": "many"}, "count"),
        ({"colour": 1}, "colour"),
        ({"steps": [["RUNNING"]]}, "steps[0]"),
        ({"created_at": "yesterday"}, "created_at"),
    ):
        response = await client.post("/_sim/jobs", json=body)
        assert 400 == response.status_code
        assert response.json()["detail"].startswith(field), response.json()
    assert 404 == (await client.post("/_sim/jobs/nope/status", json={"status": "X"})).status_code
    await client.delete("/_sim/jobs")
    assert [] == (await client.get("/_sim/jobs")).json()["jobs"]


async def test_admin_api_is_loopback_only() -> None:
    """A non-loopback client gets 403 from the admin API."""
    app = create_app(Simulator(), KEY)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as remote:
        assert 403 == (await remote.get("/_sim/stats")).status_code


async def test_scheduled_jobs_appear_over_http() -> None:
    """Jobs handed to simulator() are created after their delay (scaled by speed)."""
    clock = FakeClock()
    spec = JobSpec(name="late", create_after=0.5, steps=(("RUNNING", 0.5),))
    async with simulator(jobs=[spec], speed=5, api_key=KEY, clock=clock) as served:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=served.base_url, headers=headers) as c:

            async def listed() -> list[str]:
                return [job["status"] for job in (await c.get(JOBS)).json()["data"]]

            seen = [await listed()]
            for now in (T0 + 0.09, T0 + 0.11, T0 + 0.25):
                clock.now = now
                seen.append(await listed())
    assert [[], [], ["QUEUED"], ["RUNNING"]] == seen


async def test_run_simulator_serves_until_cancelled() -> None:
    """run_simulator calls ready with its URL, serves the demo, and stops when cancelled."""
    urls: list[str] = []
    listening = anyio.Event()

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: run_simulator(
                    host="127.0.0.1",
                    port=0,
                    scenario=None,
                    speed=100,
                    seed=None,
                    api_key=KEY,
                    ready=ready,
                )
            )
            await listening.wait()
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=urls[0], headers=headers) as c:

                async def demo_jobs_listed() -> bool:
                    return 3 == (await c.get(JOBS)).json()["total"]

                await wait_until(demo_jobs_listed, within=10, what="the demo jobs")
            tg.cancel_scope.cancel()
    banner = format_banner(urls[0], KEY)
    assert urls[0] in banner
    assert KEY in banner


def test_speed_must_be_positive() -> None:
    """A zero or negative speed is refused."""
    for speed in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="speed"):
            Simulator(speed=speed)


def test_every_known_status_has_a_history() -> None:
    """Creating a job in any known status works and ends in that status."""
    sim = Simulator(clock=FakeClock())
    for status in STATUSES:
        assert status == sim.create(JobSpec(status=status)).status
