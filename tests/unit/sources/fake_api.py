"""A fake /v1/fine_tuning/jobs for the budgeted and steady cycles' tests: one handler
routing on the path, newest first, paged from ``total``, and a log of what was asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx2 as httpx

from tests.factories import T0, history, raw_job
from watcher.abc import PollContext
from watcher.config import FineTuningSourceConfig
from watcher.detect.diff import diff
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.sources.budgeted import BudgetedSource, budgeted
from watcher.sources.fine_tuning import KIND, FineTuningSource, parse_job
from watcher.sources.policy import Policy

KEY = "sk-test-key-123"
NOW = float(T0 + 100_000)  # the local clock, in step with the API's timestamps
PATH = "/v1/fine_tuning/jobs"

# What was asked: ("list", a status or "new" or "all", page) or ("detail", job id).
Asked = tuple[str, str, int] | tuple[str, str]


def ft_job(job_id: str, status: str, created_at: int) -> dict[str, Any]:
    """A detailed raw job that went from QUEUED to ``status``, ten seconds a step."""
    walk = history(*dict.fromkeys(("QUEUED", status)), start=created_at)
    return raw_job(job_id, status, created_at=created_at, modified_at=walk[-1][1], events=walk)


class Api:
    """The jobs, as the API holds them, and what it was asked."""

    def __init__(self, *jobs: dict[str, Any]) -> None:
        self.jobs = {job["id"]: job for job in jobs}
        self.asked: list[Asked] = []
        self.queries: list[httpx.QueryParams] = []
        self.failing = False  # every answer is a 500
        self.newest_first = True  # the order of listings

    def move(self, job_id: str, status: str, at: int) -> None:
        """The job enters ``status`` at ``at``, with its event."""
        job = self.jobs[job_id]
        job.update(status=status, modified_at=at)
        job["events"].append(
            {"name": "status-updated", "created_at": at, "data": {"status": status}}
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        self.queries.append(params)
        if request.url.path != PATH:
            job_id = request.url.path.rsplit("/", 1)[1]
            self.asked.append(("detail", job_id))
            if self.failing:
                return httpx.Response(500)
            job = self.jobs.get(job_id)
            return httpx.Response(200, json=job) if job else httpx.Response(404, json={})
        page = int(params["page"])
        what = params.get("status") or ("new" if "created_after" in params else "all")
        self.asked.append(("list", what, page))
        if self.failing:
            return httpx.Response(500)
        order = -1 if self.newest_first else 1
        items = sorted(self.jobs.values(), key=lambda j: order * j["created_at"])
        if "status" in params:
            items = [j for j in items if j["status"] == params["status"]]
        if "created_after" in params:
            bound = datetime.fromisoformat(params["created_after"]).timestamp()
            items = [j for j in items if j["created_at"] >= bound]
        size = int(params["page_size"])
        data = [
            {k: v for k, v in j.items() if k not in ("events", "checkpoints")}
            for j in items[page * size : (page + 1) * size]
        ]
        return httpx.Response(200, json={"object": "list", "total": len(items), "data": data})


def config(page_size: int = 10, **overrides: Any) -> FineTuningSourceConfig:
    return FineTuningSourceConfig(
        name="ft",
        kind="mistral-fine-tuning",
        base_url="http://api.test",
        api_key=Secret(KEY),
        page_size=page_size,
        track_checkpoints=False,
        **overrides,
    )


def listing_source(api: Api, page_size: int = 10) -> FineTuningSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    return FineTuningSource(config(page_size), client)


class Clock:
    """The budget's clock: its waits move it on."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def budgeted_source(
    api: Api, per_minute: int, clock: Clock, policy: Policy | None = None, **overrides: Any
) -> BudgetedSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    settings = config(max_requests_per_minute=per_minute, **overrides)
    return budgeted(
        FineTuningSource, settings, client, sleep=clock.sleep, clock=clock, policy=policy
    )


def followed(*raw: dict[str, Any]) -> dict[str, Snapshot]:
    """The snapshots of ``raw`` jobs as a detail showed them."""
    return {job["id"]: diff(None, parse_job(job), source="ft", kind=KIND)[0] for job in raw}


def context(
    active: Mapping[str, Snapshot], now: float = NOW, cursor: Cursor | None = None
) -> PollContext:
    """A steady cycle's context: baseline done, resynced a minute ago."""

    async def lookup(ids: Sequence[str]) -> Mapping[str, Snapshot]:
        return {}

    if cursor is None:
        cursor = Cursor(watermark=T0 + 50_000, last_full_sync=now - 60, baseline_done=True)
    return PollContext(cursor, active, now, lookup)
