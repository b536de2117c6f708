"""The fine-tuning source against an in-memory API (httpx.MockTransport)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import anyio
import httpx2 as httpx
import pytest

from tests.factories import T0, history, raw_job
from watcher.abc import PollContext, PollResult
from watcher.config import FineTuningSourceConfig
from watcher.detect.diff import diff
from watcher.exceptions import SourceAuthError, SourceRetired, SourceUnavailable
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.sources.budgeted import BudgetedSource, budgeted
from watcher.sources.fine_tuning import KIND, FineTuningSource, parse_job

KEY = "sk-test-key-123"


class FakeApi:
    """Just enough of /v1/fine_tuning/jobs: paging from total, status and created_after."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.queued: list[httpx.Response] = []  # answers served before the normal ones

    def add(self, job: dict[str, Any]) -> None:
        self.jobs[job["id"]] = job

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert f"Bearer {KEY}" == request.headers["authorization"]
        path = request.url.path
        kind = "list" if path == "/v1/fine_tuning/jobs" else "detail"
        self.calls[kind] += 1
        if self.queued:
            return self.queued.pop(0)
        if kind == "detail":
            job = self.jobs.get(unquote(request.url.raw_path.decode().rsplit("/", 1)[1]))
            if job is None:
                return httpx.Response(404, json={"detail": "No fine tuning job matches"})
            return httpx.Response(200, json=job)
        params = request.url.params
        items = sorted(self.jobs.values(), key=lambda j: -j["created_at"])
        if "status" in params:
            items = [j for j in items if j["status"] == params["status"]]
        if "created_after" in params:
            bound = datetime.fromisoformat(params["created_after"]).timestamp()
            items = [j for j in items if j["created_at"] >= bound]
        page, size = int(params.get("page", 0)), int(params.get("page_size", 100))
        summary = [
            {k: v for k, v in j.items() if k not in ("events", "checkpoints")}
            for j in items[page * size : (page + 1) * size]
        ]
        return httpx.Response(200, json={"object": "list", "total": len(items), "data": summary})


def source(api: FakeApi, delays: list[float] | None = None, **overrides: Any) -> FineTuningSource:
    config = FineTuningSourceConfig(
        name="ft",
        kind="mistral-fine-tuning",
        base_url="http://api.test",
        api_key=Secret(KEY),
        page_size=overrides.pop("page_size", 10),
        **overrides,
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))

    async def sleep(seconds: float) -> None:
        (delays if delays is not None else []).append(seconds)

    return FineTuningSource(config, client, sleep=sleep)


class Harness:
    """Runs polls the way the pipeline does, keeping snapshots in memory."""

    def __init__(self, src: FineTuningSource | BudgetedSource) -> None:
        self.src = src
        self.snapshots: dict[str, Snapshot] = {}
        self.cursor = Cursor()
        self.now = 1_000.0

    async def lookup(self, ids: Sequence[str]) -> Mapping[str, Snapshot]:
        return {i: self.snapshots[i] for i in ids if i in self.snapshots}

    async def poll(self) -> PollResult:
        active = {k: v for k, v in self.snapshots.items() if not v.terminal}
        result = await self.src.poll(PollContext(self.cursor, active, self.now, self.lookup))
        for j in result.jobs:
            self.snapshots[j.id], _ = diff(self.snapshots.get(j.id), j, source="ft", kind=KIND)
        self.cursor = result.cursor
        self.now += 30
        return result


def detailed(job_id: str, status: str, created_at: int, steps: Sequence[str]) -> dict[str, Any]:
    return raw_job(
        job_id,
        status,
        created_at=created_at,
        modified_at=created_at + 10 * (len(steps) - 1),
        events=history(*steps, start=created_at),
    )


def fill(api: FakeApi, terminal: int, active: int) -> None:
    for n in range(terminal):
        api.add(detailed(f"done-{n}", "SUCCESS", T0 + n, ["QUEUED", "RUNNING", "SUCCESS"]))
    for n in range(active):
        status = ["QUEUED", "VALIDATING", "RUNNING"][n % 3]
        api.add(
            detailed(f"live-{n}", status, T0 + 100_000 + n, ["QUEUED", status][: 1 + (n % 3 > 0)])
        )


async def steady_requests(terminal: int, active: int) -> int:
    api = FakeApi()
    fill(api, terminal, active)
    harness = Harness(source(api))
    await harness.poll()  # baseline: full listing
    await harness.poll()
    return (await harness.poll()).requests


async def test_steady_cycle_cost_does_not_grow_with_history() -> None:
    """A steady-state cycle costs the same with 500 or 5 terminal jobs."""
    assert await steady_requests(5, 6) == await steady_requests(500, 6)


