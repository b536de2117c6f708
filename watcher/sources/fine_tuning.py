"""``kind: mistral-fine-tuning``: ``/v1/fine_tuning/jobs``.

A steady-state cycle costs the same whatever the history holds:

- new jobs come from one listing filtered with ``created_after`` (a watermark of the
  newest ``created_at`` seen, minus an overlap: the bound's inclusiveness is unconfirmed,
  and a job may become visible a little after a newer one);
- followed (non-terminal) jobs come from one listing per status they are in;
- the detail endpoint is called only for jobs that are new, changed (status or
  ``modified_at``), missing from their status listing, or RUNNING with checkpoint
  tracking on (``modified_at`` does not move when checkpoints are added);
- terminal jobs are never fetched again; a full listing every ``resync_interval``
  catches anything the cheap path missed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import structlog

from watcher.abc import Cursor, PollContext, PollResult
from watcher.config import FineTuningSourceConfig
from watcher.diff import FINE_TUNING, Snapshot
from watcher.exceptions import SourceError, SourceProtocolError
from watcher.mistral import ApiClient, NotFound
from watcher.models import FINE_TUNING_STATUSES, Job, MalformedItem, parse_job

log = structlog.get_logger(__name__)

JOBS = "/v1/fine_tuning/jobs"
DETAIL_CONCURRENCY = 4
WATERMARK_OVERLAP = 60  # seconds re-listed before the watermark each cycle
UNKNOWN_STATUS_EVERY = 10


def _iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FineTuningSource:
    kind = FINE_TUNING

    def __init__(
        self,
        config: FineTuningSourceConfig,
        client: httpx.AsyncClient,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self.name = config.name
        self.interval = config.interval
        self.api = ApiClient(
            source=config.name,
            base_url=config.base_url,
            api_key=config.api_key,
            client=client,
            timeout=config.timeout,
            max_retries=config.max_retries,
            sleep=sleep,
        )
        self._missing: set[str] = set()
        # Jobs in a status the API did not document cannot be listed by status; their
        # detail is fetched at most every UNKNOWN_STATUS_EVERY intervals (it might be a new
        # terminal status, and those must not cost a request per cycle forever).
        self._unknown_checked: dict[str, float] = {}

    async def aclose(self) -> None:
        """The shared HTTP client belongs to the daemon."""

    async def _list(self, params: Mapping[str, Any]) -> tuple[list[Job], int]:
        """Every page of one listing; pages are derived from ``total`` (there is no
        ``has_more``). Returns the jobs (deduplicated) and how many items were malformed."""
        size = self.config.page_size
        jobs: dict[str, Job] = {}
        malformed = 0
        page, pages = 0, 1
        while page < pages:
            body = await self.api.get_json(
                JOBS, {**params, "page": page, "page_size": size}, route="list"
            )
            if not isinstance(body, Mapping) or not isinstance(body.get("data", []), list):
                raise SourceProtocolError(self.name, "list answer is not {data: [...], total}")
            items = body.get("data") or []
            for raw in items:
                try:
                    job = parse_job(raw)
                except MalformedItem as exc:
                    malformed += 1
                    log.warning("malformed_job_skipped", source=self.name, reason=str(exc))
                    continue
                jobs[job.id] = job
            total = body.get("total")
            if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
                # Re-derived on every page: jobs created meanwhile shift the pages.
                pages = min(max(pages, math.ceil(total / size)), 100_000)
            elif len(items) >= size:
                pages = page + 2  # no usable total: go on until a short page
            if not items:
                break
            page += 1
        return list(jobs.values()), malformed

    async def _detail(self, job_id: str) -> Job | None:
        try:
            # Quoted: a job id is foreign data and must not reshape the request path.
            raw = await self.api.get_json(f"{JOBS}/{quote(job_id, safe='')}", {}, route="detail")
        except NotFound:
            # Deleted or never there: not asked again until the next full listing.
            log.warning("job_not_found", source=self.name, job_id=job_id)
            self._missing.add(job_id)
            return None
        try:
            job = parse_job(raw)
        except MalformedItem as exc:
            log.warning("malformed_job_skipped", source=self.name, job_id=job_id, reason=str(exc))
            return None
        return job if job.detailed else job.model_copy(update={"events": (), "checkpoints": ()})

    def _needs_detail(self, job: Job, previous: Snapshot | None, *, baseline: bool) -> bool:
        if previous is None:
            # A terminal job found by the silent baseline has no news to tell.
            return not (baseline and job.status in self.kind.terminal)
        if previous.status != job.status or previous.modified_at != job.modified_at:
            return True
        return self.config.track_checkpoints and job.status == "RUNNING"

    async def poll(self, ctx: PollContext) -> PollResult:
        self.api.requests = 0
        cursor = ctx.cursor
        full = (
            cursor.last_full_sync is None
            or ctx.now - cursor.last_full_sync >= self.config.resync_interval
        )
        baseline = not cursor.baseline_done and self.config.on_start == "baseline"
        if full:
            self._missing.clear()
        malformed = 0
        listed: dict[str, Job] = {}
        if full or cursor.watermark is None:
            jobs, bad = await self._list({})
            malformed += bad
            listed.update((j.id, j) for j in jobs)
        else:
            jobs, bad = await self._list(
                {"created_after": _iso(max(0, cursor.watermark - WATERMARK_OVERLAP))}
            )
            malformed += bad
            listed.update((j.id, j) for j in jobs)
            statuses = {s.status for s in ctx.active.values()}
            for status in sorted(statuses & set(FINE_TUNING_STATUSES)):
                jobs, bad = await self._list({"status": status})
                malformed += bad
                listed.update((j.id, j) for j in jobs)

        previous: dict[str, Snapshot] = dict(ctx.active)
        unknown = [job_id for job_id in listed if job_id not in previous]
        previous.update(await ctx.lookup(unknown))

        wanted = [
            j.id
            for j in listed.values()
            if self._needs_detail(j, previous.get(j.id), baseline=baseline)
        ]
        # Followed jobs absent from their status listing have moved on (or the listing
        # drifted): the detail tells which.
        known_statuses = set(FINE_TUNING_STATUSES)
        for job_id, snapshot in ctx.active.items():
            if job_id in listed or job_id in self._missing:
                continue
            if snapshot.status not in known_statuses:
                last = self._unknown_checked.get(job_id, float("-inf"))
                if ctx.now - last < UNKNOWN_STATUS_EVERY * self.interval:
                    continue
                self._unknown_checked[job_id] = ctx.now
            wanted.append(job_id)
        out: dict[str, Job] = {}
        limiter = anyio.CapacityLimiter(DETAIL_CONCURRENCY)

        failures: list[SourceError] = []

        async def fetch(job_id: str, scope: anyio.CancelScope) -> None:
            try:
                async with limiter:
                    job = await self._detail(job_id)
            except SourceError as exc:
                # A cycle is all or nothing: stop the other fetches, report this one.
                failures.append(exc)
                scope.cancel()
                return
            if job is not None:
                out[job_id] = job

        async with anyio.create_task_group() as tg:
            for job_id in dict.fromkeys(wanted):
                tg.start_soon(fetch, job_id, tg.cancel_scope)
        if failures:
            raise failures[0]
        # Baseline terminal jobs become snapshots from their list item alone.
        for job in listed.values():
            if job.id not in out and job.id not in previous:
                out[job.id] = job

        newest = max((j.created_at for j in listed.values()), default=None)
        watermark = cursor.watermark
        if newest is not None:
            watermark = newest if watermark is None else max(watermark, newest)
        new_cursor = Cursor(
            watermark=watermark,
            last_full_sync=ctx.now if full else cursor.last_full_sync,
            baseline_done=True,
            retired=False,
        )
        jobs_out = sorted(out.values(), key=lambda j: (j.created_at, j.id))
        return PollResult(
            jobs=jobs_out, cursor=new_cursor, requests=self.api.requests, malformed=malformed
        )
