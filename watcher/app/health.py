"""``/healthz``, ``/readyz`` and ``/metrics``: a Starlette app served inside the daemon's
event loop when ``http.listen`` is set.

- ``/healthz`` (liveness): 200 while the event loop answers, the scheduler ticks and the
  dispatcher loop makes progress; else 503. A restart is the remedy for what it reports.
- ``/readyz`` (readiness): 200 when the config is loaded and the daemon running, the store
  answers a cheap query, and every source was polled successfully within 3 intervals (a
  source known to be retired, 410 Gone, counts as ready: that state is expected and already
  reported); else 503. Both answer JSON naming each check and which ones failed;
  ``/readyz`` adds ``source_notices`` (by source) for what a source works around without
  failing, e.g. an API whose paging is inconsistent.
- ``/metrics``: the daemon's own registry in the Prometheus text format.

The same signs of progress, plus "no poll is stuck", decide whether the systemd watchdog is
petted (:meth:`Health.stalled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from watcher.abc import Ownership, Readiness
from watcher.app.httpserver import serve_app
from watcher.app.metrics import Metrics
from watcher.config import Config
from watcher.deliver.dispatch import IDLE_WAIT, Dispatcher
from watcher.exceptions import WatcherError
from watcher.model.snapshot import Cursor
from watcher.sources.mistral import MAX_WAIT

log = structlog.get_logger(__name__)

SCHEDULER_TICK = 1.0  # seconds between the scheduler's own signs of life
STORE_TIMEOUT = 2.0  # the readiness query gives up after this long
READY_INTERVALS = 3  # a source is ready when polled successfully within this many intervals


class ListenError(WatcherError):
    """``http.listen`` cannot be bound (port taken, address not local, no permission)."""

    def __init__(self, listen: str, reason: str) -> None:
        self.listen = listen
        super().__init__(f"http.listen {listen}: cannot listen: {reason}")


@dataclass(frozen=True)
class Limits:
    """How long each sign of progress may be missing before it counts as a failure."""

    scheduler: float = 10.0
    dispatcher: float = 30.0
    poll_stuck: Mapping[str, float] = field(default_factory=dict)  # a poll running this long
    poll_late: Mapping[str, float] = field(default_factory=dict)  # no poll for this long
    ready: Mapping[str, float] = field(default_factory=dict)  # since the last good poll

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        stuck: dict[str, float] = {}
        late: dict[str, float] = {}
        ready: dict[str, float] = {}
        for source in config.sources:
            period = source.interval + source.effective_jitter
            # Every request of a cycle may use all its retries, each up to a timeout, with
            # backoffs of up to MAX_WAIT between them: slow is not stuck.
            attempt = (source.max_retries + 1) * source.timeout + source.max_retries * MAX_WAIT
            stuck[source.name] = 3 * source.interval + attempt
            late[source.name] = 3 * period + 1.0
            ready[source.name] = READY_INTERVALS * period
        # A sink attempt lasts at most its timeout; a rate-limited sink spaces its messages.
        slowest = 0.0
        for sink in config.sinks:
            _, _, per_minute = sink.grouping
            spacing = 60.0 / per_minute if per_minute else 0.0
            slowest = max(slowest, float(getattr(sink, "timeout", 10.0)) + spacing)
        return cls(
            dispatcher=max(30.0, 3 * slowest) + IDLE_WAIT,
            poll_stuck=stuck,
            poll_late=late,
            ready=ready,
        )


class Progress:
    """Signs of life of the daemon's loops, on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since = clock()
        self.scheduler_beat: float | None = None
        self.poll_running: dict[str, float] = {}  # source -> when its running poll started
        self.poll_finished: dict[str, float] = {}

    def start(self) -> None:
        """The schedule starts now: the limits count from here."""
        self.since = self.clock()
        self.scheduler_beat = None
        self.poll_running.clear()
        self.poll_finished.clear()

    async def tick(self) -> None:
        """Run by the scheduler itself: proves that it still fires jobs."""
        self.scheduler_beat = self.clock()

    @contextmanager
    def polling(self, source: str) -> Iterator[None]:
        self.poll_running[source] = self.clock()
        try:
            yield
        finally:
            del self.poll_running[source]
            self.poll_finished[source] = self.clock()


