"""A source with ``max_requests_per_minute``: each steady cycle's share of the budget goes to
the requests a :class:`~watcher.sources.policy.Policy` ranks first.

:class:`Rationing` is the source's memory between cycles, and the plan of each:

- when each followed job was last shown by an answer (in memory: after a restart every job
  counts as unchecked, and the first cycles check them all, by pages);
- the details owed from earlier cycles, which come first, with the few jobs due a check
  whatever the policy says (see :meth:`Rationing._owed`);
- how often new jobs appear and how long jobs stay in each status, as observed.

One cycle's requests and findings are :class:`~watcher.sources.steady.SteadyCycle`'s. Full
cycles (the baseline, the periodic resync) stay whole cycles, paced by the budget.

:class:`BudgetedSource` composes the two around a listing source, which knows nothing of
them: :func:`budgeted` builds one from a family and its config.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import anyio
import httpx2 as httpx

from watcher.abc import CancelAnswer, PollContext, PollResult
from watcher.config import SourceBaseConfig
from watcher.model.snapshot import JobKind, Snapshot
from watcher.sources.answers import ByteBudget
from watcher.sources.budget import WINDOW, BudgetedApiClient, RequestBudget
from watcher.sources.jobs import WATERMARK_OVERLAP
from watcher.sources.listing import ListingSource
from watcher.sources.policy import (
    MIN_SPREAD,
    NEW,
    Adaptive,
    DwellTimes,
    Followed,
    Policy,
    Probe,
    Situation,
    is_stale,
    likelihood,
    pages,
)
from watcher.sources.steady import SteadyCycle

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
        # How many followed jobs the new-jobs listing may reach back over: half a page, so
        # that the jobs that ended meanwhile and the new ones fit beside them; halved each
        # time that page comes back full, grown back a step at a time when it does not.
        self.reach_room = page_size // 2
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
        active = {k: v for k, v in ctx.active.items() if k not in source.missing}
        for job_id in [k for k in self.checked if k not in active]:
            del self.checked[job_id]
        cycle = SteadyCycle(source, ctx, self.budget.allowance())
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
            reach_room=self.reach_room,
        )
        probed: dict[Probe, float] = {}
        missed: set[str] = set()
        reach_full: bool | None = None
        # Details wait until every listing is made: a job gone from one status's page may
        # show up on the next status's, which says all there is to say for less. Listings
        # stop while the allowance left only pays what is owed.
        for probe in self.policy.rank(situation) if cycle.left() > 0 else []:
            if cycle.left() <= cycle.owing():
                break
            if probe.kind == "detail":
                cycle.owe([probe.job_id])
            elif probe.kind == "new":
                full = await cycle.new_jobs(probe.reach)
                if full is not None:
                    reach_full = full
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
        if reach_full is not None:
            most = self.page_size // 2
            step = max(1, most // 10)
            self.reach_room = (
                self.reach_room // 2 if reach_full else min(most, self.reach_room + step)
            )
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
            if source.unknown_due(job_id, now):
                owed.append(job_id)
        start = self.started_at if self.started_at is not None else now
        stale = sorted(
            (self.checked.get(k, start), k)
            for k, s in active.items()
            if s.status in source.statuses and k not in self.pending
        )
        hard = [k for t, k in stale if now - t >= HARD_STALE * stale_after]
        return owed + hard[: max(1, allowance // 4)]


class BudgetedSource:
    """A listing source under ``max_requests_per_minute``: its full cycles stay whole (paced
    by the budget its API client waits on), its steady cycles are :class:`Rationing`'s."""

    def __init__(self, source: ListingSource, rationing: Rationing) -> None:
        self.source = source
        self.rationing = rationing
        self.name = source.name
        self.interval = source.interval
        self.kind: JobKind = source.kind

    @property
    def api(self) -> BudgetedApiClient:
        api = self.source.api
        assert isinstance(api, BudgetedApiClient)
        return api

    @property
    def notice(self) -> str | None:
        return self.source.notice

    async def aclose(self) -> None:
        await self.source.aclose()

    async def cancel(self, job_id: str) -> CancelAnswer:
        return await self.source.cancel(job_id)

    async def poll(self, ctx: PollContext) -> PollResult:
        source, cursor = self.source, ctx.cursor
        if not source.full_due(cursor, ctx.now):
            return await self.rationing.steady(source, ctx)
        older: int | None = None
        if cursor.baseline_done:
            # A resync lists the jobs created since shortly before the last one (the whole
            # history would cost more per hour than a small budget has); followed jobs older
            # than that are the steady cycles' to check.
            assert cursor.last_full_sync is not None
            older = int(cursor.last_full_sync - source.resync_interval - WATERMARK_OVERLAP)
        result, shown = await source.whole(ctx, full=True, older=older)
        self.rationing.after_full(ctx.now, shown)
        return result


def budgeted(
    family: type[ListingSource],
    config: SourceBaseConfig,
    client: httpx.AsyncClient,
    *,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    policy: Policy | None = None,
    observe: Callable[[str, int | None], None] | None = None,
    in_flight: ByteBudget | None = None,
) -> BudgetedSource:
    """A source of ``family`` under its config's ``max_requests_per_minute``; ``clock`` is
    the budget's, ``policy`` ranks the requests (default: the adaptive one), ``observe`` is
    told of every request sent, ``in_flight`` bounds the bytes of answers buffered."""
    per_minute = config.max_requests_per_minute
    assert per_minute is not None
    budget = RequestBudget(per_minute, interval=config.interval, clock=clock, sleep=sleep)
    source = family(
        config, client, sleep=sleep, budget=budget, observe=observe, in_flight=in_flight
    )
    dwell = DwellTimes(source.typical_dwell)
    rationing = Rationing(
        budget,
        policy if policy is not None else Adaptive(dwell),
        dwell,
        interval=config.interval,
        page_size=config.page_size,
    )
    return BudgetedSource(source, rationing)
