"""The batch source against an in-memory /v1/batch/jobs (httpx.MockTransport)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import httpx2 as httpx
import pytest

from tests.factories import T0
from watcher.abc import PollContext, PollResult
from watcher.config import BatchSourceConfig
from watcher.detect.diff import diff
from watcher.model.jobs import MalformedItem
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition
from watcher.sources.batch import BatchSource, parse_batch_job
from watcher.sources.budgeted import BudgetedSource, budgeted

KEY = "sk-batch-key"


def batch(
    job_id: str,
    status: str = "QUEUED",
    *,
    created_at: int = T0,
    total: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": job_id, "object": "batch", "input_files": ["f"], "endpoint": "/v1/chat/completions",
        "model": "mistral-small-latest", "agent_id": None, "metadata": {"team": "ml"},
        "errors": extra.pop("errors", []), "status": status, "created_at": created_at,
        "started_at": extra.pop("started_at", None),
        "completed_at": extra.pop("completed_at", None),
        "total_requests": total, "completed_requests": succeeded + failed,
        "succeeded_requests": succeeded, "failed_requests": failed,
        "output_file": None, "error_file": None, **extra,
    }  # fmt: skip


class FakeBatchApi:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.queries: list[httpx.QueryParams] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert f"Bearer {KEY}" == request.headers["authorization"]
        if request.url.path == "/v1/batch/jobs":
            self.calls["list"] += 1
            params = request.url.params
            self.queries.append(params)
            items = sorted(self.jobs.values(), key=lambda j: -j["created_at"])
            if "status" in params:
                wanted = params.get_list("status")
                items = [j for j in items if j["status"] in wanted]
            if "created_after" in params:
                bound = datetime.fromisoformat(params["created_after"]).timestamp()
                items = [j for j in items if j["created_at"] >= bound]
            page, size = int(params.get("page", 0)), int(params.get("page_size", 100))
            chunk = items[page * size : (page + 1) * size]
            return httpx.Response(200, json={"object": "list", "total": len(items), "data": chunk})
        self.calls["detail"] += 1
        job = self.jobs.get(unquote(request.url.raw_path.decode().rsplit("/", 1)[1]))
        return httpx.Response(200, json=job) if job else httpx.Response(404, json={})


class Harness:
    def __init__(self, api: FakeBatchApi, **overrides: Any) -> None:
        config = BatchSourceConfig(
            name="b",
            kind="mistral-batch",
            base_url="http://api.test",
            api_key=Secret(KEY),
            page_size=10,
            **overrides,
        )
        client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
        self.src: BatchSource | BudgetedSource = BatchSource(config, client)
        self.snapshots: dict[str, Snapshot] = {}
        self.cursor = Cursor()
        self.now = float(T0 + 3600)
        self.reported: list[Transition] = []

    async def lookup(self, ids: Sequence[str]) -> Mapping[str, Snapshot]:
        return {i: self.snapshots[i] for i in ids if i in self.snapshots}

    async def poll(self) -> PollResult:
        active = {k: v for k, v in self.snapshots.items() if not v.terminal}
        baseline = not self.cursor.baseline_done
        result = await self.src.poll(PollContext(self.cursor, active, self.now, self.lookup))
        for job in result.jobs:
            self.snapshots[job.id], out = diff(
                self.snapshots.get(job.id), job, source="b", kind=self.src.kind
            )
            if not baseline:
                self.reported.extend(out)
        self.cursor = result.cursor
        self.now += 30
        return result

    def types(self) -> list[str]:
        return [t.type for t in self.reported]


async def test_steady_cycle_is_two_listings_whatever_the_history() -> None:
    """New jobs and every followed job cost two listings per cycle, however long the
    history; the followed statuses go in one multi-valued filter."""
    costs = []
    for history in (5, 300):
        api = FakeBatchApi()
        for n in range(history):
            api.jobs[f"old-{n}"] = batch(f"old-{n}", "SUCCESS", created_at=T0 - 86400 + n)
        for n, status in enumerate(["QUEUED", "RUNNING", "CANCELLATION_REQUESTED"]):
            api.jobs[f"live-{n}"] = batch(f"live-{n}", status, created_at=T0 + n, total=10)
        harness = Harness(api)
        await harness.poll()
        await harness.poll()
        costs.append((await harness.poll()).requests)
        statuses = [q.get_list("status") for q in api.queries if "status" in q][-1]
        assert ["CANCELLATION_REQUESTED", "QUEUED", "RUNNING"] == statuses
        assert all("-created" == q["order_by"] for q in api.queries)
        assert 0 == api.calls["detail"]
    assert [2, 2] == costs


async def test_every_status_change_and_the_end() -> None:
    """QUEUED -> RUNNING -> TIMEOUT_EXCEEDED is reported step by step; the end is found
    through the detail of a job that left the followed listing."""
    api = FakeBatchApi()
    harness = Harness(api)
    await harness.poll()
    api.jobs["j"] = batch("j", "QUEUED", created_at=T0)
    await harness.poll()
    api.jobs["j"] = batch("j", "RUNNING", total=100, started_at=T0 + 5)
    await harness.poll()
    api.jobs["j"] = batch(
        "j", "TIMEOUT_EXCEEDED", total=100, succeeded=40, started_at=T0 + 5, completed_at=T0 + 99
    )
    await harness.poll()
    assert ["batch.job.queued", "batch.job.running", "batch.job.timeout_exceeded"] == (
        harness.types()
    )
    assert [(None, "QUEUED"), ("QUEUED", "RUNNING"), ("RUNNING", "TIMEOUT_EXCEEDED")] == [
        (t.previous_status, t.status) for t in harness.reported
    ]
    assert 40 == harness.reported[-1].job["succeeded_requests"]
    assert T0 + 99 == harness.reported[-1].occurred_at


async def test_progress_milestones_fire_once_each() -> None:
    """50 % and 90 % fire once each as requests are processed; total 0 fires nothing."""
    api = FakeBatchApi()
    harness = Harness(api)
    await harness.poll()
    steps = [(0, 0), (0, 0), (30, 0), (55, 0), (60, 0), (95, 0), (100, 0)]
    for done, failed in steps:
        api.jobs["j"] = batch(
            "j",
            "RUNNING",
            total=100 if done else 0,
            succeeded=done,
            failed=failed,
            started_at=T0 + 1,
        )
        await harness.poll()
    progress = [t for t in harness.reported if t.type == "batch.job.progress"]
    assert [50.0, 90.0] == [t.details["progress"]["milestone"] for t in progress]
    assert 2 == len({t.id for t in progress})


async def test_errors_rising_fires_once_with_the_summary() -> None:
    """A RUNNING job whose failed share reaches the threshold fires once, with its errors;
    too few processed requests fire nothing."""
    api = FakeBatchApi()
    harness = Harness(api, error_ratio=0.2, error_min_requests=20, progress_milestones=[100])
    await harness.poll()
    errors = [{"message": "context too long", "count": 9}]
    for succeeded, failed in [(2, 3), (20, 2), (30, 9), (30, 20), (30, 40)]:
        api.jobs["j"] = batch(
            "j",
            "RUNNING",
            total=1000,
            succeeded=succeeded,
            failed=failed,
            started_at=T0 + 1,
            errors=errors,
        )
        await harness.poll()
    rising = [t for t in harness.reported if t.type == "batch.job.errors_rising"]
    assert 1 == len(rising)
    assert errors == rising[0].details["errors"]
    assert 9 == rising[0].details["failed_requests"]


async def test_cancellation_flow() -> None:
    """RUNNING -> CANCELLATION_REQUESTED -> CANCELLED, each once."""
    api = FakeBatchApi()
    harness = Harness(api)
    api.jobs["j"] = batch("j", "RUNNING", total=10, started_at=T0 + 1)
    await harness.poll()
    for status in ("CANCELLATION_REQUESTED", "CANCELLATION_REQUESTED", "CANCELLED"):
        api.jobs["j"] = batch("j", status, total=10, started_at=T0 + 1)
        await harness.poll()
    assert ["batch.job.cancellation_requested", "batch.job.cancelled"] == harness.types()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"id": "x", "status": None, "created_at": T0}, id="null status"),
        pytest.param({"id": None, "status": "QUEUED", "created_at": T0}, id="no id"),
        pytest.param({"id": "x", "status": "QUEUED", "created_at": "soon"}, id="bad time"),
    ],
)
def test_unusable_batch_items(raw: dict[str, Any]) -> None:
    """Items without a usable id, status or creation time are refused one by one."""
    with pytest.raises(MalformedItem):
        parse_batch_job(raw)


def test_tolerant_batch_parsing() -> None:
    """Missing counters read 0, odd errors are kept as text, unknown fields are kept."""
    job = parse_batch_job(
        {
            "id": "x",
            "status": "paused",
            "created_at": T0,
            "started_at": "x",
            "errors": ["boom", {"count": 2}, 7],
            "brand_new": 1,
        }
    )
    assert 0 == job.view["total_requests"]
    assert [{"message": "boom", "count": 1}, {"message": "", "count": 2}] == job.view["errors"]
    assert {"brand_new": 1} == job.extra
    assert (None, T0) == (job.view["started_at"], job.modified_at)


async def test_deleted_job_ends_once() -> None:
    """A followed job that the API no longer knows (404 after DELETE) ends as DELETED, once,
    and is not asked for again."""
    api = FakeBatchApi()
    harness = Harness(api)
    api.jobs["j"] = batch("j", "RUNNING", total=10, started_at=T0 + 1)
    await harness.poll()
    del api.jobs["j"]
    await harness.poll()
    api.calls.clear()
    await harness.poll()
    assert ["batch.job.deleted"] == harness.types()
    assert ("RUNNING", "DELETED") == (
        harness.reported[0].previous_status,
        harness.reported[0].status,
    )
    assert harness.snapshots["j"].terminal
    assert 0 == api.calls["detail"]


async def test_status_change_without_a_timestamp_gets_the_poll_time() -> None:
    """RUNNING -> CANCELLATION_REQUESTED moves no batch timestamp: the change is dated by the
    poll that saw it, and going back and forth gives distinct ids."""
    api = FakeBatchApi()
    harness = Harness(api)
    api.jobs["j"] = batch("j", "RUNNING", total=10, started_at=T0 + 1)
    await harness.poll()
    seen_at = []
    for status in ("PAUSED", "RUNNING", "PAUSED"):
        api.jobs["j"] = batch("j", status, total=10, started_at=T0 + 1)
        seen_at.append(int(harness.now))
        await harness.poll()
    assert 3 == len({t.id for t in harness.reported})
    assert seen_at == [t.occurred_at for t in harness.reported]
    assert seen_at[-1] == harness.snapshots["j"].status_since


async def test_resync_reads_only_the_last_week_and_a_day() -> None:
    """The hourly full listing of batch jobs is bounded by the longest possible run."""
    api = FakeBatchApi()
    harness = Harness(api)
    await harness.poll()
    bound = datetime.fromisoformat(api.queries[0]["created_after"]).timestamp()
    assert 8 * 86400 == pytest.approx(harness.now - 30 - bound, abs=1)


async def test_success_with_failed_requests_is_reported_apart() -> None:
    """QUEUED -> SUCCESS with every request failed says so, once, with the error file."""
    api = FakeBatchApi()
    harness = Harness(api)
    await harness.poll()
    api.jobs["j"] = batch("j", "QUEUED")
    await harness.poll()
    api.jobs["j"] = batch(
        "j",
        "SUCCESS",
        total=100,
        failed=100,
        started_at=T0 + 1,
        completed_at=T0 + 9,
        error_file="f-err",
    )
    await harness.poll()
    await harness.poll()
    assert ["batch.job.queued", "batch.job.success", "batch.job.completed_with_errors"] == (
        harness.types()
    )
    assert (100, "f-err") == (
        harness.reported[-1].details["failed_requests"],
        harness.reported[-1].details["error_file"],
    )


# --- under a request budget (max_requests_per_minute) ----------------------------------------


class BudgetedHarness(Harness):
    """The harness with a request budget whose clock is the harness's (waits move it on)."""

    def __init__(self, api: FakeBatchApi, budget: int) -> None:
        super().__init__(api)
        self.times: list[float] = []
        config = BatchSourceConfig(
            name="b",
            kind="mistral-batch",
            base_url="http://api.test",
            api_key=Secret(KEY),
            page_size=10,
            max_requests_per_minute=budget,
        )

        def handler(request: httpx.Request) -> httpx.Response:
            self.times.append(self.now)
            return api.handler(request)

        async def sleep(seconds: float) -> None:
            self.now += seconds

        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        self.src = budgeted(BatchSource, config, client, sleep=sleep, clock=lambda: self.now)