class Health:
    """Answers the probes and the watchdog from the daemon's parts."""

    def __init__(
        self,
        config: Config,
        store: Readiness,
        dispatcher: Dispatcher,
        last_ok: Mapping[str, float],
        metrics: Metrics,
        progress: Progress,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        ownership: Ownership | None = None,
        notices: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        # When each source last polled well (the pipeline's), on the same clock as ``clock``:
        # the daemon gives both on the monotonic clock.
        self.last_ok = last_ok
        self.metrics = metrics
        self.progress = progress
        self.limits = limits or Limits.from_config(config)
        self.clock = clock
        self.ownership = ownership  # None: this process polls every source
        # Per source, what an operator should know short of a failure (the API's paging is
        # inconsistent…): on /readyz as ``source_notices``, without failing readiness.
        self.notices = notices
        self.running = False  # set while the schedule runs (config loaded, store open)
        self.reload_error: str | None = None  # why the last SIGHUP reload was not applied
        self.routes: list[BaseRoute] = []  # served beside the probes (Slack's /slack/actions)

    # --- liveness and the watchdog ---------------------------------------------------------

    def alive(self) -> dict[str, str]:
        """``/healthz``: each check's verdict, ``"ok"`` or what is wrong."""
        progress, limits = self.progress, self.limits
        now = progress.clock()
        checks = {"event_loop": "ok", "scheduler": "ok", "dispatcher": "ok"}
        if not self.running:
            return checks  # not scheduling (starting or stopping): nothing is overdue
        beat = progress.scheduler_beat if progress.scheduler_beat is not None else progress.since
        if now - beat > limits.scheduler:
            checks["scheduler"] = f"no tick for {now - beat:.1f}s (limit {limits.scheduler:g}s)"
        quiet = now - max(self.dispatcher.last_progress, progress.since)
        if quiet > limits.dispatcher:
            checks["dispatcher"] = f"no progress for {quiet:.1f}s (limit {limits.dispatcher:g}s)"
        return checks

    def stalled(self) -> list[str]:
        """What keeps the watchdog from being petted: a dead scheduler or dispatcher, a poll
        stuck beyond its timeouts, or a source whose polls stopped being started."""
        problems = [
            f"{name}: {verdict}" for name, verdict in self.alive().items() if verdict != "ok"
        ]
        if not self.running:
            return problems
        progress, limits = self.progress, self.limits
        now = progress.clock()
        for source in self.config.sources:
            name = source.name
            started = progress.poll_running.get(name)
            if started is not None:
                stuck = limits.poll_stuck.get(name, float("inf"))
                if now - started > stuck:
                    problems.append(f"source {name}: poll running for {now - started:.0f}s")
                continue
            last = max(progress.poll_finished.get(name, progress.since), progress.since)
            if now - last > limits.poll_late.get(name, float("inf")):
                problems.append(f"source {name}: no poll for {now - last:.0f}s")
        return problems

    # --- readiness -------------------------------------------------------------------------

    def source_check(self, name: str, cursor: Cursor | None) -> str:
        """``"ok"`` or why source ``name`` is not ready (another replica's source is its
        business: ``"ok"`` here)."""
        if self.ownership is not None and name not in self.ownership.owned:
            return "ok"
        if cursor is not None and cursor.retired:
            return "ok"  # retired (410 Gone): expected, and already reported
        last = self.last_ok.get(name)
        if last is None:
            return "no successful poll yet"
        limit = self.limits.ready.get(name, float("inf"))
        ago = self.clock() - last
        if ago > limit:
            return f"last successful poll {ago:.1f}s ago (limit {limit:.3g}s)"
        return "ok"

    async def ready(self) -> dict[str, str]:
        """``/readyz``: each check's verdict, ``"ok"`` or what is wrong."""
        checks = {"config": "ok" if self.running else "not running (starting or stopping)"}
        cursors: dict[str, Cursor] = {}
        try:
            with anyio.fail_after(STORE_TIMEOUT):
                for source in self.config.sources:  # primary-key reads: cheap
                    cursors[source.name] = await self.store.load_cursor(source.name)
        except TimeoutError:
            checks["store"] = f"no answer within {STORE_TIMEOUT:g}s"
        except Exception as exc:
            checks["store"] = f"unreachable ({type(exc).__name__})"
        else:
            failing = self.store.write_error
            standing = self.store.standing_error
            checks["store"] = "ok" if failing is None else f"writes failing ({failing})"
            if standing is not None:
                checks["store"] = standing
        cached = self.metrics.store_status
        for source in self.config.sources:
            if source.name not in cursors and cached is not None and source.name in cached.cursors:
                cursors[source.name] = cached.cursors[source.name]  # the last read, then
            checks[f"source:{source.name}"] = self.source_check(
                source.name, cursors.get(source.name)
            )
        return checks

    # --- the app ---------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                *self.routes,
            ]
        )

    def owners(self) -> dict[str, Any]:
        """This replica's name and who polls each source (``null``: nobody right now)."""
        if self.ownership is None:
            return {}
        return {
            "replica": self.ownership.replica,
            "leader": self.ownership.leader,
            "owners": dict(self.ownership.owners()),
        }

    @staticmethod
    def _verdict(checks: Mapping[str, str], **extra: Any) -> JSONResponse:
        failed = [name for name, verdict in checks.items() if verdict != "ok"]
        body = {
            "status": "fail" if failed else "ok",
            "checks": dict(checks),
            "failed": failed,
            **extra,
        }
        return JSONResponse(body, status_code=503 if failed else 200)

    async def _healthz(self, request: Request) -> Response:
        return self._verdict(self.alive())

    async def _readyz(self, request: Request) -> Response:
        notice = self.store.notice
        extra: dict[str, Any] = {"store_notice": notice} if notice is not None else {}
        if self.reload_error is not None:  # the previous config runs: ready, but say it
            extra["reload_failed"] = self.reload_error
        notices = dict(self.notices()) if self.notices is not None else {}
        if notices:  # the sources work around it: ready, but say it
            extra["source_notices"] = notices
        return self._verdict(await self.ready(), **self.owners(), **extra)

    async def _metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.metrics.registry), headers={"Content-Type": content_type})


async def listen(stack: AsyncExitStack, health: Health) -> None:
    """Serve ``/healthz /readyz /metrics`` on ``http.listen`` (when set) until ``stack``
    closes; :class:`ListenError` when the address cannot be bound."""
    http = health.config.http
    address = http.address if http is not None else None
    if http is None or address is None or http.listen is None:
        return
    host, port = address
    try:
        url = await stack.enter_async_context(serve_app(health.app(), host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        log.error("http_listen_failed", listen=http.listen, error=reason)
        raise ListenError(http.listen, reason) from None
    extra = [r.path for r in health.routes if isinstance(r, Route)]
    log.info("http_listening", url=url, endpoints=["/healthz", "/readyz", "/metrics", *extra])
