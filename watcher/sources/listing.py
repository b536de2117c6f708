"""What every job source shares: paging a listing (:mod:`watcher.sources.paging`), detail
fetches, and a steady-state cycle whose cost does not grow with the history.

- new jobs come from one listing filtered with ``created_after`` (a watermark of the newest
  ``created_at`` seen, minus an overlap: the bound's inclusiveness is unconfirmed, and a job
  may become visible a little after a newer one);
- followed (non-terminal) jobs come from listings filtered by the statuses they are in;
- the detail endpoint is called only for what a source asks for (new or changed jobs that
  the listing describes incompletely) and for followed jobs missing from their listing;
- terminal jobs are never fetched again; a full listing every ``resync_interval`` catches
  anything the cheap path missed.

A source module subclasses :class:`ListingSource` with its paths, its parser and its few
policies; the pipeline, diff, store and sinks know nothing more of it.

With ``max_requests_per_minute`` the API client waits for room in a request budget
(the ``budget`` option); everything else about budgets is :mod:`watcher.sources.budgeted`'s,
which composes its cycles around a listing source through its public methods
(:meth:`ListingSource.page`, :meth:`~ListingSource.fetch`, :meth:`~ListingSource.whole`, …)
and is built by :func:`watcher.sources.budgeted.budgeted`. Nothing here imports it.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypedDict, Unpack
from urllib.parse import quote

import anyio
import httpx2 as httpx
import structlog

from watcher.abc import CancelAnswer, PollContext, PollResult
from watcher.config import SourceBaseConfig
from watcher.detect.diff import same_view
from watcher.exceptions import NotFound, SourceProtocolError, UnusableAnswer
from watcher.model.jobs import Job, MalformedItem
from watcher.model.snapshot import Cursor, JobKind, Snapshot
from watcher.sources.answers import ByteBudget
from watcher.sources.budget import BudgetedApiClient, RequestBudget
from watcher.sources.cancel import cancel_job
from watcher.sources.details import fetch_all
from watcher.sources.duplicates import Duplicates
from watcher.sources.jobs import created_since, deleted, iso, settle
from watcher.sources.malformed import Rejections
from watcher.sources.mistral import ApiClient
from watcher.sources.paging import MAX_PAGES, PagingHealth
from watcher.sources.policy import MIN_SPREAD, SPREAD, expected_duration
from watcher.sources.scan import Scan

log = structlog.get_logger(__name__)

UNKNOWN_STATUS_EVERY = 10  # cycles between detail checks of jobs in undocumented statuses
FLUSH_EVERY = 1000  # changed jobs a long listing gathers before they are recorded


class SourceOptions(TypedDict, total=False):
    """What a source is built with besides its config and the shared HTTP client."""

    sleep: Callable[[float], Awaitable[None]]  # the retries' backoff (and the budget's wait)
    budget: RequestBudget | None  # every request takes a place in it first
    observe: Callable[[str, int | None], None] | None  # told of every request sent
    in_flight: ByteBudget | None  # the bytes of answers buffered at once, process-wide


class ListingSource(ABC):
    """A source over ``GET <path>`` (paged list) and ``GET <path>/{id}`` (one job)."""

    path: ClassVar[str]
    statuses: ClassVar[frozenset[str]]  # the documented ones: safe in a status filter
    kind: JobKind
    # Under a request budget: how long a job typically stays in each status (a prior the
    # source's own observations move), and the statuses usually left for a terminal one.
    typical_dwell: ClassVar[Mapping[str, float]] = {}
    ending: ClassVar[frozenset[str]] = frozenset({"RUNNING", "CANCELLATION_REQUESTED"})
    initial_status: ClassVar[str | None] = "QUEUED"
    # Where a job that leaves a status usually goes next, most likely first.
    moves_on_to: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(
        self, config: SourceBaseConfig, client: httpx.AsyncClient, **options: Unpack[SourceOptions]
    ) -> None:
        self.name = config.name
        self.interval = config.interval
        self.page_size = config.page_size
        self.resync_interval = config.resync_interval
        self.on_start = config.on_start
        api_options: dict[str, Any] = {
            "source": config.name,
            "base_url": config.base_url,
            "api_key": config.api_key,
            "client": client,
            "timeout": config.timeout,
            "max_retries": config.max_retries,
            "sleep": options.get("sleep", anyio.sleep),
            "observe": options.get("observe"),
            "in_flight": options.get("in_flight"),
        }
        budget = options.get("budget")
        self.api = (
            ApiClient(**api_options) if budget is None else BudgetedApiClient(budget, **api_options)
        )
        self.missing: set[str] = set()  # answered 404: not asked again until a full listing
        # Jobs in a status the API does not document cannot be listed by status; their detail
        # is fetched every UNKNOWN_STATUS_EVERY intervals (it might be a new terminal status,
        # and those must not cost a request per cycle forever).
        self._unknown_checked: dict[str, float] = {}
        self._rejections = Rejections(config.name)
        self._duplicates = Duplicates(config.name)
        self.paging = PagingHealth(config.name, self.interval)
        self.max_pages = MAX_PAGES

    # --- what a source module provides -----------------------------------------------------

    @abstractmethod
    def parse(self, raw: Any) -> Job:
        """One raw job of this API; :class:`MalformedItem` when it is unusable."""

    def list_params(self) -> dict[str, Any]:
        """Query parameters added to every listing (e.g. an explicit order)."""
        return {}

    def status_filters(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        """The listings that return the jobs in ``statuses`` (one per status by default)."""
        return [{"status": status} for status in statuses]

    def full_listing(self, now: float) -> dict[str, Any]:
        """Query parameters of the periodic full listing (default: no filter)."""
        return {}

    def new_since(self, watermark: int) -> dict[str, Any]:
        """Query parameters of the new-jobs listing of a steady cycle (default:
        ``created_after`` the watermark, minus an overlap)."""
        return created_since(watermark)

    def detail_path(self, job_id: str) -> str:
        """The path of one job (quoted: a job id is foreign data and must not reshape the
        request path)."""
        return f"{self.path}/{quote(job_id, safe='')}"

    async def cancel(self, job_id: str) -> CancelAnswer:
        """Ask the API to cancel ``job_id`` at ``<detail path>/cancel`` (every family's
        route): :func:`watcher.sources.cancel.cancel_job`."""
        path = self.detail_path(job_id) + "/cancel"
        return await cancel_job(self.api, path, job_id, detail=self._detail)

    def settle(self, job: Job, previous: Snapshot | None, now: float) -> Job:
        """``job`` as the diff should see it, given what was known of it (default: times
        that never go back, see :func:`watcher.sources.jobs.settle`)."""
        return settle(job, previous, now)

    def needs_detail(self, job: Job, previous: Snapshot | None, *, baseline: bool) -> bool:
        """Whether a listed job must be fetched whole this cycle."""
        return False

    def needs_detail_budgeted(self, job: Job, previous: Snapshot | None) -> bool:
        """Under a request budget, whether a job listed in a steady cycle must be fetched
        whole (default: as in a whole cycle)."""
        return self.needs_detail(job, previous, baseline=False)

    def expected_end(
        self, snapshot: Snapshot, checked_at: float | None
    ) -> tuple[float, float] | None:
        """When a followed job should leave its status, and how far off that may be (under a
        request budget, checks go where changes are due). Default: a RUNNING job's
        ``metadata.expected_duration_seconds`` after it started running."""
        duration = expected_duration(snapshot.job) if snapshot.status == "RUNNING" else None
        if duration is None:
            return None
        return snapshot.status_since + duration, max(SPREAD * duration, MIN_SPREAD)

    # --- the cycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:  # noqa: B027 (nothing to close by default)
        """The shared HTTP client belongs to the daemon."""

    async def page(
        self, params: Mapping[str, Any], page: int
    ) -> tuple[list[Job], int, int | None, int]:
        """One page of a listing: its jobs in the order sent, how many were malformed, the
        ``total`` when usable, and how many items came."""
        query = {**self.list_params(), **params, "page": page, "page_size": self.page_size}
        body = await self.api.get_json(self.path, query, route="list")
        if not isinstance(body, Mapping) or not isinstance(body.get("data", []), list):
            raise SourceProtocolError(self.name, "list answer is not {data: [...], total}")
        items = body.get("data") or []
        jobs, malformed = self._rejections.parse_page(items, self.parse)
        jobs = self._duplicates.unique(jobs)
        total = body.get("total")
        usable = isinstance(total, int) and not isinstance(total, bool) and total >= 0
        return jobs, malformed, total if usable else None, len(items)

    async def listing(self, params: Mapping[str, Any]) -> tuple[list[Job], int]:
        """Every page of one listing, deduplicated by id, and how many items were malformed."""
        jobs: dict[str, Job] = {}
        malformed = 0
        async for found, bad in self.pages(params):
            malformed += bad
            jobs.update((job.id, job) for job in found)
        return list(jobs.values()), malformed

    @property
    def notice(self) -> str | None:
        """What an operator should know of the API short of a failure (its paging)."""
        return self.paging.notice

    async def pages(self, params: Mapping[str, Any]) -> AsyncIterator[tuple[list[Job], int]]:
        """One listing page by page (its jobs, how many were malformed): read on while
        pages are full, whatever ``total`` says, until a repeated page or the caps
        (:class:`~watcher.sources.paging.Paging`)."""
        paging = self.paging.listing(self.page_size, self.max_pages)
        more = True
        while more:
            found, bad, total, count = await self.page(params, paging.page)
            yield found, bad
            more = paging.read((j.id for j in found), count, total, now=time.monotonic())
        self.paging.done(paging)

    async def _detail(self, job_id: str) -> Job | None:
        try:
            raw = await self.api.get_json(self.detail_path(job_id), {}, route="detail")
        except NotFound:
            log.warning("job_not_found", source=self.name, job_id=job_id)
            self.missing.add(job_id)
            return None
        except UnusableAnswer as exc:  # too large or too deep: this job alone is skipped
            self._rejections.reject(job_id, str(exc))
            return None
        try:
            return self.parse(raw)
        except MalformedItem as exc:
            self._rejections.reject(job_id, str(exc))
            return None

    @staticmethod
    def changed(job: Job, previous: Snapshot | None) -> bool:
        return (
            previous is None
            or previous.status != job.status
            or previous.modified_at != job.modified_at
            or not same_view(previous.job, job.summary())
        )

    def full_due(self, cursor: Cursor, now: float) -> bool:
        """Whether the cycle at ``now`` is a full one (the first, or a periodic resync)."""
        return (
            cursor.last_full_sync is None
            or cursor.watermark is None
            or now - cursor.last_full_sync >= self.resync_interval
        )

    def unknown_due(self, job_id: str, now: float) -> bool:
        """Whether a job in an undocumented status is due its detail (then counted as
        checked at ``now``)."""
        last = self._unknown_checked.get(job_id, -math.inf)
        if now - last < UNKNOWN_STATUS_EVERY * self.interval:
            return False
        self._unknown_checked[job_id] = now
        return True

    async def poll(self, ctx: PollContext) -> PollResult:
        result, _ = await self.whole(ctx, full=self.full_due(ctx.cursor, ctx.now))
        return result

    def begin_cycle(self) -> None:
        """A new cycle, whole or steady: its requests count from zero, and a malformed item
        is logged again (once per cycle, not once per process)."""
        self.api.requests = 0
        self._rejections.clear()
        self._duplicates.clear()
        self.paging.begin_cycle(time.monotonic())

    async def whole(
        self, ctx: PollContext, *, full: bool, older: int | None = None
    ) -> tuple[PollResult, list[str]]:
        """One whole cycle, and the ids its answers showed. A full cycle lists the jobs
        created after ``older`` when given (else every job), and leaves followed jobs created
        up to ``older`` alone. With ``ctx.flush``: a long listing is recorded every
        :data:`FLUSH_EVERY` changed jobs (memory stays flat whatever the history), and the
        cycle's news is recorded before the checkpoint sweep of unchanged jobs starts."""
        self.begin_cycle()
        cursor = ctx.cursor
        baseline = not cursor.baseline_done and self.on_start == "baseline"
        if full:
            self.missing.clear()
        scan = Scan()
        for params in self._listings(ctx, full=full, older=older):
            async for jobs, bad in self.pages(params):
                scan.malformed += bad
                await self._take(ctx, scan, jobs, baseline=baseline)
                if ctx.flush is not None and len(scan.out) >= FLUSH_EVERY:
                    await ctx.flush(scan.drain(), cursor)  # no progress until the end
        scan.urgent += self._unlisted(ctx, scan, older)
        await self._details(ctx, scan, scan.urgent)
        watermark = cursor.watermark
        if scan.newest is not None:
            watermark = scan.newest if watermark is None else max(watermark, scan.newest)
        new_cursor = replace(
            cursor,
            watermark=watermark,
            last_full_sync=ctx.now if full else cursor.last_full_sync,
            baseline_done=True,
            baseline_at=ctx.now if baseline else cursor.baseline_at,
            retired=False,
        )
        if scan.sweep and scan.out and ctx.flush is not None:
            await ctx.flush(scan.drain(), new_cursor)  # the news goes out now
        await self._details(ctx, scan, scan.sweep)
        shown = [*scan.seen, *scan.reported, *scan.out]
        result = PollResult(
            jobs=scan.drain(),
            cursor=new_cursor,
            requests=self.api.requests,
            malformed=scan.malformed,
        )
        return result, shown

    def _listings(self, ctx: PollContext, *, full: bool, older: int | None) -> list[dict[str, Any]]:
        """The listings of a whole cycle: everything (from ``older`` on when given), or the
        new jobs and the statuses of the followed ones."""
        if full:
            listing = self.full_listing(ctx.now)
            return [listing if older is None else {**listing, "created_after": iso(max(0, older))}]
        assert ctx.cursor.watermark is not None
        followed = sorted({s.status for s in ctx.active.values()} & self.statuses)
        return [
            self.new_since(ctx.cursor.watermark),
            *(self.status_filters(followed) if followed else []),
        ]

    def _unlisted(self, ctx: PollContext, scan: Scan, older: int | None) -> list[str]:
        """Followed jobs absent from their status listing: they have moved on (or the listing
        drifted), the detail tells which."""
        out: list[str] = []
        for job_id, snapshot in list(ctx.active.items()):
            if job_id in scan.seen or job_id in self.missing:
                continue
            if older is not None and snapshot.created_at <= older:
                continue
            if snapshot.status not in self.statuses and not self.unknown_due(job_id, ctx.now):
                continue
            out.append(job_id)
        return out

    async def _take(self, ctx: PollContext, scan: Scan, jobs: list[Job], *, baseline: bool) -> None:
        """One page of a listing into ``scan``: changed jobs to record, details to fetch."""
        fresh = [job for job in jobs if job.id not in scan.seen]
        scan.seen.update(job.id for job in fresh)
        unknown = [job.id for job in fresh if job.id not in ctx.active]
        found = await ctx.lookup(unknown) if unknown else {}
        for job in fresh:
            if scan.newest is None or job.created_at > scan.newest:
                scan.newest = job.created_at
            before = ctx.active.get(job.id) or found.get(job.id)
            job = self.settle(job, before, ctx.now)
            if self.needs_detail(job, before, baseline=baseline):
                if before is not None:
                    scan.previous[job.id] = before
                # Unchanged in its listing: only a checkpoint can be new (the sweep).
                quiet = before is not None and not self.changed(job, before)
                (scan.sweep if quiet else scan.urgent).append(job.id)
            elif self.changed(job, before):
                scan.out[job.id] = job  # the listing says all there is to say

    async def _details(self, ctx: PollContext, scan: Scan, job_ids: list[str]) -> None:
        """Fetch ``job_ids`` into ``scan.out``; a followed job the API no longer knows (404:
        deleted) ends as DELETED, once."""
        got: dict[str, Job] = {}
        await self.fetch(dict.fromkeys(job_ids), got)
        for job_id, job in got.items():
            before = ctx.active.get(job_id) or scan.previous.get(job_id)
            scan.out[job_id] = self.settle(job, before, ctx.now)
        scan.out.update(self.gone(ctx, job_ids, got))

    def gone(
        self, ctx: PollContext, asked: Sequence[str], got: Mapping[str, Job]
    ) -> dict[str, Job]:
        """The followed jobs among ``asked`` whose detail answered 404, as DELETED."""
        out: dict[str, Job] = {}
        for job_id in asked:
            snapshot = ctx.active.get(job_id)
            if job_id in self.missing and job_id not in got and snapshot is not None:
                out[job_id] = deleted(snapshot, ctx.now)
        return out

    async def fetch(self, job_ids: Mapping[str, None], out: dict[str, Job]) -> None:
        """Details of ``job_ids`` into ``out``; a cycle is all or nothing: the first source
        error stops the other fetches and is raised."""
        await fetch_all(self._detail, job_ids, out)