async def test_baseline_does_not_fetch_terminal_details() -> None:
    """The silent baseline lists everything but fetches details only of active jobs."""
    api = FakeApi()
    fill(api, 30, 3)
    result = await Harness(source(api)).poll()
    assert 4 == api.calls["list"]  # 33 jobs, pages of 10
    assert 3 == api.calls["detail"]
    assert 33 == len(result.jobs)


async def test_running_jobs_are_fetched_for_checkpoints_only_when_tracked() -> None:
    """With checkpoint tracking off, an unchanged RUNNING job costs no detail call."""
    for track, expected in ((True, 1), (False, 0)):
        api = FakeApi()
        api.add(detailed("r", "RUNNING", T0, ["QUEUED", "RUNNING"]))
        harness = Harness(source(api, track_checkpoints=track))
        await harness.poll()
        api.calls.clear()
        await harness.poll()
        assert expected == api.calls["detail"]


async def test_new_and_changed_jobs_are_found() -> None:
    """A job created after the baseline and a job that changed status both come back."""
    api = FakeApi()
    api.add(detailed("old", "QUEUED", T0, ["QUEUED"]))
    harness = Harness(source(api))
    await harness.poll()
    api.add(detailed("new", "RUNNING", T0 + 50, ["QUEUED", "RUNNING"]))
    api.add(detailed("old", "FAILED", T0, ["QUEUED", "RUNNING", "FAILED"]))
    result = await harness.poll()
    assert {"old", "new"} == {j.id for j in result.jobs}
    assert all(j.detailed for j in result.jobs)
    assert "FAILED" == harness.snapshots["old"].status


async def test_malformed_item_does_not_discard_the_page() -> None:
    """One item without an id is skipped; the rest of the page is kept."""
    api = FakeApi()
    api.add(detailed("a", "SUCCESS", T0, ["SUCCESS"]))
    api.queued.append(
        httpx.Response(
            200,
            json={
                "total": 3,
                "data": [
                    {"status": "RUNNING"},
                    raw_job("b", "SUCCESS"),
                    raw_job("c", "SUCCESS", job_type="FT"),
                ],
            },
        )
    )
    result = await Harness(source(api)).poll()
    assert ({"b", "c"}, 1) == ({j.id for j in result.jobs}, result.malformed)


async def test_retry_after_is_honoured() -> None:
    """429 then 503 are retried, waiting at least what Retry-After asked."""
    api = FakeApi()
    api.queued += [httpx.Response(429, headers={"retry-after": "7"}), httpx.Response(503)]
    delays: list[float] = []
    await Harness(source(api, delays)).poll()
    assert 2 == len(delays)
    assert delays[0] >= 7


@pytest.mark.parametrize(
    ("responses", "error"),
    [
        pytest.param(
            [httpx.Response(401, json={"message": "Unauthorized"})], SourceAuthError, id="401"
        ),
        pytest.param([httpx.Response(403)], SourceAuthError, id="403"),
        pytest.param([httpx.Response(410)], SourceRetired, id="410"),
        pytest.param([httpx.Response(500)] * 4, SourceUnavailable, id="5xx outlasting retries"),
        pytest.param(
            [httpx.Response(200, content=b"{not json")] * 4, SourceUnavailable, id="malformed body"
        ),
    ],
)
async def test_errors_become_source_errors(
    responses: list[httpx.Response], error: type[Exception]
) -> None:
    """HTTP failures map to watcher's exceptions, with no secret in the message."""
    api = FakeApi()
    api.queued += responses
    with pytest.raises(error) as caught:
        await Harness(source(api)).poll()
    assert KEY not in str(caught.value)