def test_a_running_batch_is_expected_to_end_at_its_pace() -> None:
    """Half the requests processed in an hour: the end is expected an hour later; a user's
    metadata.expected_duration_seconds wins; nothing is expected of a QUEUED job."""
    src = Harness(FakeBatchApi()).src
    job = batch("j", "RUNNING", created_at=T0, total=100, succeeded=40, failed=10)
    job["started_at"] = T0 + 60
    snapshot, _ = diff(None, parse_batch_job(job), source="b", kind=src.kind)
    end = src.expected_end(snapshot, float(T0 + 60 + 3600))
    assert end is not None
    assert T0 + 60 + 7200 == pytest.approx(end[0])
    job["metadata"] = {"expected_duration_seconds": "600"}
    snapshot, _ = diff(None, parse_batch_job(job), source="b", kind=src.kind)
    assert (T0 + 660, 120.0) == src.expected_end(snapshot, None)
    queued, _ = diff(None, parse_batch_job(batch("q")), source="b", kind=src.kind)
    assert src.expected_end(queued, None) is None


async def test_budgeted_batch_lists_one_status_at_a_time() -> None:
    """Under a budget each status is its own listing (one value of the multi-valued
    filter), counters moving within RUNNING are reported from the listing, and no minute
    sees more than the budget."""
    api = FakeBatchApi()
    for n in range(30):
        status = "RUNNING" if n % 3 else "QUEUED"
        api.jobs[f"j{n}"] = batch(f"j{n}", status, created_at=T0 + n, total=100, started_at=T0)
    harness = BudgetedHarness(api, 6)
    await harness.poll()
    api.jobs["j1"] = batch("j1", "RUNNING", created_at=T0 + 1, total=100, succeeded=60)
    api.jobs["j0"] = batch("j0", "RUNNING", created_at=T0, total=100, started_at=T0 + 900)
    api.queries.clear()
    api.calls.clear()
    for _ in range(10):
        await harness.poll()
    filters = [q.get_list("status") for q in api.queries if "status" in q]
    assert filters
    assert all(1 == len(f) for f in filters)
    assert {"batch.job.progress", "batch.job.running"} <= set(harness.types())
    assert 6 >= max(sum(1 for t in harness.times if s <= t < s + 60) for s in harness.times)
