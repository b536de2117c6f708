"""The steady cycle of a source with ``max_requests_per_minute``: this cycle's share of the
budget goes to the requests a :class:`~watcher.sources.policy.Policy` ranks first.

How it differs from the whole cycle of :mod:`watcher.sources.listing`, and why:

- each request is chosen: the new-jobs listing, one page of one status's listing, or one
  job's detail; the policy ranks them, the cycle makes them until its allowance is spent;
- what a listing shows to have changed gets its detail (when the source needs one) right
  after that listing; details the allowance cannot pay wait, first in line, for the next
  cycle, and so do the jobs due a check whatever the policy says (see :meth:`_owed`);
- a job missing from a page has left its status only if its ``created_at`` lies within the
  page's range (listings come newest first; when they do not, nothing is concluded), or if
  the whole listing of its status was read this cycle;
- only the new-jobs listing moves the watermark: a page of a status may show a job newer
  than some the new-jobs listing has not seen yet;
- when each job was last checked is kept in memory: after a restart every job counts as
  unchecked, and the first cycles check them all, by pages.

Full cycles (the baseline, the periodic resync) stay whole cycles, paced by the budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from watcher.abc import PollContext, PollResult
from watcher.diff import Snapshot
from watcher.models import Job
from watcher.sources.budget import WINDOW, RequestBudget
from watcher.sources.listing import (
    UNKNOWN_STATUS_EVERY,
    WATERMARK_OVERLAP,
    ListingSource,
    deleted,
    iso,
    settle,
)
from watcher.sources.policy import (
    MIN_SPREAD,
    NEW,
    DwellTimes,
    Followed,
    Policy,
    Probe,
    Situation,
    is_stale,
    likelihood,
    pages,
)

STALE_INTERVALS = 10  # every followed job is checked at least this many intervals apart…
COVERAGE = 0.1  # …or as often as this share of the budget can list them all…
HARD_STALE = 2.0  # …and past twice that, gets its own detail
NEW_RATE_WEIGHT = 0.1


class Rationing:
    """A source's budget, policy and memory of what it checked when."""

    def __init__(
        self,
        budget: RequestBudget,
        policy: Policy,
        dwell: DwellTimes,
        *,
        interval: float,
        page_size: int,
    ) -> None:
        self.budget = budget
        self.policy = policy
        self.dwell = dwell
        self.interval = interval
        self.page_size = page_size
        self.checked: dict[str, float] = {}  # job id -> when an answer last showed it
        self.probed: dict[Probe, float] = {}  # listing -> when it was last made
        self.pending: dict[str, None] = {}  # details owed from earlier cycles
        self.missed: set[str] = set()  # due, but not on the page meant to show them
        self.new_checked_at: float | None = None
        self.new_rate = 1.0 / (STALE_INTERVALS * interval)  # new jobs per second, a prior
        self.started_at: float | None = None
        self.last_cycle_at: float | None = None

    def max_staleness(self, listing_pages: int) -> float:
        """At most this long between two checks of a job: ten intervals, or longer when
        listing every followed job that often would take more than a tenth of the budget
        (the rest goes where changes are likely)."""
        need = WINDOW * (listing_pages + 1) / (COVERAGE * self.budget.per_minute)
        return max(STALE_INTERVALS * self.interval, need)

    def after_full(self, now: float, seen: Iterable[str]) -> None:
        """A whole cycle checked everything it listed; it also owes nothing any more."""
        self.started_at = self.started_at if self.started_at is not None else now
        self.checked.update(dict.fromkeys(seen, now))
        self.pending.clear()
        self.new_checked_at = now

    async def steady(self, source: ListingSource, ctx: PollContext) -> PollResult:
        now = ctx.now
        if self.started_at is None:
            self.started_at = now
        active = {k: v for k, v in ctx.active.items() if k not in source._missing}
        for job_id in [k for k in self.checked if k not in active]:
            del self.checked[job_id]
        cycle = _Cycle(source, ctx, self.budget.allowance())
        # Details owed to jobs no snapshot followed (new, seen in a listing last cycle): the
        # pipeline diffs what the store knows of them, so it is looked up first.
        strangers = [k for k in self.pending if k not in active]
        if strangers:
            cycle.previous.update(await ctx.lookup(strangers))
        followed = [self._followed(source, s) for s in active.values()]
        layout = pages(followed, self.page_size, lambda j: 1.0 - likelihood(j, now, self.dwell))
        stale_after = self.max_staleness(sum(len(chunks) for chunks in layout.values()))
        owed = self._owed(source, active, cycle.previous, now, stale_after, cycle.allowance)
        cycle.owe(owed)
        await cycle.follow_up()
        situation = Situation(
            now=now,
            jobs=[j for j in followed if j.job_id not in owed],
            layout={
                status: [[j for j in chunk if j.job_id not in owed] for chunk in chunks]
                for status, chunks in layout.items()
            },
            page_size=self.page_size,
            allowance=cycle.left(),
            max_staleness=stale_after,
            new_checked_at=self.new_checked_at,
            new_rate=self.new_rate,
            ending=source.ending,
            initial=source.initial_status,
            probed=self.probed,
        )
        probed: dict[Probe, float] = {}
        missed: set[str] = set()
        # Details wait until every listing is made: a job gone from one status's page may
        # show up on the next status's, which says all there is to say for less. Listings
        # stop while the allowance left only pays what is owed.
        for probe in self.policy.rank(situation) if cycle.left() > 0 else []:
            if cycle.left() <= cycle.owing():
                break
            if probe.kind == "detail":
                cycle.owe([probe.job_id])
            elif probe.kind == "new":
                await cycle.new_jobs()
                probed[probe] = now
            else:
                chunks = layout.get(probe.status, [])
                due = chunks[probe.page] if probe.page < len(chunks) else []
                stale = [j.job_id for j in due if is_stale(j, situation)]
                await cycle.page(probe.status, probe.page)
                # A page shifted by jobs that came and went may miss a job that is due: it
                # is on a neighbouring page, which its own due jobs will bring soon enough,
                # rather than this page made again next cycle for it.
                missed.update(i for i in stale if i not in cycle.shown)
                probed[probe] = now
        cycle.conclude_whole_listings()
        await cycle.look_where_they_went()
        await cycle.follow_up()
        result = cycle.result()
        # Remembered only now: a cycle that raised is as if it never happened.
        self.checked.update(cycle.seen)
        self.missed = {k for k in self.missed | missed if k in active and k not in cycle.seen}
        self.pending = dict(cycle.wanted)
        self.probed = {
            p: t for p, t in {**self.probed, **probed}.items() if p == NEW or p.status in layout
        }
        if NEW in probed:
            self.new_checked_at = now
        # New jobs per second, from whichever listing found them.
        if self.last_cycle_at is not None and now > self.last_cycle_at:
            sample = cycle.fresh / (now - self.last_cycle_at)
            self.new_rate += NEW_RATE_WEIGHT * (sample - self.new_rate)
        self.last_cycle_at = now
        for job in result.jobs:
            before = cycle.previous.get(job.id)
            if before is not None and before.status != job.status:
                self.dwell.observe(before.status, job.modified_at - before.status_since)
        return result

    def _followed(self, source: ListingSource, snapshot: Snapshot) -> Followed:
        checked = self.checked.get(snapshot.job_id)
        end = source.expected_end(snapshot, checked)
        return Followed(
            job_id=snapshot.job_id,
            status=snapshot.status,
            created_at=snapshot.created_at,
            since=float(snapshot.status_since),
            checked_at=checked,
            expected_end=end[0] if end is not None else None,
            spread=end[1] if end is not None else MIN_SPREAD,
            listable=snapshot.status in source.statuses,
            page_missed=snapshot.job_id in self.missed,
        )

    def _owed(
        self,
        source: ListingSource,
        active: Mapping[str, Snapshot],
        known: Mapping[str, Snapshot],
        now: float,
        stale_after: float,
        allowance: int,
    ) -> list[str]:
        """Details due whatever the policy says, most owed first: changes seen but not yet
        fetched; jobs in an undocumented status (they cannot be listed) every
        UNKNOWN_STATUS_EVERY intervals; a few of the jobs no listing has shown for twice
        ``stale_after`` (their page kept shifting away from them)."""
        # A job owed a detail is followed, or new: no snapshot of it at all.
        owed = [k for k in self.pending if k in active or k not in known]
        for job_id, snapshot in active.items():
            if snapshot.status in source.statuses or job_id in self.pending:
                continue
            last = source._unknown_checked.get(job_id, -math.inf)
            if now - last >= UNKNOWN_STATUS_EVERY * self.interval:
                source._unknown_checked[job_id] = now
                owed.append(job_id)
        start = self.started_at if self.started_at is not None else now
        stale = sorted(
            (self.checked.get(k, start), k)
            for k, s in active.items()
            if s.status in source.statuses and k not in self.pending
        )
        hard = [k for t, k in stale if now - t >= HARD_STALE * stale_after]
        return owed + hard[: max(1, allowance // 4)]


class _Cycle:
    """One steady cycle's findings; nothing here outlives it unless :class:`Rationing`
    keeps it after the cycle succeeded."""

    def __init__(self, source: ListingSource, ctx: PollContext, allowance: int) -> None:
        self.source = source
        self.ctx = ctx
        self.allowance = allowance
        source.api.requests = 0
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
            if job_id not in self.handled and job_id not in self.source._missing:
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
            job = settle(job, before, self.ctx.now)
            if self.source.needs_detail_budgeted(job, before):
                self.handled.discard(job.id)
                self.wanted[job.id] = None
            elif self.source._changed(job, before):
                self.out[job.id] = job

    async def new_jobs(self) -> None:
        cursor = self.ctx.cursor
        assert cursor.watermark is not None
        since = {"created_after": iso(max(0, cursor.watermark - WATERMARK_OVERLAP))}
        jobs, bad = await self.source._list(since)
        self.malformed += bad
        if jobs:
            newest = max(j.created_at for j in jobs)
            self.newest = newest if self.newest is None else max(self.newest, newest)
        await self.take(jobs)

    async def page(self, status: str, page: int) -> None:
        params = self.source.status_filters([status])[0]
        jobs, bad, total, _ = await self.source._page(params, page)
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
        await self.source._fetch(dict.fromkeys(batch), got)
        for job_id in batch:
            self.wanted.pop(job_id, None)
            self.handled.add(job_id)
            if job_id in got:
                self.seen[job_id] = self.ctx.now
        self.out.update(got)

    def result(self) -> PollResult:
        now = self.ctx.now
        out = {k: settle(j, self.previous.get(k), now) for k, j in self.out.items()}
        for job_id in self.asked:
            gone = self.ctx.active.get(job_id)
            if job_id in self.source._missing and job_id not in out and gone is not None:
                out[job_id] = deleted(gone, now)
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
