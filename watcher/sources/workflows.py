"""``kind: mistral-workflows``: Workflows executions (workflows reference §3, §4, §6, §7).

Polling is the discovery and the safety net: ``GET /v1/workflows/runs`` with a
``start_time_after`` watermark (minus an overlap) for new executions and a multi-valued
``status`` filter for the followed ones, ``next_page_token`` paging; terminal executions
are never read again; ``GET /v1/workflows/executions/{id}`` for the detail.

The event streams (:mod:`watcher.sources.streams`) make it event-driven: each event
wakes a poll cycle of this source at once (``Follows``), and a cycle that comes soon after
a whole one is *hinted*: it reads only the executions the streams spoke of (a GET for a
lifecycle event, none for an activity's retry), attaches their events to them
(:attr:`~watcher.model.jobs.Job.stream`) and commits the streams' positions with the news.
A lifecycle event the GET does not confirm yet (the API lags its own stream) waits, its
position uncommitted, for a later cycle.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Unpack
from urllib.parse import quote

import anyio
import httpx2 as httpx
import structlog

from watcher.abc import PollContext, PollResult
from watcher.config import WorkflowsSourceConfig
from watcher.exceptions import SourceError, SourceProtocolError
from watcher.model import types
from watcher.model.jobs import Job, MalformedItem, StreamEvent
from watcher.model.snapshot import Cursor, JobKind, Snapshot
from watcher.model.statuses import WORKFLOW_ENDS, WORKFLOW_STATUSES, WORKFLOW_TERMINAL
from watcher.sources.jobs import WATERMARK_OVERLAP, iso
from watcher.sources.listing import ListingSource, SourceOptions
from watcher.sources.streams import Follower, Hints, Taken
from watcher.sources.workflow_jobs import (
    KEPT,
    LIFECYCLE,
    attempt_of,
    carry,
    parse_event,
    parse_execution,
    status_details,
    workflow_facts,
)

RESYNC_WINDOW = 7 * 86400  # a full resync reads the executions started in the last week
HINTED_WITHIN = 0.5  # of the interval: a cycle this soon after a whole one is hinted
DEFER_AT_MOST = 60.0  # seconds a lifecycle event waits for the API to agree with it
EVENTS_PATH = "/v1/workflows/events/list"
BACKFILL_LIMIT = 1000  # events read for an execution no stream followed (one page)
BACKFILL_PER_CYCLE = 50

log = structlog.get_logger(__name__)


class WorkflowsSource(ListingSource):
    path = "/v1/workflows/runs"
    statuses = frozenset(WORKFLOW_STATUSES) - {"CONTINUED_AS_NEW"}
    typical_dwell: ClassVar[Mapping[str, float]] = {"RUNNING": 3600.0}
    initial_status: ClassVar[str | None] = "RUNNING"

    def __init__(
        self,
        config: WorkflowsSourceConfig,
        client: httpx.AsyncClient,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(config, client, **options)
        self.kind = JobKind(types.WORKFLOW_EXECUTION, WORKFLOW_ENDS, workflow_facts, status_details)
        self.workflows = config.workflows
        self.deployments = config.deployments
        self.durations = dict(config.expected_durations)
        self.streaming = config.stream and config.max_streams > 0
        self.hints = Hints()
        self.follower = Follower(
            self.api,
            self.hints,
            max_streams=config.max_streams,
            idle_timeout=config.stream_idle_timeout,
        )
        self._last_whole = -1e18
        self._deferred_since: dict[str, float] = {}  # event id -> when it first waited

    # --- the listing --------------------------------------------------------------------

    def parse(self, raw: Any) -> Job:
        return parse_execution(raw, self.durations)

    def wanted(self, job: Job) -> bool:
        """Whether the source's ``workflows`` / ``deployments`` filters keep ``job``."""
        name, deployment = job.view.get("workflow_name"), job.view.get("deployment_name")
        if self.workflows and not any(fnmatch.fnmatchcase(name or "", w) for w in self.workflows):
            return False
        return not self.deployments or any(
            fnmatch.fnmatchcase(deployment or "", d) for d in self.deployments
        )

    def list_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"sort_by": "start_time", "order": "desc"}
        # One name without a glob is filtered by the API; several, or globs, here.
        if self.workflows and len(self.workflows) == 1 and not _glob(self.workflows[0]):
            params["workflow_identifier"] = self.workflows[0]
        if self.deployments and len(self.deployments) == 1 and not _glob(self.deployments[0]):
            params["deployment_name"] = self.deployments[0]
        return params

    def full_listing(self, now: float) -> dict[str, Any]:
        return {"start_time_after": iso(max(0, int(now) - RESYNC_WINDOW))}

    def new_since(self, watermark: int) -> dict[str, Any]:
        return {"start_time_after": iso(max(0, watermark - WATERMARK_OVERLAP))}

    def status_filters(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        return [{"status": list(statuses)}]  # ``status=RUNNING&status=…``: one listing

    def detail_path(self, job_id: str) -> str:
        return f"/v1/workflows/executions/{quote(job_id, safe='')}"

    def settle(self, job: Job, previous: Snapshot | None, now: float) -> Job:
        return super().settle(carry(job, previous), previous, now)

    async def page(
        self, params: Mapping[str, Any], page: int
    ) -> tuple[list[Job], int, int | None, int]:
        """Page ``page`` of a listing (from 0): the runs listing has no page numbers and no
        ``total``, so its tokens are followed from the first page (``page + 1`` requests;
        fewer when the listing ends first, then the page is empty). Cycles read whole
        listings through :meth:`pages`; this serves callers that ask for one page."""
        index = 0
        async for jobs, malformed in self.pages(params):
            if index == page:
                return jobs, malformed, None, len(jobs) + malformed
            index += 1
        return [], 0, None, 0

    async def pages(self, params: Mapping[str, Any]) -> AsyncIterator[tuple[list[Job], int]]:
        """The listing page by page, following ``next_page_token`` (a token seen twice ends
        it: a server that loops must not hold the cycle; pages and time are capped as every
        listing's, :mod:`watcher.sources.paging`)."""
        token: str | None = None
        seen: set[str] = set()
        paging = self.paging.listing(self.page_size, self.max_pages)
        while True:
            query = {**self.list_params(), **params, "page_size": self.page_size}
            if token is not None:
                query["next_page_token"] = token
            body = await self.api.get_json(self.path, query, route="list")
            if not isinstance(body, Mapping) or not isinstance(body.get("executions", []), list):
                raise SourceProtocolError(self.name, "runs answer is not {executions: [...]}")
            items = body.get("executions") or []
            jobs, malformed = self._rejections.parse_page(items, self.parse)
            yield [job for job in jobs if self.wanted(job)], malformed
            token = body.get("next_page_token")
            if not isinstance(token, str) or not token or token in seen or not items:
                return
            seen.add(token)
            # Only the caps of the paging policy apply: a token, not a short page, ends it.
            if not paging.read((), self.page_size, None, now=time.monotonic()):
                self.paging.done(paging)
                return

    # --- the cycle ----------------------------------------------------------------------

    async def follow(
        self, load_cursor: Callable[[], Awaitable[Cursor]], nudge: Callable[[], None]
    ) -> None:
        """Follow the event streams of the followed executions until cancelled (while this
        replica owns the source); ``nudge`` asks for a poll cycle now."""
        if self.streaming:
            await self.follower.run(load_cursor, nudge)
        else:
            await anyio.sleep_forever()  # polling alone: nothing to follow

    def streams_open(self) -> int:
        return len(self.follower.open)

    async def poll(self, ctx: PollContext) -> PollResult:
        taken = self.hints.take(ctx.cursor.streams)
        # Woken by a stream soon after a whole cycle: only what the streams spoke of. A
        # cycle without hints (the schedule's) is always whole.
        recent = ctx.now - self._last_whole < HINTED_WITHIN * self.interval
        hinted = bool(taken.events or taken.checks) and recent
        if hinted and not self.full_due(ctx.cursor, ctx.now):
            self.begin_cycle()
            result, shown = PollResult(jobs=[], cursor=ctx.cursor), list[str]()
        else:
            result, shown = await self.whole(ctx, full=self.full_due(ctx.cursor, ctx.now))
            self._last_whole = ctx.now
        jobs = {job.id: job for job in result.jobs}
        await self._confirm(ctx, taken, jobs, set(shown))
        await self._backfill(ctx, taken, jobs)
        deferred = self._attach(ctx, taken, jobs)
        merged: dict[str, Snapshot | Job] = {**ctx.active, **jobs}
        active = {k: v for k, v in merged.items() if v.status not in WORKFLOW_ENDS}
        cursor = replace(result.cursor, streams=self._positions(ctx, taken, deferred, active))
        self.follower.follow(_roots(active))
        return PollResult(
            jobs=sorted(jobs.values(), key=lambda j: (j.created_at, j.id)),
            cursor=cursor,
            requests=self.api.requests,
            malformed=result.malformed,
            degraded=self.follower.problem,
        )

    async def _confirm(
        self, ctx: PollContext, taken: Taken, jobs: dict[str, Job], shown: set[str]
    ) -> None:
        """A GET for each execution a lifecycle event or an ended stream speaks of (unless
        this cycle listed it); the others are taken as last known."""
        ask = {
            job_id
            for job_id, events in taken.events.items()
            if any(e.type in LIFECYCLE for e in events) or job_id not in ctx.active
        } | taken.checks
        ask -= shown | set(jobs)
        known = await ctx.lookup([j for j in ask | set(taken.events) if j not in ctx.active])
        got: dict[str, Job] = {}
        await self.fetch(dict.fromkeys(sorted(ask)), got)
        for job_id, job in got.items():
            jobs[job_id] = self.settle(job, ctx.active.get(job_id) or known.get(job_id), ctx.now)
        jobs.update(self.gone(ctx, sorted(ask), got))
        for job_id in taken.events:
            before = ctx.active.get(job_id) or known.get(job_id)
            if job_id not in jobs and before is not None:
                jobs[job_id] = _as_last_seen(before)

    async def _backfill(self, ctx: PollContext, taken: Taken, jobs: dict[str, Job]) -> None:
        """Executions that began and ended between two polls (no stream followed them):
        their events, read once from ``/events/list``, tell what a stream would have told
        (activity retries, why it failed). One request each, for those that ended lately,
        at most :data:`BACKFILL_PER_CYCLE` a cycle; best effort."""
        if not self.streaming or (not ctx.cursor.baseline_done and self.on_start == "baseline"):
            return
        recent = ctx.now - 2 * self.interval - WATERMARK_OVERLAP
        ended = [
            job
            for job in jobs.values()
            if job.status in WORKFLOW_TERMINAL
            and job.modified_at >= recent
            and job.id not in ctx.active
            and job.id not in taken.events
        ][:BACKFILL_PER_CYCLE]
        known = await ctx.lookup([job.id for job in ended]) if ended else {}
        for job in ended:
            if job.id in known:
                continue
            query = {"workflow_exec_id": job.id, "limit": BACKFILL_LIMIT}
            try:
                body = await self.api.get_json(EVENTS_PATH, query, route="events")
            except SourceError as exc:
                log.info("backfill_failed", source=self.name, job_id=job.id, error=str(exc))
                continue
            items = body.get("events") if isinstance(body, Mapping) else None
            events = []
            for rank, item in enumerate(items if isinstance(items, list) else []):
                try:
                    event = parse_event(item, rank)
                except MalformedItem:
                    continue
                if event.job_id == job.id and event.type in KEPT:
                    events.append(event)
            if events:
                taken.events[job.id] = events

    def _attach(self, ctx: PollContext, taken: Taken, jobs: dict[str, Job]) -> list[StreamEvent]:
        """Each execution's events onto it; returns the lifecycle events that wait because
        the API does not agree with them yet."""
        deferred: list[StreamEvent] = []
        # Events from before a silent baseline are history, not news.
        since = ctx.cursor.baseline_at
        for job_id, events in taken.events.items():
            job = jobs.get(job_id)
            if job is None:
                continue
            keep = [e for e in events if since is None or e.at >= since - WATERMARK_OVERLAP]
            waiting = [e for e in keep if self._lagging(e, job, ctx.now)]
            deferred += waiting
            keep = [e for e in keep if e not in waiting]
            if not keep:
                continue
            view = job.view
            attempt = attempt_of(keep, view.get("run_id"))
            if attempt is not None:
                view = {**view, "attempt": attempt}
            jobs[job_id] = job.model_copy(update={"stream": tuple(keep), "view": view})
        return deferred

    def _lagging(self, event: StreamEvent, job: Job, now: float) -> bool:
        """A run-ending event the API does not show yet (same run, still RUNNING): it waits
        a little for the API to agree."""
        if event.type not in LIFECYCLE or event.type.endswith("STARTED"):
            return False
        agrees = job.view.get("run_status") == "CONTINUED_AS_NEW" and event.type.endswith("NEW")
        if agrees or job.status != "RUNNING" or job.view.get("run_id") not in (None, event.run_id):
            self._deferred_since.pop(event.id, None)
            return False
        first = self._deferred_since.setdefault(event.id, now)
        if now - first > DEFER_AT_MOST:
            del self._deferred_since[event.id]
            return False
        return True

    def _positions(
        self,
        ctx: PollContext,
        taken: Taken,
        deferred: Sequence[StreamEvent],
        active: Mapping[str, Snapshot | Job],
    ) -> dict[str, int]:
        """The streams' positions this cycle's commit reaches (a waiting event holds its
        stream back); roots no longer followed are forgotten."""
        positions = {**ctx.cursor.streams, **taken.positions}
        for event in deferred:
            for root, state in self.hints.roots.items():
                if event.sequence in state.events:
                    positions[root] = min(positions.get(root, event.sequence), event.sequence - 1)
        followed = {_root(item) for item in active.values()}
        gone = [root for root in positions if root not in followed]
        for root in gone:
            del positions[root]
        self.hints.forget(gone)
        return positions


def _roots(active: Mapping[str, Snapshot | Job]) -> list[str]:
    """The root executions to stream (those of the followed executions), newest first."""
    newest: dict[str, int] = {}
    for item in active.values():
        root = _root(item)
        newest[root] = max(newest.get(root, 0), item.created_at)
    return sorted(newest, key=lambda r: -newest[r])


def _glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _root(item: Snapshot | Job) -> str:
    view = item.job if isinstance(item, Snapshot) else item.view
    root = view.get("root_execution_id")
    return (
        root
        if isinstance(root, str) and root
        else (item.job_id if isinstance(item, Snapshot) else item.id)
    )


def _as_last_seen(snapshot: Snapshot) -> Job:
    """An execution as last recorded, for events that need no GET (an activity's retry)."""
    view = {
        k: v
        for k, v in snapshot.job.items()
        if k not in ("id", "status", "created_at", "modified_at")
    }
    return Job(
        id=snapshot.job_id,
        status=snapshot.status,
        created_at=snapshot.created_at,
        modified_at=snapshot.modified_at,
        view=view,
    )
