"""The daemon: sources on an APScheduler interval each, the dispatcher running beside them.

``Watcher`` is an async context manager that wires the parts; each registers its cleanup on
an ``AsyncExitStack``. SIGTERM/SIGINT let the current commit finish, then stop; SIGHUP
reloads the config (:mod:`watcher.app.reload`).

Around them: the schedule (:mod:`watcher.app.scheduling`), the chores
(:mod:`watcher.app.chores`), metrics (:mod:`watcher.app.metrics`), ``/healthz /readyz
/metrics`` when ``http.listen`` is set (:mod:`watcher.app.health`), and systemd
notifications (:mod:`watcher.app.sdnotify`): ``READY=1`` once the store is open, the HTTP
endpoint bound and the scheduler started; ``STATUS=`` summaries; ``WATCHDOG=1`` only while
polls and deliveries progress; ``STOPPING=1`` on the way out.

Replicas sharing a PostgreSQL database split the sources (:mod:`watcher.app.coordination`):
each polls only what it owns, stops a poll the moment its source is lost, polls a source it
has just taken at once; the leader alone sends digests and heartbeats and serves
rate-limited sinks. Every replica delivers from the shared outbox.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import structlog

from watcher.abc import Ownership, Sink, Source, Store
from watcher.app.actions import Actions
from watcher.app.chores import Chores
from watcher.app.coordination import SoleOwnership, build_ownership, replica_name
from watcher.app.health import Health, Progress, listen
from watcher.app.metrics import Metrics
from watcher.app.reload import next_config
from watcher.app.scheduling import Polls, Schedule, plan, watchdog
from watcher.app.sdnotify import Notifier
from watcher.app.streaming import Streaming
from watcher.config import Config, SlackSinkConfig, SourceConfig
from watcher.deliver.dispatch import Dispatcher, SinkPolicy
from watcher.deliver.transport import aiohttp_client
from watcher.detect.routing import Router
from watcher.record.alerting import Alerting
from watcher.record.pipeline import CycleOutcome, Pipeline
from watcher.record.recorder import Recorder
from watcher.sinks import build_sink
from watcher.sources import build_source
from watcher.sources.answers import ByteBudget
from watcher.stores import open_store

if TYPE_CHECKING:
    from watcher.app.slack_actions import SlackActions

log = structlog.get_logger(__name__)


class Watcher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._stack = AsyncExitStack()
        self.store: Store
        self.sources: dict[str, tuple[Source, SourceConfig]] = {}
        self.sinks: dict[str, Sink] = {}
        self.metrics: Metrics
        self.ownership: Ownership
        self.dispatcher: Dispatcher
        self.recorder: Recorder
        self.pipeline: Pipeline
        self.alerting: Alerting
        self.health: Health
        self.polls: Polls
        self.chores: Chores
        self.replica = replica_name()
        self.progress = Progress()
        self.notifier = Notifier()
        self.reloading = False  # set when the serve ends for a reload, not a stop
        self.slack: SlackActions | None = None  # the Slack sinks' buttons, when interactive

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            await self._open(stack)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def _open(self, stack: AsyncExitStack) -> None:
        config = self.config
        # httpx's API over aiohttp's pool and parser, sending directly (watcher.deliver.
        # transport: a quarter of httpcore2's CPU per request): one client for the API and
        # Slack actions, one the sinks share, so that slow sinks cannot hold the API's
        # connections. Event streams keep clients of their own.
        client = await stack.enter_async_context(aiohttp_client())
        sending = await stack.enter_async_context(aiohttp_client())
        self.store = open_store(config.state.url)
        await self.store.open()
        stack.push_async_callback(self.store.aclose)
        for sink_config in config.sinks:
            sink = build_sink(
                sink_config,
                sending,
                self.store,
                job_links={
                    s.name: s.job_url_template for s in config.sources if s.job_url_template
                },
            )
            stack.push_async_callback(sink.aclose)
            self.sinks[sink_config.name] = sink
        in_flight = ByteBudget()  # the bytes of API answers buffered at once, all sources
        for source_config in config.sources:
            observe = functools.partial(self._api_request, source_config.name)
            source = build_source(source_config, client, observe=observe, in_flight=in_flight)
            stack.push_async_callback(source.aclose)
            self.sources[source_config.name] = (source, source_config)
        self.metrics = Metrics(
            self.sources,
            sinks=self.sinks,
            prefixes=[source.kind.prefix for source, _ in self.sources.values()],
        )
        self.metrics.watch_store(self.store)
        await self._share(stack)
        self._assemble()
        if any(isinstance(c, SlackSinkConfig) and c.interactive for c in config.sinks):
            # Imported only then: slack_sdk and the Block Kit layouts stay unloaded otherwise.
            from watcher.app.slack_actions import SlackActions, interactive_sinks

            interactive = interactive_sinks(config.sinks, list(self.sources))
            sources = {name: source for name, (source, _) in self.sources.items()}
            actions = Actions(self.store, self.recorder, sources)
            self.slack = SlackActions(interactive, actions, self.store, client, replays=self.store)
            self.health.routes = list(self.slack.routes())
        if config.http is not None and config.http.listen is not None:
            self._status_page()

    def _status_page(self) -> None:
        """The status page on ``http.listen``, after every other route (it answers the
        paths they do not)."""
        from watcher.app.web import StatusPage  # Jinja2 and the templates: only when served

        sources = {name: source for name, (source, _) in self.sources.items()}
        actions = Actions(self.store, self.recorder, sources)
        page = StatusPage(
            self.config,
            self.store,
            actions,
            self.ownership,
            requests=lambda source: self.metrics.requests_last_minute(source),
        )
        self.health.routes = [*self.health.routes, *page.routes()]

    def _source_notices(self) -> dict[str, str]:
        """What the sources want an operator to know short of a failure, by source."""
        out: dict[str, str] = {}
        for name, (source, _) in self.sources.items():
            notice = source.notice
            if notice is not None:
                out[name] = notice
        return out

    def _api_request(self, source: str, route: str, status: int | None) -> None:
        """A request a source's API client sent (the metrics are built after the sources:
        they take the sources' type prefixes)."""
        self.metrics.api_request(source, route, status)

    async def _share(self, stack: AsyncExitStack) -> None:
        """Which sources this replica polls (all of them, alone on its store)."""
        self.ownership = build_ownership(
            self.config.state.url,
            list(self.sources),
            replica=self.replica,
            busy=lambda: set(self.polls.running),
            observe=self.metrics.ownership_changed,
        )
        stack.push_async_callback(self.ownership.aclose)
        if isinstance(self.ownership, SoleOwnership):
            # Alone on its store: claims left there are from a process that died
            # (SIGKILL); waiting for their leases would only delay its deliveries.
            await self.store.release(None)
            for name in self.ownership.owned:  # it owns everything from the start
                self.metrics.ownership_changed(name, "acquired")

    def _assemble(self) -> None:
        """The dispatcher, the one recorder every producer of transitions uses, and what
        runs on the schedule."""
        config, store, metrics = self.config, self.store, self.metrics
        policies = {c.name: SinkPolicy(*c.grouping) for c in config.sinks}
        self.dispatcher = Dispatcher(
            store,
            self.sinks,
            config.delivery,
            policies=policies,
            metrics=metrics,
            # Unique per process even if two replicas were given one name: a clean stop
            # releases only this process's claims.
            owner=f"{self.replica}#{os.getpid()}",
            lease=claim_lease(config),
            serves=functools.partial(self._serves, policies),
            orphans=lambda: self.ownership.leader,
        )
        router = Router(config.effective_routes)
        self.recorder = Recorder(store, router, metrics=metrics, wake=self.dispatcher.wake)
        self.pipeline = Pipeline(self.recorder, self.sources, rules=config.rules, metrics=metrics)
        self.alerting = Alerting(
            self.recorder,
            self.sources,
            config.rules,
            owns=lambda name: name in self.ownership.owned,
        )
        last_ok = self.pipeline.last_ok
        self.health = Health(
            config,
            store,
            self.dispatcher,
            self.pipeline.last_ok_monotonic,
            metrics,
            self.progress,
            clock=time.monotonic,  # ages on the monotonic clock: wall steps change nothing
            ownership=self.ownership,
            notices=self._source_notices,
        )
        self.polls = Polls(self.pipeline, self.ownership, self.progress)
        self.chores = Chores(
            config,
            self.recorder,
            self.store,
            sources=list(self.sources),
            last_ok=last_ok,
            metrics=metrics,
            ownership=self.ownership,
            health=self.health,
            progress=self.progress,
            notifier=self.notifier,
            dispatcher=self.dispatcher,
        )

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

    async def send_digest(self, now: float | None = None) -> None:
        """``watcher.digest`` over the last ``digest.period`` (see :class:`Chores`)."""
        await self.chores.send_digest(now)

    async def send_heartbeat(self) -> None:
        """``watcher.heartbeat``, routed like any transition (see :class:`Chores`)."""
        await self.chores.send_heartbeat()

    def notify_reloading(self) -> None:
        """Tell systemd a reload started (``RELOADING=1`` + ``MONOTONIC_USEC``); call
        :meth:`notify_ready` when the new config is in place (or refused)."""
        self.notifier.reloading()
        self.notifier.status("reloading the config")

    def reload_failed(self, reason: str) -> None:
        """A reload could not be applied: this config serves on, and says so."""
        self.metrics.reload_done(False)
        self.health.reload_error = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {reason}"
        self.reloading = False
        self.notifier.status(f"reload failed, previous config running: {reason}"[:200])

    def notify_ready(self) -> None:
        """Tell systemd the daemon is ready again (after start-up or a reload)."""
        self.notifier.ready()
        self.notifier.status(self.chores.status_line())

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

    async def serve_signals(self, signals: AsyncIterator[int], path: Path | None) -> Config | None:
        """Serve until a signal: SIGTERM/SIGINT stop (``None``); SIGHUP re-reads ``path`` and
        returns the new config, or logs why it is refused and goes on with this one."""
        stop = anyio.Event()
        reloaded: list[Config] = []

        async def on_signal() -> None:
            new = await next_config(signals, path, self.notifier)
            if new is not None:
                self.reloading = True
                self.notify_reloading()
                reloaded.append(new)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signal)
            await self.serve(until=stop)
            tg.cancel_scope.cancel()
        return reloaded[0] if reloaded else None

    async def serve(self, *, until: anyio.Event) -> None:
        """Poll every source on its interval and deliver continuously until ``until`` is
        set; then stop, letting a commit in progress finish (it is shielded)."""
        async with AsyncExitStack() as stack:
            await listen(stack, self.health)  # first: a port already taken stops the start here
            tg = await stack.enter_async_context(anyio.create_task_group())
            schedule = Schedule(tg)
            plan(
                schedule,
                self.config,
                polls=self.polls,
                alerting=self.alerting,
                chores=self.chores,
                progress=self.progress,
            )
            self.progress.start()
            tg.start_soon(self.ownership.run, schedule.poll_now, self.polls.lost)
            tg.start_soon(self.dispatcher.run)
            sources = {name: source for name, (source, _) in self.sources.items()}
            streaming = Streaming(
                sources, self.ownership, self.store, schedule.poll_now, metrics=self.metrics
            )
            tg.start_soon(streaming.run)
            if self.slack is not None:
                await tg.start(self.slack.run)
            schedule.start()
            self.health.running = True
            log.info("watcher_started", sources=list(self.sources), sinks=list(self.sinks))
            self.notify_ready()
            if self.notifier.watchdog_interval is not None:
                tg.start_soon(watchdog, self.health, self.notifier, self.notifier.watchdog_interval)
            try:
                await until.wait()
            finally:
                self.health.running = False
                if not self.reloading:
                    self.notifier.stopping("stopping: finishing the commit in progress")
                schedule.stop()
                tg.cancel_scope.cancel()
        await self.dispatcher.release()
        log.info("watcher_stopped")


def claim_lease(config: Config) -> float:
    """How long a replica holds a delivery it sends: twice the slowest sink's timeout and
    some, so that only a dead replica's claims ever expire."""
    timeouts = [float(getattr(sink, "timeout", 10.0)) for sink in config.sinks]
    return 2 * max(timeouts, default=10.0) + 10.0
