"""One steady cycle under a request budget: the requests it makes, in the order a policy
ranked them, and what their answers showed. How it differs from the whole cycle of
:mod:`watcher.sources.listing`, and why:

- each request is chosen: the new-jobs listing, one page of one status's listing, or one
  job's detail; listings stop while the allowance left only pays the details owed;
- details wait until every listing is made: a job gone from one status's page may show up
  on the next status's, which says all there is to say for less, and jobs gone from a page
  are looked for on the first page of the status they most likely moved to;
- a job missing from a page has left its status only if its ``created_at`` lies within the
  page's range (listings come newest first; when they do not, nothing is concluded), or if
  the whole listing of its status was read this cycle;
- only the new-jobs listing moves the watermark: a page of a status may show a job newer
  than some the new-jobs listing has not seen yet. The new-jobs listing may reach back
  further than the watermark (one page, unfiltered): it then checks the newest followed
  jobs too, whatever their status.

Nothing here outlives the cycle unless :class:`~watcher.sources.budgeted.Rationing` keeps it
once the cycle succeeded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import replace

from watcher.abc import PollContext, PollResult
from watcher.model.jobs import Job
from watcher.model.snapshot import Snapshot
from watcher.sources.jobs import WATERMARK_OVERLAP
from watcher.sources.listing import ListingSource


class SteadyCycle:
    """One steady cycle's requests and findings."""

    def __init__(self, source: ListingSource, ctx: PollContext, allowance: int) -> None:
        self.source = source
        self.ctx = ctx
        self.allowance = allowance
        source.begin_cycle()
        self.previous: dict[str, Snapshot] = dict(ctx.active)
        self.by_status: dict[str, list[Snapshot]] = {}
        for snapshot in ctx.active.values():
            self.by_status.setdefault(snapshot.status, []).append(snapshot)
        self.out: dict[str, Job] = {}
        self.handled: set[str] = set()  # listed or fetched: nothing more to learn this cycle
        self.shown: set[str] = set()  # in a listing this cycle
        self.wanted: dict[str, None] = {}  # details owed, in order
        self.asked: list[str] = []  # details asked for (a 404 among them means DELETED)
        self.seen: dict[str, float] = {}
        self.malformed = 0
        self.fresh = 0  # jobs no snapshot knew
        self.newest: int | None = None
        self.listed_in: dict[str, set[str]] = {}  # status -> ids its pages showed
        self.pages_read: dict[str, set[int]] = {}
        self.totals: dict[str, int] = {}

    def left(self) -> int:
        return self.allowance - self.source.api.requests

    def owing(self) -> int:
        return sum(1 for k in self.wanted if k not in self.handled)

    def owe(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            if job_id not in self.handled and job_id not in self.source.missing:
                self.wanted[job_id] = None

    async def take(self, jobs: list[Job]) -> None:
        """Listed jobs: what changed goes out, or is owed a detail."""
        unknown = [j.id for j in jobs if j.id not in self.previous]
        if unknown:
            self.previous.update(await self.ctx.lookup(unknown))
        self.fresh += sum(1 for job_id in set(unknown) if job_id not in self.previous)
        for job in jobs:
            self.shown.add(job.id)
            if job.id in self.handled:
                continue
            self.handled.add(job.id)
            self.wanted.pop(job.id, None)
            self.seen[job.id] = self.ctx.now
            before = self.previous.get(job.id)
            job = self.source.settle(job, before, self.ctx.now)
            if self.source.needs_detail_budgeted(job, before):
                self.handled.discard(job.id)
                self.wanted[job.id] = None
            elif self.source.changed(job, before):
                self.out[job.id] = job

    async def new_jobs(self, reach: int | None = None) -> bool | None:
        """The new-jobs listing; with ``reach`` (older than the watermark), one page of the
        jobs created from ``reach`` on, which also shows the followed jobs created since.
        That page holds every new job unless it is full and its last job is newer than the
        watermark's bound (or the listing is not newest first): then the new-jobs listing
        is read whole as well, and nothing new is missed. Returns whether the reaching page
        came back full (``None``: no reach)."""
        cursor = self.ctx.cursor
        assert cursor.watermark is not None
        if reach is not None and reach < cursor.watermark:
            jobs, bad, _, count = await self.source.page(self.source.new_since(reach), 0)
            await self._take_new(jobs, bad)
            full = count >= self.source.page_size
            created = [j.created_at for j in jobs]
            newest_first = all(a >= b for a, b in itertools.pairwise(created))
            bound = cursor.watermark - WATERMARK_OVERLAP
            if not full or (newest_first and created and created[-1] < bound):
                return full
            reached: bool | None = full
        else:
            reached = None
        jobs, bad = await self.source.listing(self.source.new_since(cursor.watermark))
        await self._take_new(jobs, bad)
        return reached

    async def _take_new(self, jobs: list[Job], malformed: int) -> None:
        self.malformed += malformed
        if jobs:
            newest = max(j.created_at for j in jobs)
            self.newest = newest if self.newest is None else max(self.newest, newest)
        await self.take(jobs)

    async def page(self, status: str, page: int) -> None:
        params = self.source.status_filters([status])[0]
        jobs, bad, total, _ = await self.source.page(params, page)
        self.malformed += bad
        await self.take(jobs)
        self.listed_in.setdefault(status, set()).update(j.id for j in jobs)
        self.pages_read.setdefault(status, set()).add(page)
        if total is not None:
            self.totals[status] = total
        followed = self.by_status.get(status, [])
        if total == 0:
            self.owe(s.job_id for s in followed)
            return
        created = [j.created_at for j in jobs]
        if not created or any(a < b for a, b in itertools.pairwise(created)):
            return  # not newest first: a missing job says nothing
        upper = math.inf if page == 0 else created[0]
        last = total is not None and (page + 1) * self.source.page_size >= total
        lower = -math.inf if last else created[-1]
        shown = {j.id for j in jobs}
        self.owe(
            s.job_id for s in followed if lower < s.created_at < upper and s.job_id not in shown
        )

    def conclude_whole_listings(self) -> None:
        """A status whose every page was read this cycle: whoever it did not show left it."""
        for status, read in self.pages_read.items():
            total = self.totals.get(status)
            if total is None or not read >= set(range(math.ceil(total / self.source.page_size))):
                continue
            shown = self.listed_in.get(status, set())
            self.owe(s.job_id for s in self.by_status.get(status, []) if s.job_id not in shown)

    async def look_where_they_went(self) -> None:
        """Jobs gone from their status's page have most likely moved one step on, and are
        the newest jobs of their new status: its first page shows them, for one request
        instead of a detail each, whenever that saves two details or more."""
        looked: set[str] = set()
        while self.left() > 0:
            gone: dict[str, int] = {}
            for job_id in self.wanted:
                before = self.previous.get(job_id)
                if job_id not in self.shown and before is not None:
                    for status in self.source.moves_on_to.get(before.status, ()):
                        if status not in looked and 0 not in self.pages_read.get(status, ()):
                            gone[status] = gone.get(status, 0) + 1
                            break
            worth = [(n, status) for status, n in gone.items() if n >= 2]
            if not worth:
                return
            _, status = max(worth)
            looked.add(status)
            await self.page(status, 0)

    async def follow_up(self) -> None:
        """The details owed, as many as the allowance pays."""
        batch = [k for k in self.wanted if k not in self.handled][: max(0, self.left())]
        if not batch:
            return
        got: dict[str, Job] = {}
        self.asked.extend(batch)
        await self.source.fetch(dict.fromkeys(batch), got)
        for job_id in batch:
            self.wanted.pop(job_id, None)
            self.handled.add(job_id)
            if job_id in got:
                self.seen[job_id] = self.ctx.now
        self.out.update(got)

    def result(self) -> PollResult:
        now = self.ctx.now
        out = {k: self.source.settle(j, self.previous.get(k), now) for k, j in self.out.items()}
        out.update(self.source.gone(self.ctx, self.asked, out))
        cursor = self.ctx.cursor
        watermark = cursor.watermark
        if self.newest is not None:
            watermark = self.newest if watermark is None else max(watermark, self.newest)
        new_cursor = replace(cursor, watermark=watermark, baseline_done=True, retired=False)
        jobs = sorted(out.values(), key=lambda j: (j.created_at, j.id))
        return PollResult(
            jobs=jobs,
            cursor=new_cursor,
            requests=self.source.api.requests,
            malformed=self.malformed,
        )
