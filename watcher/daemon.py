"""The daemon: sources on an APScheduler interval each, the dispatcher running beside them.

``Watcher`` is an async context manager; each part registers its cleanup on an
``AsyncExitStack``. SIGTERM/SIGINT let the current commit finish, then stop.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
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

from watcher.abc import Routed, Sink, Source, Store
from watcher.alerting import Alerting
from watcher.config import Config, SourceConfig
from watcher.digest import digest_transition, heartbeat, summarize
from watcher.dispatch import Dispatcher, SinkPolicy
from watcher.pipeline import CycleOutcome, Pipeline
from watcher.routing import Router
from watcher.sinks import build_sink
from watcher.sources import build_source
from watcher.stores import open_store

log = structlog.get_logger(__name__)


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
            policies = {c.name: SinkPolicy(*c.grouping) for c in self.config.sinks}
            self.dispatcher = Dispatcher(
                self.store, self.sinks, self.config.delivery, policies=policies
            )
            router = Router(self.config.effective_routes)
            self.pipeline = Pipeline(
                self.store,
                router,
                self.sources,
                rules=self.config.rules,
                wake=self.dispatcher.wake,
            )
            self.alerting = Alerting(
                self.store, router, self.sources, self.config.rules, wake=self.dispatcher.wake
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
        await self._stack.aclose()

    async def housekeeping(self) -> None:
        """Keeps the outbox from growing forever (``delivery.retention``)."""
        try:
            removed = await self.store.prune(before=time.time() - self.config.delivery.retention)
        except Exception:
            log.exception("housekeeping_failed")
            return
        if removed:
            log.info("outbox_pruned", transitions=removed)

    async def send_digest(self, now: float | None = None) -> None:
        """``watcher.digest`` over the last ``digest.period`` to the digest's sinks."""
        if self.config.digest is None:
            return
        end = time.time() if now is None else now
        start = end - self.config.digest.period
        found = await self.store.transitions_between(start, end)
        active = {
            name: list((await self.store.active_snapshots(name)).values()) for name in self.sources
        }
        transition = digest_transition(summarize(found, active, start=start, end=end), end)
        added = await self.store.enqueue(
            [Routed(transition, list(self.config.digest.sinks))], now=time.time()
        )
        log.info("digest_queued", deliveries=added)
        if added:
            self.dispatcher.wake()

    async def send_heartbeat(self) -> None:
        """``watcher.heartbeat``, routed like any transition (a dead-man's switch)."""
        if self.config.heartbeat is None:
            return
        now = time.time()
        cursors = {name: await self.store.load_cursor(name) for name in self.sources}
        transition = heartbeat(now, self.config.heartbeat.interval, cursors, self.pipeline.last_ok)
        routed = [Routed(transition, self.pipeline.router.sinks_for(transition, now))]
        if await self.store.enqueue(routed, now=now):
            self.dispatcher.wake()

    async def once(self) -> dict[str, CycleOutcome]:
        """One cycle of every source, then every delivery that is due."""
        outcomes = {name: await self.pipeline.poll(name) for name in self.sources}
        await self.alerting.check()
        await self.dispatcher.drain()
        return outcomes

    async def run_until_stopped(self) -> None:
        """Poll and deliver until SIGTERM or SIGINT."""
        stop = anyio.Event()

        async def on_signal() -> None:
            with anyio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP
            ) as signals:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        # Not the default action (exit): reload is not built yet.
                        log.warning("reload_not_supported", hint="restart to apply a new config")
                        continue
                    log.info("stopping", signal=signal.Signals(signum).name)
                    stop.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signal)
            await self.serve(until=stop)
            tg.cancel_scope.cancel()

    async def serve(self, *, until: anyio.Event) -> None:
        """Poll every source on its interval and deliver continuously until ``until`` is
        set; then stop, letting a commit in progress finish (it is shielded).

        APScheduler only rings the bell: each source's polls run in a task of ours, one at a
        time, so that anyio's cancellation (and its shields) governs them.
        """
        scheduler = AsyncIOScheduler(timezone="UTC")
        first = datetime.now().astimezone()
        bells: list[MemoryObjectSendStream[None]] = []
        async with anyio.create_task_group() as tg:

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
                    functools.partial(self.pipeline.poll, name),
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
                )
            if self.config.heartbeat is not None:
                on(
                    "heartbeat",
                    self.send_heartbeat,
                    IntervalTrigger(seconds=self.config.heartbeat.interval),
                    start=first + timedelta(seconds=2),
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
            tg.start_soon(self.dispatcher.run)
            scheduler.start()
            log.info("watcher_started", sources=list(self.sources), sinks=list(self.sinks))
            try:
                await until.wait()
            finally:
                scheduler.shutdown(wait=False)
                for bell in bells:
                    bell.close()
                tg.cancel_scope.cancel()
        log.info("watcher_stopped")


async def _answer(
    ticks: MemoryObjectReceiveStream[None], action: Callable[[], Awaitable[object]]
) -> None:
    """Run ``action`` once per tick, one at a time, in a task anyio owns."""
    async with ticks:
        async for _ in ticks:
            await action()


async def _ring(bell: MemoryObjectSendStream[None]) -> None:
    """A scheduler tick: ask for a run unless one is already waiting (no overlap: each
    action runs one at a time; ticks meanwhile collapse into one)."""
    with contextlib.suppress(
        anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
    ):
        bell.send_nowait(None)
