"""The schedule: APScheduler 3 rings a bell per job (one interval job per source, the time
rules, the chores), and each bell is answered in a task anyio owns, so that anyio's
cancellation (and its shields) governs every action. Beside it: the polls as this replica
runs them (stopped the moment their source is lost) and the systemd watchdog.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from watcher.abc import Ownership
from watcher.app.chores import Chores
from watcher.app.clocksteps import CHECK_EVERY, ClockSteps
from watcher.app.health import SCHEDULER_TICK, Health, Progress
from watcher.app.sdnotify import Notifier
from watcher.config import Config
from watcher.config.cron import next_fire, standard
from watcher.record.alerting import Alerting
from watcher.record.pipeline import CycleOutcome, Pipeline

log = structlog.get_logger(__name__)

STATS_EVERY = 5.0  # at most this many seconds between reads of the store for gauges/STATUS
STORE_EVERY = 5.0  # seconds between looks at whether the store refuses writes
RELEASE_EVERY = 2.0  # seconds between looks for the claims of replicas that died

Action = Callable[[], Awaitable[object]]


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A crontab line as users write it (``0 9 * * 1-5``, ``@daily``), in a time zone,
    DST included (:mod:`watcher.config.cron`). APScheduler 3's ``CronTrigger`` would read
    ``1-5`` from Monday = 0, i.e. Tuesday to Saturday."""

    def __init__(self, expression: str, zone: str) -> None:
        standard(expression)  # ValueError now rather than at the first fire
        self.expression = expression
        self.zone = zone

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire time after the previous one; without one, from ``now`` on
        (``now`` itself included)."""
        after = previous_fire_time or now - timedelta(microseconds=1)
        return next_fire(self.expression, self.zone, after)

    def __str__(self) -> str:
        return f"crontab[{self.expression} {self.zone}]"


class Polls:
    """This replica's polls: only of the sources it owns, each stoppable the moment its
    source is lost."""

    def __init__(self, pipeline: Pipeline, ownership: Ownership, progress: Progress) -> None:
        self.pipeline = pipeline
        self.ownership = ownership
        self.progress = progress
        self.running: dict[str, anyio.CancelScope] = {}  # source -> its running poll

    async def poll(self, name: str) -> CycleOutcome:
        with self.progress.polling(name):
            if name not in self.ownership.owned:
                return CycleOutcome("standby")  # another replica polls it
            with anyio.CancelScope() as scope:
                self.running[name] = scope
                try:
                    return await self.pipeline.poll(name)
                finally:
                    del self.running[name]
            log.warning("poll_stopped", source=name, reason="the source is no longer ours")
            return CycleOutcome("stale")

    def lost(self, name: str) -> None:
        """A source is no longer ours: stop its poll in progress at once (a commit already
        under way finishes, shielded, and the store refuses it if the new owner has
        committed since); its next cycle here reads what the new owner committed."""
        self.pipeline.forget(name)
        scope = self.running.get(name)
        if scope is not None:
            scope.cancel()


class Schedule:
    """APScheduler only rings the bells; the actions run in ``tg``'s tasks, one at a time
    each."""

    def __init__(self, tg: TaskGroup, *, clock: ClockSteps | None = None) -> None:
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.clock = clock or ClockSteps()
        self._tg = tg
        self._bells: dict[str, MemoryObjectSendStream[None]] = {}  # job -> its bell
        self._following = anyio.CancelScope()  # the watch over the wall clock

    def on(
        self,
        job_id: str,
        action: Action,
        trigger: BaseTrigger,
        *,
        start: datetime | None = None,
        grace: float = 1.0,
    ) -> None:
        send, receive = anyio.create_memory_object_stream[None](1)
        self._bells[job_id] = send
        self._tg.start_soon(_answer, receive, action)
        extra = {"next_run_time": start} if start is not None else {}
        self.scheduler.add_job(
            _ring,
            trigger,
            args=[send],
            id=job_id,
            max_instances=1,
            coalesce=True,  # missed runs collapse into one
            misfire_grace_time=max(1, int(grace)),
            **extra,
        )

    def poll_now(self, source: str) -> None:
        """A source just became ours: poll it now rather than at its next tick."""
        bell = self._bells.get(f"poll:{source}")
        if bell is not None:
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                bell.send_nowait(None)

    def start(self) -> None:
        self.scheduler.start()
        self._tg.start_soon(self._follow_clock)

    def realign(self) -> None:
        """Each job's next run from its trigger as of the wall time now: after a step of
        the wall clock, within one interval of now (not an hour away, not all at once)."""
        now = datetime.now(UTC)
        for job in self.scheduler.get_jobs():
            upcoming = job.trigger.get_next_fire_time(None, now)
            if upcoming is not None:
                job.modify(next_run_time=upcoming)

    async def _follow_clock(self) -> None:
        with self._following:
            while True:
                await anyio.sleep(CHECK_EVERY)
                if self.clock.check() is not None:
                    self.realign()

    def stop(self) -> None:
        self._following.cancel()
        self.scheduler.shutdown(wait=False)
        for bell in self._bells.values():
            bell.close()
        self._bells.clear()


def plan(
    schedule: Schedule,
    config: Config,
    *,
    polls: Polls,
    alerting: Alerting,
    chores: Chores,
    progress: Progress,
) -> None:
    """Every job of the daemon on ``schedule``: a poll per source (spread by 100 ms), the
    time rules, heartbeat, digest, housekeeping, the stats and the scheduler's own tick."""
    first = datetime.now().astimezone()
    for index, source in enumerate(config.sources):
        schedule.on(
            f"poll:{source.name}",
            functools.partial(polls.poll, source.name),
            IntervalTrigger(seconds=source.interval, jitter=source.effective_jitter),
            start=first + timedelta(milliseconds=100 * index),
            grace=source.interval,
        )
    if config.rules:
        schedule.on(
            "rules",
            alerting.check,
            IntervalTrigger(seconds=config.rules_interval),
            start=first + timedelta(seconds=1),
            grace=config.rules_interval,
        )
    if config.heartbeat is not None:
        schedule.on(
            "heartbeat",
            chores.send_heartbeat,
            IntervalTrigger(seconds=config.heartbeat.interval),
            start=first + timedelta(seconds=2),
            grace=config.heartbeat.interval,  # a late heartbeat beats none
        )
    if config.digest is not None:
        schedule.on(
            "digest",
            chores.send_digest,
            CrontabTrigger(config.digest.cron, config.digest.timezone),
            grace=3600,  # a digest a little late beats no digest
        )
    schedule.on(
        "store", chores.watch_store, IntervalTrigger(seconds=STORE_EVERY), start=first, grace=1
    )
    # A dead replica's delivery claims go back within seconds, not after the lease.
    schedule.on(
        "claims",
        chores.release_dead_claims,
        IntervalTrigger(seconds=RELEASE_EVERY),
        start=first + timedelta(seconds=RELEASE_EVERY),
        grace=RELEASE_EVERY,
    )
    schedule.on(
        "housekeeping",
        chores.housekeeping,
        IntervalTrigger(hours=1),
        start=first + timedelta(minutes=1),
    )
    every = min([STATS_EVERY, *(s.interval for s in config.sources)])
    schedule.on(
        "stats", chores.refresh_stats, IntervalTrigger(seconds=max(1.0, every)), start=first
    )
    # Straight on the scheduler, not through a bell: it proves the scheduler fires.
    schedule.scheduler.add_job(progress.tick, IntervalTrigger(seconds=SCHEDULER_TICK), id="tick")


async def watchdog(health: Health, notifier: Notifier, period: float) -> None:
    """``WATCHDOG=1`` every ``period`` while polls and deliveries progress; withheld
    (systemd then restarts us) while something is stuck."""
    withheld: list[str] = []
    while True:
        problems = health.stalled()
        if not problems:
            notifier.watchdog()
            if withheld:
                log.warning("watchdog_resumed")
        elif problems != withheld:
            log.error("watchdog_withheld", problems=problems)
        withheld = problems
        await anyio.sleep(period)


async def _answer(ticks: MemoryObjectReceiveStream[None], action: Action) -> None:
    """Run ``action`` once per tick, one at a time, in a task anyio owns. An error is logged
    and the next tick tries again: one failing digest must not stop the daemon."""
    async with ticks:
        async for _ in ticks:
            try:
                await action()
            except Exception:
                log.exception("scheduled_action_failed", action=getattr(action, "__name__", "?"))


async def _ring(bell: MemoryObjectSendStream[None]) -> None:
    """A scheduler tick: ask for a run unless one is already waiting (no overlap: each
    action runs one at a time; ticks meanwhile collapse into one)."""
    with contextlib.suppress(
        anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
    ):
        bell.send_nowait(None)