async def test_timeouts_are_retried() -> None:
    """A transport timeout is retried like a 5xx."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"total": 0, "data": []})

    api = FakeApi()
    api.handler = handler  # type: ignore[method-assign]
    result = await Harness(source(api)).poll()
    assert (2, []) == (calls, result.jobs)


def test_tolerant_parsing_of_drift() -> None:
    """Unknown status, job_type, fields, nulls and missing optionals parse and are kept."""
    raw = {
        "id": "x",
        "status": "PAUSED",
        "created_at": "1751010000",
        "job_type": "reasoning",
        "metadata": None,
        "suffix": None,
        "brand_new": {"a": 1},
        "events": None,
        "checkpoints": [{"step_number": None}, {"step_number": 2, "metrics": None}],
    }
    parsed = parse_job(json.loads(json.dumps(raw)))
    assert ("PAUSED", "reasoning", T0) == (
        parsed.status,
        parsed.view["job_type"],
        parsed.created_at,
    )
    assert {"brand_new": {"a": 1}} == parsed.extra
    assert () == parsed.events
    assert [2] == [c.step_number for c in parsed.checkpoints or ()]


async def test_hostile_job_id_cannot_reshape_the_request() -> None:
    """A job id with slashes, dots and a query is sent as one quoted path segment."""
    api = FakeApi()
    hostile = "../../admin?x=1#frag"
    api.add(detailed(hostile, "RUNNING", T0, ["QUEUED", "RUNNING"]))
    paths: list[str] = []
    handler = api.handler

    def spy(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return handler(request)

    api.handler = spy  # type: ignore[method-assign]
    result = await Harness(source(api)).poll()
    assert [(hostile, True)] == [(j.id, j.detailed) for j in result.jobs]
    assert "/v1/fine_tuning/jobs/..%2F..%2Fadmin%3Fx%3D1%23frag" in paths


async def test_vanished_job_is_not_asked_for_every_cycle() -> None:
    """A followed job that answers 404 is asked for again only at the next full listing."""
    api = FakeApi()
    api.add(detailed("gone", "RUNNING", T0, ["QUEUED", "RUNNING"]))
    harness = Harness(source(api, resync_interval=3600))
    await harness.poll()
    del api.jobs["gone"]
    await harness.poll()
    api.calls.clear()
    await harness.poll()
    assert 0 == api.calls["detail"]


async def test_long_retry_after_pauses_every_request() -> None:
    """A Retry-After beyond what a cycle may wait gives up the cycle, and the next cycles
    send nothing until that time has passed."""
    api = FakeApi()
    api.queued.append(httpx.Response(429, headers={"retry-after": "600"}))
    harness = Harness(source(api))
    with pytest.raises(SourceUnavailable, match="600"):
        await harness.poll()
    api.calls.clear()
    with pytest.raises(SourceUnavailable, match="wait"):
        await harness.poll()
    assert 0 == sum(api.calls.values())


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            {"id": "evil\ud800", "status": "RUNNING", "created_at": T0}, id="surrogate id"
        ),
        pytest.param({"id": "x" * 300, "status": "RUNNING", "created_at": T0}, id="huge id"),
        pytest.param({"id": "a\nb", "status": "RUNNING", "created_at": T0}, id="newline in id"),
        pytest.param({"id": "x", "status": "RUN\ud800", "created_at": T0}, id="surrogate status"),
        pytest.param({"id": "x", "status": "RUNNING", "created_at": [1]}, id="list timestamp"),
    ],
)
def test_unusable_keys_are_malformed(raw: dict[str, Any]) -> None:
    """Ids and statuses that cannot be stored or sent are refused item by item."""
    from watcher.model.jobs import MalformedItem

    with pytest.raises(MalformedItem):
        parse_job(raw)


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_timestamp_units_are_normalised(scale: int) -> None:
    """Seconds, milli-, micro- and nanoseconds all read as the same Unix second."""
    assert T0 == parse_job({"id": "x", "status": "QUEUED", "created_at": T0 * scale}).created_at


def test_surrogates_in_free_text_are_replaced() -> None:
    """A lone surrogate in a suffix cannot break storage or payloads later."""
    parsed = parse_job({"id": "x", "status": "QUEUED", "created_at": T0, "suffix": "a\ud800b"})
    assert "a?b" == parsed.view["suffix"]


async def test_trickling_answer_hits_the_deadline() -> None:
    """An API that sends one byte now and then cannot hold a request past its timeout."""

    async def trickle() -> Any:
        yield b"{"
        await anyio.sleep(30)
        yield b"}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    api = FakeApi()
    api.handler = handler  # type: ignore[method-assign]
    started = anyio.current_time()
    with anyio.fail_after(10), pytest.raises(SourceUnavailable, match="timeout"):
        await Harness(source(api, timeout=0.3, max_retries=1)).poll()
    assert anyio.current_time() - started < 3


async def test_unknown_status_jobs_are_checked_sparingly() -> None:
    """Jobs in an undocumented status cannot be listed by status: their detail is fetched
    every tenth cycle, not every cycle."""
    api = FakeApi()
    for n in range(5):
        api.add(detailed(f"odd-{n}", "PAUSED", T0 + n, ["QUEUED", "PAUSED"]))
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))  # watermark
    harness = Harness(source(api, interval=30))
    await harness.poll()
    api.calls.clear()
    for _ in range(10):
        await harness.poll()
    assert 5 == api.calls["detail"]


# --- under a request budget (max_requests_per_minute) ----------------------------------------


class Budgeted(Harness):
    """A harness whose clock is also the budget's (its waits move it on), recording when
    each request went out, what each answer showed, and what was reported."""

    def __init__(self, api: FakeApi, budget: int, **overrides: Any) -> None:
        self.api = api
        self.times: list[float] = []
        self.shown: dict[str, list[float]] = {}
        self.queries: list[httpx.QueryParams] = []
        self.reported: list[tuple[str, str]] = []
        config = FineTuningSourceConfig(
            name="ft",
            kind="mistral-fine-tuning",
            base_url="http://api.test",
            api_key=Secret(KEY),
            page_size=overrides.pop("page_size", 10),
            max_requests_per_minute=budget,
            **overrides,
        )

        def handler(request: httpx.Request) -> httpx.Response:
            self.times.append(self.now)
            self.queries.append(request.url.params)
            response = api.handler(request)
            body = json.loads(response.content or b"null")
            items = body.get("data", []) if isinstance(body, dict) else []
            if isinstance(body, dict) and "data" not in body and "id" in body:
                items = [body]
            for item in items:
                self.shown.setdefault(item["id"], []).append(self.now)
            return response

        async def sleep(seconds: float) -> None:
            self.now += seconds

        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        super().__init__(
            budgeted(FineTuningSource, config, client, sleep=sleep, clock=lambda: self.now)
        )
        self.now = float(T0 + 300_000)  # a local clock in step with the API's timestamps

    async def poll(self) -> PollResult:
        active = {k: v for k, v in self.snapshots.items() if not v.terminal}
        baseline = not self.cursor.baseline_done
        result = await self.src.poll(PollContext(self.cursor, active, self.now, self.lookup))
        for j in result.jobs:
            self.snapshots[j.id], out = diff(self.snapshots.get(j.id), j, source="ft", kind=KIND)
            if not baseline:
                self.reported += [(t.job_id or "", t.status) for t in out if t.status]
        self.cursor = result.cursor
        self.now += 30
        return result

    def busiest_minute(self) -> int:
        return max(sum(1 for t in self.times if s <= t < s + 60) for s in self.times)


def move(api: FakeApi, job_id: str, status: str, at: int) -> None:
    """The job enters ``status`` at ``at``, as the API would show it."""
    job = api.jobs[job_id]
    job["status"] = status
    job["modified_at"] = at
    job["events"].append({"name": "status-updated", "created_at": at, "data": {"status": status}})


def running(job_id: str, created_at: int, *, expected: int | None = None) -> dict[str, Any]:
    job = detailed(job_id, "RUNNING", created_at, ["QUEUED", "RUNNING"])
    job["metadata"] = {"expected_duration_seconds": expected}
    return job


async def test_budget_caps_every_minute_and_loses_no_change() -> None:
    """With 4 requests a minute for 40 active jobs, no minute sees more than 4 requests
    (the paced baseline included), and every change is reported once, in the end."""
    api = FakeApi()
    fill(api, 30, 0)
    for n in range(40):
        status = ("QUEUED", "VALIDATING", "RUNNING", "RUNNING")[n % 4]
        api.add(detailed(f"live-{n}", status, T0 + 100_000 + n, ["QUEUED", status]))
    harness = Budgeted(api, 4)
    await harness.poll()
    changed = {"live-2": "SUCCESS", "live-3": "FAILED", "live-0": "VALIDATING", "live-7": "FAILED"}
    for job_id, status in changed.items():
        move(api, job_id, status, T0 + 200_000)
    for _ in range(60):
        await harness.poll()
    assert 4 >= harness.busiest_minute()
    assert sorted(changed.items()) == sorted(harness.reported)


async def test_one_step_moves_are_reported_from_the_listing() -> None:
    """Jobs gone from QUEUED show up on VALIDATING's first page: one step, nothing skipped,
    so no detail is spent on them."""
    api = FakeApi()
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))
    for n in range(2):
        api.add(detailed(f"q{n}", "QUEUED", T0 + n, ["QUEUED"]))
    harness = Budgeted(api, 20)
    await harness.poll()
    for n in range(2):
        move(api, f"q{n}", "VALIDATING", T0 + 500)
    api.calls.clear()
    await harness.poll()
    assert [("q0", "VALIDATING"), ("q1", "VALIDATING")] == sorted(harness.reported)
    assert 0 == api.calls["detail"]


async def test_a_run_that_ended_gets_its_detail() -> None:
    """A RUNNING job gone from its page is fetched whole: the end (and its checkpoints)
    come with the detail."""
    api = FakeApi()
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))
    api.add(running("r", T0, expected=600))
    harness = Budgeted(api, 20)
    await harness.poll()
    move(api, "r", "SUCCESS", T0 + 700)
    api.calls.clear()
    await harness.poll()
    assert [("r", "SUCCESS")] == harness.reported
    assert 1 == api.calls["detail"]


async def test_details_the_cycle_cannot_pay_wait_for_the_next() -> None:
    """With one request a cycle, three ended runs found by one page are fetched one per
    cycle afterwards: no cycle spends more, none is lost."""
    api = FakeApi()
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))
    for n in range(3):
        api.add(running(f"r{n}", T0 + n, expected=600))
    harness = Budgeted(api, 2)
    await harness.poll()
    for n in range(3):
        move(api, f"r{n}", "SUCCESS", T0 + 700)
    costs = [(await harness.poll()).requests for _ in range(12)]
    assert max(costs) <= 1
    assert [("r0", "SUCCESS"), ("r1", "SUCCESS"), ("r2", "SUCCESS")] == sorted(harness.reported)


async def test_every_job_is_seen_within_the_staleness_bound() -> None:
    """Quiet runs far from their end are still listed at least every twice max_staleness,
    while the QUEUED jobs (a short-lived status) are looked at far more often."""
    api = FakeApi()
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))
    for n in range(45):
        api.add(running(f"r{n}", T0 + n, expected=10 * 86400))
    for n in range(4):
        api.add(detailed(f"q{n}", "QUEUED", T0 + 1000 + n, ["QUEUED"]))
    harness = Budgeted(api, 4)
    await harness.poll()
    start = harness.now
    for _ in range(240):
        await harness.poll()
    assert isinstance(harness.src, BudgetedSource)
    limit = 2 * harness.src.rationing.max_staleness(6)  # 5 RUNNING pages and 1 QUEUED

    def gaps(job_id: str) -> list[float]:
        seen = [start, *[t for t in harness.shown[job_id] if t >= start], harness.now]
        return [b - a for a, b in itertools.pairwise(seen)]

    assert max(max(gaps(f"r{n}")) for n in range(45)) <= limit
    assert len(gaps("q0")) > 3 * max(len(gaps(f"r{n}")) for n in range(45))
    assert 4 >= harness.busiest_minute()


async def test_a_failed_budgeted_cycle_forgets_nothing() -> None:
    """A cycle that fails half-way remembers no check: the next one finds the change."""
    api = FakeApi()
    api.add(detailed("recent", "SUCCESS", T0 + 100_000, ["QUEUED", "SUCCESS"]))
    api.add(running("r", T0, expected=600))
    harness = Budgeted(api, 20, max_retries=0)
    await harness.poll()
    move(api, "r", "FAILED", T0 + 700)
    api.queued.append(httpx.Response(500))
    with pytest.raises(SourceUnavailable):
        await harness.poll()
    harness.now += 30
    await harness.poll()
    assert [("r", "FAILED")] == harness.reported


async def test_budgeted_resync_lists_recent_history_only() -> None:
    """The periodic full listing under a budget asks only for jobs created since shortly
    before the last one: the whole history would eat the budget every hour."""
    api = FakeApi()
    fill(api, 300, 3)
    harness = Budgeted(api, 600, resync_interval=120)
    await harness.poll()  # the baseline reads everything (30 pages)
    baseline = len(harness.times)
    for _ in range(5):
        await harness.poll()
    resyncs = [q for q in harness.queries[baseline:] if "status" not in q and "created_after" in q]
    assert resyncs
    assert 30 < baseline
    assert len(harness.times) - baseline < 30


def test_budget_must_be_positive() -> None:
    """max_requests_per_minute is optional, and at least 1 when given."""
    from pydantic import ValidationError

    common = {"name": "ft", "kind": "mistral-fine-tuning", "api_key": Secret(KEY)}
    assert FineTuningSourceConfig(**common).max_requests_per_minute is None  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        FineTuningSourceConfig(**common, max_requests_per_minute=0)  # type: ignore[arg-type]


async def test_retries_take_their_place_in_the_budget() -> None:
    """Every attempt counts: two 503s and the answer, at 2 requests a minute, spread over
    more than a minute."""
    api = FakeApi()
    api.add(detailed("done", "SUCCESS", T0, ["QUEUED", "SUCCESS"]))
    api.queued += [httpx.Response(503), httpx.Response(503)]
    harness = Budgeted(api, 2)
    await harness.poll()
    assert 3 == len(harness.times)
    assert 2 >= harness.busiest_minute()
    assert harness.times[-1] - harness.times[0] >= 60
