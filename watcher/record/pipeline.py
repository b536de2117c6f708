"""One poll cycle of one source: poll -> diff -> record (one guarded transaction, or one per
part when the source flushes part of its cycle early; routing, counting and waking the
dispatcher are the :class:`~watcher.record.recorder.Recorder`'s).

A steady cycle where nothing changed costs the store one transaction, the cursor's:

- what a good cycle committed (the cursor and the followed jobs' snapshots, as the store
  would give them back) is kept for the source's next cycle instead of being read again.
  Only this replica's cycles write a source it owns, and every commit is guarded by the
  cursor's version: if anything else committed the source meanwhile, the commit is refused
  (the cycle is stale) and the next cycle reads the store again. Anything but a good cycle,
  and the loss of the source (:meth:`Pipeline.forget`), drops what was kept;
- a job whose new snapshot equals the one it had is not written again (its ``updated_at``
  stays the time of its last change)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from watcher.abc import PollContext, PollResult, Source
from watcher.config import RuleConfig, SourceConfig
from watcher.detect.diff import diff
from watcher.detect.rules import on_change
from watcher.exceptions import (
    RecordRefused,
    SourceAuthError,
    SourceError,
    SourceRetired,
    StaleCycle,
)
from watcher.model.jobs import Job
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import (
    Transition,
    source_degraded,
    source_recovered,
    source_retired,
    source_unreachable,
)
from watcher.record.recorder import Recorder
from watcher.render.text import clean


class CycleMetrics(Protocol):
    """What a cycle counts (:class:`watcher.app.metrics.Metrics` provides it)."""

    def poll_done(self, source: str, outcome: str, seconds: float) -> None: ...


log = structlog.get_logger(__name__)


@dataclass
class CycleOutcome:
    """What one cycle did (for ``once``, tests and benchmarks)."""

    # ok | skipped | retired | auth_error | error | stale (another replica committed the
    # source meanwhile: this cycle was discarded) | standby (another replica's source)
    outcome: str
    jobs: int = 0
    transitions: int = 0
    requests: int = 0


@dataclass
class _Cycle:
    """One cycle of one source, possibly recorded in several commits (see
    :attr:`~watcher.abc.PollContext.flush`)."""

    name: str
    source: Source
    cursor: Cursor  # as the cycle found it
    active: dict[str, Snapshot]
    now: float
    baseline: bool
    commits: int = 0
    jobs: int = 0
    transitions: int = 0
    deliveries: int = 0
    refused: int = 0  # jobs the store refused to keep (skipped)
    current: Cursor = field(default_factory=Cursor)  # as last committed (or found)

    def __post_init__(self) -> None:
        self.current = self.cursor

    def summary(self, result: PollResult, seconds: float) -> dict[str, Any]:
        """What ``poll_done`` logs of the cycle."""
        return {
            "jobs": self.jobs,
            "transitions": self.transitions,
            "deliveries": self.deliveries,
            "commits": self.commits,
            "requests": result.requests,
            "malformed": result.malformed + self.refused,
            "baseline": self.baseline,
            "seconds": round(seconds, 3),
        }


class Pipeline:
    def __init__(
        self,
        recorder: Recorder,
        sources: Mapping[str, tuple[Source, SourceConfig]],
        *,
        rules: Sequence[RuleConfig] = (),
        clock: Callable[[], float] = time.time,
        metrics: CycleMetrics | None = None,
    ) -> None:
        self.rules = list(rules)
        self.recorder = recorder
        self.store = recorder.store  # for reads: every write goes through the recorder
        self.sources = dict(sources)
        self.clock = clock
        self.metrics = metrics
        self.last_ok: dict[str, float] = {}  # source -> wall time of its last good poll
        # ... and on the monotonic clock, for the ages /readyz measures (a step of the wall
        # clock must not make a stopped source look fresh, nor a fresh one stale).
        self.last_ok_monotonic: dict[str, float] = {}
        self._last_try: dict[str, float] = {}
        # source -> its cursor and followed jobs as its last good cycle committed them
        self._kept: dict[str, tuple[Cursor, dict[str, Snapshot]]] = {}

    def forget(self, name: str | None = None) -> None:
        """Read source ``name`` (every source: ``None``) from the store at its next cycle:
        it is no longer this replica's, or something else wrote it."""
        if name is None:
            self._kept.clear()
        else:
            self._kept.pop(name, None)

    def _ok(self, name: str) -> None:
        self.last_ok[name] = self.clock()
        self.last_ok_monotonic[name] = time.monotonic()

    async def poll(self, name: str) -> CycleOutcome:
        """One cycle of source ``name``; never raises for a source's own failures."""
        started = time.monotonic()
        with structlog.contextvars.bound_contextvars(source=name):
            try:
                outcome = await self._poll(name)
            except StaleCycle as exc:
                # The source changed hands during the cycle: the new owner's state stands.
                log.warning("cycle_discarded", reason=str(exc))
                outcome = CycleOutcome("stale")
            except Exception:
                # The store or a bug, not the source: log it, keep the schedule going.
                log.exception("poll_crashed")
                outcome = CycleOutcome("error")
        if self.metrics is not None:
            self.metrics.poll_done(name, outcome.outcome, time.monotonic() - started)
        return outcome

    async def _poll(self, name: str) -> CycleOutcome:
        source, config = self.sources[name]
        now = self.clock()
        # Taken out: only a good cycle puts it back (a failure, a stale cycle, a crash: the
        # next cycle reads the store).
        kept = self._kept.pop(name, None)
        cursor = kept[0] if kept is not None else await self.store.load_cursor(name)
        if cursor.retired and now - self._last_try.get(name, 0.0) < config.retired_interval:
            return CycleOutcome("skipped")
        self._last_try[name] = now
        cycle = _Cycle(
            name=name,
            source=source,
            cursor=cursor,
            active=kept[1] if kept is not None else await self.store.active_snapshots(name),
            now=now,
            baseline=not cursor.baseline_done and config.on_start == "baseline",
        )

        async def lookup(job_ids: Sequence[str]) -> Mapping[str, Snapshot]:
            return await self.store.get_snapshots(name, job_ids)

        async def flush(jobs: Sequence[Job], progress: Cursor) -> None:
            await self._record(cycle, jobs, progress, final=False)

        started = time.monotonic()
        try:
            result = await source.poll(PollContext(cursor, cycle.active, now, lookup, flush))
        except SourceRetired as exc:
            return await self._retired(name, cycle.current, exc, now)
        except SourceAuthError as exc:
            log.error("source_auth_failed", status_code=exc.status_code, error=str(exc))
            await self._failed(name, cycle.current, str(exc), now)
            return CycleOutcome("auth_error")
        except SourceError as exc:
            log.warning("poll_failed", error=str(exc))
            await self._failed(name, cycle.current, str(exc), now)
            return CycleOutcome("error")
        cursor, notices = _degraded(name, result, now)
        await self._record(cycle, result.jobs, cursor, final=True, notices=notices)
        self._kept[name] = (cycle.current, cycle.active)
        self._ok(name)
        # A cycle that found nothing is routine: at debug, so that the lines that matter
        # (transitions, a baseline, malformed items) are not lost among them.
        found = cycle.transitions or cycle.baseline or result.malformed
        (log.info if found else log.debug)(
            "poll_done", **cycle.summary(result, time.monotonic() - started)
        )
        return CycleOutcome("ok", cycle.jobs, cycle.transitions, result.requests)

    async def _record(
        self,
        cycle: _Cycle,
        jobs: Sequence[Job],
        cursor: Cursor,
        *,
        final: bool,
        notices: Sequence[Transition] = (),
    ) -> None:
        """Record ``jobs`` with ``cursor``; when the store refuses what they carry, record
        them one by one, skip the ones it refuses (logged, counted as malformed) and then
        the cursor: one bad job never blinds its source."""
        try:
            await self._commit(cycle, jobs, cursor, final=final, notices=notices)
            return
        except RecordRefused as exc:
            if not jobs:
                raise
            log.warning("commit_refused", error=str(exc), jobs=len(jobs), hint="one job at a time")
        for job in jobs:
            try:
                await self._commit(cycle, [job], cycle.current, final=False)
            except RecordRefused as exc:
                cycle.refused += 1
                log.error("job_unrecordable", job_id=clean(job.id, 120), error=str(exc))
        await self._commit(cycle, [], cursor, final=final, notices=notices)

    async def _commit(
        self,
        cycle: _Cycle,
        jobs: Sequence[Job],
        cursor: Cursor,
        *,
        final: bool,
        notices: Sequence[Transition] = (),
    ) -> None:
        """Diff ``jobs`` and record their transitions with ``cursor`` (one guarded
        transaction: refused if another replica committed the source since)."""
        name, now = cycle.name, cycle.now
        kind = cycle.source.kind
        snapshots: list[Snapshot] = []
        found: list[Transition] = []
        # What the store knows of the jobs not followed (read again rather than kept from
        # the source's lookups: a full listing looks up the whole history).
        unknown = [job.id for job in jobs if job.id not in cycle.active]
        known = await self.store.get_snapshots(name, unknown) if unknown else {}
        for job in jobs:
            previous = cycle.active.get(job.id) or known.get(job.id)
            snapshot, transitions = diff(previous, job, source=name, kind=kind)
            marks, alerts = on_change(
                self.rules, previous, snapshot, transitions, prefix=kind.prefix
            )
            if marks != snapshot.marks:
                snapshot = replace(snapshot, marks=marks)
            transitions += alerts
            if snapshot != previous:  # a job fetched again that did not change: nothing
                snapshots.append(snapshot)
            if not cycle.baseline:
                found += transitions
        before = cycle.cursor
        # The source answered: whatever part of the cycle this is, it is no longer failing
        # (a part may carry the cursor as the cycle found it, failure marks included).
        cursor = replace(cursor, failing_since=None, unreachable=False, retired=False)
        if cycle.commits == 0:  # the first commit of a good cycle tells of the recovery
            if before.retired:
                log.warning("source_answers_again", reason="the API no longer answers 410")
            if before.unreachable and before.failing_since is not None:
                log.warning("source_recovered", down_seconds=round(now - before.failing_since))
                found.append(source_recovered(name, before.failing_since, now))
        found += notices
        added = await self.recorder.cycle(
            name, cursor, snapshots, found, now=now, polled=final, expect=cycle.current.version
        )
        cycle.current = replace(cursor, version=cycle.current.version + 1)
        cycle.commits += 1
        cycle.jobs += len(jobs)
        cycle.transitions += len(found)
        cycle.deliveries += added
        for snapshot in snapshots:  # later parts of the cycle (and cycles) diff against these
            if snapshot.terminal:
                cycle.active.pop(snapshot.job_id, None)
            else:
                cycle.active[snapshot.job_id] = snapshot.as_stored()

    async def _failed(self, name: str, cursor: Cursor, reason: str, now: float) -> None:
        """Remember since when the source fails; past ``unreachable_after``, say it once."""
        _, config = self.sources[name]
        since = cursor.failing_since if cursor.failing_since is not None else now
        updated = replace(cursor, failing_since=since)
        found: list[Transition] = []
        if not cursor.unreachable and now - since >= config.unreachable_after:
            log.error("source_unreachable", since_seconds=round(now - since), error=reason)
            found.append(source_unreachable(name, since, reason))
            updated = replace(updated, unreachable=True)
        if updated == cursor:
            return
        await self.recorder.cycle(
            name, updated, [], found, now=now, polled=False, expect=cursor.version
        )

    async def _retired(
        self, name: str, cursor: Cursor, exc: SourceRetired, now: float
    ) -> CycleOutcome:
        # A retired source counts as healthy: it is an expected, already reported state.
        self._ok(name)
        if cursor.retired:
            log.debug("source_still_retired", route=exc.route)
            return CycleOutcome("retired")
        log.error("source_retired", route=exc.route, error=str(exc))
        retired = replace(cursor, retired=True)
        transitions = [source_retired(name, exc.route)]
        await self.recorder.cycle(name, retired, [], transitions, now=now, expect=cursor.version)
        return CycleOutcome("retired", transitions=1)


def _degraded(name: str, result: PollResult, now: float) -> tuple[Cursor, list[Transition]]:
    """The cycle's cursor with the source's degraded spell, and ``watcher.source.degraded``
    once when a spell begins (the log says when it ends)."""
    cursor = result.cursor
    if result.degraded is None:
        if cursor.degraded_since is not None:
            log.warning("source_no_longer_degraded")
            return replace(cursor, degraded_since=None), []
        return cursor, []
    if cursor.degraded_since is not None:
        return cursor, []
    log.error("source_degraded", reason=result.degraded)
    return replace(cursor, degraded_since=now), [source_degraded(name, now, result.degraded)]
