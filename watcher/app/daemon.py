"""The daemon: sources on an APScheduler interval each, the dispatcher running beside them.

``Watcher`` is an async context manager; each part registers its cleanup on an
``AsyncExitStack``. SIGTERM/SIGINT let the current commit finish, then stop.

Around them: metrics (:mod:`watcher.metrics`), ``/healthz /readyz /metrics`` when
``http.listen`` is set (:mod:`watcher.health`), and systemd notifications
(:mod:`watcher.sdnotify`): ``READY=1`` once the store is open, the HTTP endpoint bound and
the scheduler started; ``STATUS=`` summaries; ``WATCHDOG=1`` only while polls and deliveries
progress; ``STOPPING=1`` on the way out.

Replicas sharing a PostgreSQL database split the sources (:mod:`watcher.coordination`): each
polls only what it owns, stops a poll the moment its source is lost, polls a source it has
just taken at once; the leader alone sends digests and heartbeats and serves rate-limited
sinks. Every replica delivers from the shared outbox.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import httpx
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from watcher.abc import Ownership, Routed, Sink, Source, Store
from watcher.app.coordination import SoleOwnership, build_ownership, replica_name
from watcher.app.health import SCHEDULER_TICK, Health, ListenError, Progress
from watcher.app.httpserver import serve_app
from watcher.app.logging import configure
from watcher.app.metrics import Metrics
from watcher.app.sdnotify import Notifier
from watcher.config import Config, SourceConfig, load_config, secrets_of
from watcher.deliver.dispatch import Dispatcher, SinkPolicy
from watcher.detect.digest import digest_transition, heartbeat, summarize
from watcher.detect.routing import Router
from watcher.exceptions import ConfigError
from watcher.model.transitions import Transition
from watcher.record.alerting import Alerting
from watcher.record.pipeline import CycleOutcome, Pipeline
from watcher.sinks import build_sink
from watcher.sources import build_source
from watcher.sources.mistral import ApiClient
from watcher.stores import open_store

log = structlog.get_logger(__name__)

STATS_EVERY = 5.0  # at most this many seconds between reads of the store for gauges/STATUS


def _ignore(transition: Transition) -> None:
    pass


@dataclass(frozen=True)
class _CountingRouter(Router):
    """A router that tells of each transition it routes (the rules' alerts are counted so:
    :class:`~watcher.alerting.Alerting` commits them itself)."""

    seen: Callable[[Transition], None] = _ignore

    def sinks_for(self, transition: Transition, now: float | None = None) -> list[str]:
        self.seen(transition)
        return super().sinks_for(transition, now)


class Watcher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = AsyncExitStack()
        self.store: Store
        self.sources: dict[str, tuple[Source, SourceConfig]] = {}
        self.sinks: dict[str, Sink] = {}
        self.dispatcher: Dispatcher
        self.pipeline: Pipeline
        self.alerting: Alerting
        self.metrics: Metrics
        self.health: Health
        self.ownership: Ownership
        self.replica = replica_name()
        self._polling: dict[str, anyio.CancelScope] = {}  # source -> its running poll
        self._bells: dict[str, MemoryObjectSendStream[None]] = {}  # scheduled job -> its bell
        self.progress = Progress()
        self.notifier = Notifier()
        self.reloading = False  # set when the serve ends for a reload, not a stop

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                    follow_redirects=False,
                    trust_env=False,
                )
            )
            self.store = open_store(self.config.state.url)
            await self.store.open()
            stack.push_async_callback(self.store.aclose)
            for sink_config in self.config.sinks:
                sink = build_sink(sink_config, client, self.store)
                stack.push_async_callback(sink.aclose)
                self.sinks[sink_config.name] = sink
            for source_config in self.config.sources:
                source = build_source(source_config, client)
                stack.push_async_callback(source.aclose)
                self.sources[source_config.name] = (source, source_config)
            self.metrics = Metrics(
                self.sources,
                sinks=self.sinks,
                prefixes=[source.kind.prefix for source, _ in self.sources.values()],
            )
            for name, (source, _) in self.sources.items():
                api = getattr(source, "api", None)  # the listing sources' HTTP client
                if isinstance(api, ApiClient):
                    api.observe = functools.partial(self.metrics.api_request, name)
            self.ownership = build_ownership(
                self.config.state.url,
                list(self.sources),
                replica=self.replica,
                busy=lambda: set(self._polling),
                observe=self.metrics.ownership_changed,
            )
            stack.push_async_callback(self.ownership.aclose)
            if isinstance(self.ownership, SoleOwnership):
                # Alone on its store: claims left there are from a process that died
                # (SIGKILL); waiting for their leases would only delay its deliveries.
                await self.store.release(None)
                for name in self.ownership.owned:  # it owns everything from the start
                    self.metrics.ownership_changed(name, "acquired")
            policies = {c.name: SinkPolicy(*c.grouping) for c in self.config.sinks}
            self.dispatcher = Dispatcher(
                self.store,
                self.sinks,
                self.config.delivery,
                policies=policies,
                metrics=self.metrics,
                # Unique per process even if two replicas were given one name: a clean stop
                # releases only this process's claims.
                owner=f"{self.replica}#{os.getpid()}",
                lease=claim_lease(self.config),
                serves=functools.partial(self._serves, policies),
                orphans=lambda: self.ownership.leader,
            )
            router = Router(self.config.effective_routes)
            self.pipeline = Pipeline(
                self.store,
                router,
                self.sources,
                rules=self.config.rules,
                wake=self.dispatcher.wake,
                metrics=self.metrics,
            )
            counting = _CountingRouter(
                router.routes, seen=lambda t: self.metrics.transitions_recorded([t])
            )
            self.alerting = Alerting(
                self.store,
                counting,
                self.sources,
                self.config.rules,
                wake=self.dispatcher.wake,
                owns=lambda name: name in self.ownership.owned,
            )
            self.health = Health(
                self.config,
                self.store,
                self.dispatcher,
                self.pipeline.last_ok,
                self.metrics,
                self.progress,
                ownership=self.ownership,
            )
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.notifier.close()
        await self._stack.aclose()

    def _serves(self, policies: dict[str, SinkPolicy], sink: str) -> bool:
        """Every replica delivers, but a rate-limited sink is served by the leader alone: its
        limit is the deployment's, not each replica's."""
        policy = policies.get(sink)
        return self.ownership.leader or policy is None or policy.max_per_minute is None

    async def housekeeping(self) -> None:
        """Keeps the outbox from growing forever (``delivery.retention``)."""
        if not self.ownership.leader:
            return
        try:
            removed = await self.store.prune(before=time.time() - self.config.delivery.retention)
        except Exception:
            log.exception("housekeeping_failed")
            return
        if removed:
            log.info("outbox_pruned", transitions=removed)

    async def send_digest(self, now: float | None = None) -> None:
        """``watcher.digest`` over the last ``digest.period`` to the digest's sinks."""
        if self.config.digest is None or not self.ownership.leader:
            return
        end = time.time() if now is None else now
        start = end - self.config.digest.period
        last = await self.store.last_digest_end()
        if last is not None and start < float(last) < end:
            start = float(last)  # since the previous digest: no gap over weekends or DST
        elif last is not None and float(last) <= start:
            start = float(last)  # a missed digest: the next one covers the whole gap
        found = await self.store.transitions_between(start, end)
        active = {
            name: list((await self.store.active_snapshots(name)).values()) for name in self.sources
        }
        transition = digest_transition(summarize(found, active, start=start, end=end), end)
        added = await self.store.enqueue(
            [Routed(transition, list(self.config.digest.sinks))], now=time.time()
        )
        await self.store.record_digest_end(end)
        self.metrics.transitions_recorded([transition])
        log.info("digest_queued", deliveries=added)
        if added:
            self.dispatcher.wake()

    async def send_heartbeat(self) -> None:
        """``watcher.heartbeat``, routed like any transition (a dead-man's switch)."""
        if self.config.heartbeat is None or not self.ownership.leader:
            return
        now = time.time()
        cursors = {name: await self.store.load_cursor(name) for name in self.sources}
        # Sources other replicas poll: their last good poll as the store last recorded it.
        cached = self.metrics.store_status
        last_ok = {n: t for n, t in (cached.last_poll_at if cached else {}).items() if t > 0}
        last_ok.update(self.pipeline.last_ok)
        transition = heartbeat(now, self.config.heartbeat.interval, cursors, last_ok)
        routed = [Routed(transition, self.pipeline.router.sinks_for(transition, now))]
        added = await self.store.enqueue(routed, now=now)
        self.metrics.transitions_recorded([transition])
        if added:
            self.dispatcher.wake()

    async def refresh_stats(self) -> None:
        """Read the store for the jobs and outbox gauges, and tell systemd how things are."""
        try:
            with anyio.fail_after(30):
                self.metrics.refreshed(await self.store.status())
        except Exception as exc:  # the gauges keep their last values; readiness tells
            log.warning("stats_refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """One line for systemd's ``STATUS=``: ``polling 2 sources, 0 pending deliveries,
        last poll 3s ago``, with the sources that are not healthy named."""
        names = list(self.sources)
        cached = self.metrics.store_status
        cursors = cached.cursors if cached is not None else {}
        failing = [
            n
            for n in names
            if n in self.progress.poll_finished  # tried at least once
            and n in self.ownership.owned
            and self.health.source_check(n, cursors.get(n)) != "ok"
        ]
        owned = len(self.ownership.owned)
        text = f"polling {owned} source{'s' if owned != 1 else ''}"
        if owned != len(names):
            text += f" of {len(names)} (replica {self.replica})"
        if failing:
            text += f" ({len(failing)} failing: {', '.join(failing)[:200]})"
        if cached is not None:
            text += f", {cached.pending} pending deliveries"
            if cached.dead:
                text += f", {cached.dead} dead"
        last = max(self.pipeline.last_ok.values(), default=None)
        ago = f"last poll {max(0.0, time.time() - last):.0f}s ago" if last else "no poll yet"
        return f"{text}, {ago}"

    def notify_reloading(self) -> None:
        """Tell systemd a reload started (``RELOADING=1`` + ``MONOTONIC_USEC``); call
        :meth:`notify_ready` when the new config is in place (or refused)."""
        self.notifier.reloading()
        self.notifier.status("reloading the config")

    def notify_ready(self) -> None:
        """Tell systemd the daemon is ready again (after start-up or a reload)."""
        self.notifier.ready()
        self.notifier.status(self.status_line())

    async def _poll(self, name: str) -> CycleOutcome:
        with self.progress.polling(name):
            if name not in self.ownership.owned:
                return CycleOutcome("standby")  # another replica polls it
            with anyio.CancelScope() as scope:
                self._polling[name] = scope
                try:
                    return await self.pipeline.poll(name)
                finally:
                    del self._polling[name]
            log.warning("poll_stopped", source=name, reason="the source is no longer ours")
            return CycleOutcome("stale")

    def _acquired(self, name: str) -> None:
        """A source just became ours: poll it now rather than at its next tick."""
        bell = self._bells.get(f"poll:{name}")
        if bell is not None:
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                bell.send_nowait(None)

    def _lost(self, name: str) -> None:
        """A source is no longer ours: stop its poll in progress at once (a commit already
        under way finishes, shielded, and the store refuses it if the new owner has
        committed since)."""
        scope = self._polling.get(name)
        if scope is not None:
            scope.cancel()

    async def _watchdog(self, period: float) -> None:
        """``WATCHDOG=1`` every ``period`` while polls and deliveries progress; withheld
        (systemd then restarts us) while something is stuck."""
        withheld: list[str] = []
        while True:
            problems = self.health.stalled()
            if not problems:
                self.notifier.watchdog()
                if withheld:
                    log.warning("watchdog_resumed")
            elif problems != withheld:
                log.error("watchdog_withheld", problems=problems)
            withheld = problems
            await anyio.sleep(period)

    async def _listen(self, stack: AsyncExitStack) -> None:
        """Serve ``/healthz /readyz /metrics`` on ``http.listen`` until ``stack`` closes."""
        http = self.config.http
        address = http.address if http is not None else None
        if http is None or address is None or http.listen is None:
            return
        host, port = address
        try:
            url = await stack.enter_async_context(serve_app(self.health.app(), host, port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.error("http_listen_failed", listen=http.listen, error=reason)
            raise ListenError(http.listen, reason) from None
        log.info("http_listening", url=url, endpoints=["/healthz", "/readyz", "/metrics"])

    async def once(self) -> dict[str, CycleOutcome]:
        """One cycle of every source (every one no running replica holds, on PostgreSQL),
        then every delivery that is due."""
        await self.ownership.take_free()
        outcomes = {
            name: await self.pipeline.poll(name)
            if name in self.ownership.owned
            else CycleOutcome("standby")
            for name in self.sources
        }
        await self.alerting.check()
        await self.dispatcher.drain()
        return outcomes

    async def run_until_stopped(self) -> None:
        """Poll and deliver until SIGTERM or SIGINT (SIGHUP: see :func:`run`)."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            await self.serve_signals(signals, None)

    async def serve_signals(self, signals: AsyncIterator[int], path: Path | None) -> Config | None:
        """Serve until a signal: SIGTERM/SIGINT stop (``None``); SIGHUP re-reads ``path`` and
        returns the new config, or logs why it is refused and goes on with this one."""
        stop = anyio.Event()
        reloaded: list[Config] = []

        async def on_signal() -> None:
            async for signum in signals:
                if signum != signal.SIGHUP:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    stop.set()
                    return
                if path is None:
                    log.warning("reload_not_supported", hint="no config file to re-read")
                    continue
                try:
                    new = load_config(path)
                except ConfigError as exc:
                    log.error("reload_refused", error=str(exc), hint="the old config stays")
                    self.notifier.status(f"reload refused: {exc}"[:200])
                    continue
                log.info("reloading", config=str(path))
                self.reloading = True
                self.notify_reloading()
                reloaded.append(new)
                stop.set()
                return

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signal)
            await self.serve(until=stop)
            tg.cancel_scope.cancel()
        return reloaded[0] if reloaded else None

    async def serve(self, *, until: anyio.Event) -> None:
        """Poll every source on its interval and deliver continuously until ``until`` is
        set; then stop, letting a commit in progress finish (it is shielded).

        APScheduler only rings the bell: each source's polls run in a task of ours, one at a
        time, so that anyio's cancellation (and its shields) governs them.
        """
        scheduler = AsyncIOScheduler(timezone="UTC")
        first = datetime.now().astimezone()
        bells: list[MemoryObjectSendStream[None]] = []
        async with AsyncExitStack() as stack:
            await self._listen(stack)  # first: a port already taken stops the start here
            tg = await stack.enter_async_context(anyio.create_task_group())

            def on(
                job_id: str,
                action: Callable[[], Awaitable[object]],
                trigger: BaseTrigger,
                *,
                start: datetime | None = None,
                grace: float = 1.0,
            ) -> None:
                send, receive = anyio.create_memory_object_stream[None](1)
                bells.append(send)
                self._bells[job_id] = send
                tg.start_soon(_answer, receive, action)
                extra = {"next_run_time": start} if start is not None else {}
                scheduler.add_job(
                    _ring,
                    trigger,
                    args=[send],
                    id=job_id,
                    max_instances=1,
                    coalesce=True,  # missed runs collapse into one
                    misfire_grace_time=max(1, int(grace)),
                    **extra,
                )

            for index, (name, (_, config)) in enumerate(self.sources.items()):
                on(
                    f"poll:{name}",
                    functools.partial(self._poll, name),
                    IntervalTrigger(seconds=config.interval, jitter=config.effective_jitter),
                    start=first + timedelta(milliseconds=100 * index),
                    grace=config.interval,
                )
            if self.config.rules:
                on(
                    "rules",
                    self.alerting.check,
                    IntervalTrigger(seconds=self.config.rules_interval),
                    start=first + timedelta(seconds=1),
                    grace=self.config.rules_interval,
                )
            if self.config.heartbeat is not None:
                on(
                    "heartbeat",
                    self.send_heartbeat,
                    IntervalTrigger(seconds=self.config.heartbeat.interval),
                    start=first + timedelta(seconds=2),
                    grace=self.config.heartbeat.interval,  # a late heartbeat beats none
                )
            if self.config.digest is not None:
                digest = self.config.digest
                on(
                    "digest",
                    self.send_digest,
                    CronTrigger.from_crontab(digest.cron, timezone=digest.timezone),
                    grace=3600,  # a digest a little late beats no digest
                )
            on(
                "housekeeping",
                self.housekeeping,
                IntervalTrigger(hours=1),
                start=first + timedelta(minutes=1),
            )
            every = min([STATS_EVERY, *(c.interval for _, c in self.sources.values())])
            on("stats", self.refresh_stats, IntervalTrigger(seconds=max(1.0, every)), start=first)
            # Straight on the scheduler, not through a bell: it proves the scheduler fires.
            scheduler.add_job(
                self.progress.tick, IntervalTrigger(seconds=SCHEDULER_TICK), id="tick"
            )
            self.progress.start()
            tg.start_soon(self.ownership.run, self._acquired, self._lost)
            tg.start_soon(self.dispatcher.run)
            scheduler.start()
            self.health.running = True
            log.info("watcher_started", sources=list(self.sources), sinks=list(self.sinks))
            self.notify_ready()
            if self.notifier.watchdog_interval is not None:
                tg.start_soon(self._watchdog, self.notifier.watchdog_interval)
            try:
                await until.wait()
            finally:
                self.health.running = False
                if not self.reloading:
                    self.notifier.stopping("stopping: finishing the commit in progress")
                scheduler.shutdown(wait=False)
                for bell in bells:
                    bell.close()
                self._bells.clear()
                tg.cancel_scope.cancel()
        await self.dispatcher.release()
        log.info("watcher_stopped")


def claim_lease(config: Config) -> float:
    """How long a replica holds a delivery it sends: twice the slowest sink's timeout and
    some, so that only a dead replica's claims ever expire."""
    timeouts = [float(getattr(sink, "timeout", 10.0)) for sink in config.sinks]
    return 2 * max(timeouts, default=10.0) + 10.0


async def _answer(
    ticks: MemoryObjectReceiveStream[None], action: Callable[[], Awaitable[object]]
) -> None:
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


async def run(config: Config, path: Path | None) -> None:
    """The daemon's life. SIGHUP re-reads ``path``: a valid config replaces sources, sinks
    and routes (pending deliveries and snapshots live in the store and carry over); an
    invalid one is refused, logged, and the running config goes on. SIGTERM/SIGINT stop."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        current = config
        while True:
            async with Watcher(current) as watcher:
                new = await watcher.serve_signals(signals, path)
            if new is None:
                return
            configure(new.logging.level, new.logging.format, secrets=secrets_of(new))
            log.info(
                "reloaded", sources=[s.name for s in new.sources], sinks=[s.name for s in new.sinks]
            )
            current = new
