"""Following event streams: one server-sent event stream per followed root execution
(``GET /v1/workflows/events/stream?root_workflow_exec_id=…``, workflows reference §7), up
to ``max_streams`` at once; the rest is left to polling.

An event is a hint, never a transition by itself: :class:`Hints` keeps what the streams
said until a poll cycle has confirmed it (a GET where a status is at stake) and committed
it. The position of each stream (the last ``broker_sequence`` whose news is committed)
lives in the source's cursor, committed in the same transaction as that news; a stream
resumes at ``position + 1`` after a disconnect, a restart or a takeover by another replica,
so nothing is lost and a replay yields the same transition ids.

Streams end: idle closes by a gateway, ``event: error`` frames, an outage, a refusal (4xx).
:class:`Follower` reconnects with backoff, asks a poll to confirm what became of the
execution (TERMINATED and TIMED_OUT have no event), holds a refused stream back for a while,
and says once what is wrong (:attr:`Follower.problem`: the pipeline reports it as
``watcher.source.degraded``); it never raises.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2 as httpx
import structlog

from watcher.deliver.retry import backoff
from watcher.exceptions import SourceAuthError, SourceError, SourceRetired, StreamRefused
from watcher.model.jobs import MalformedItem, StreamEvent
from watcher.model.snapshot import Cursor
from watcher.sources.mistral import ApiClient
from watcher.sources.workflow_jobs import KEPT, parse_frame

log = structlog.get_logger(__name__)

STREAM_PATH = "/v1/workflows/events/stream"
MAX_PENDING = 5000  # events kept per root before the oldest are dropped (a flood)
REFUSED_HOLD = 600.0  # seconds a refused stream is left to polling
CHECK_EVERY = 10.0  # at most one confirming GET per root this often when its stream ends
FAILURES_TO_REPORT = 5  # connection failures in a row before the source is degraded
RECONCILE_EVERY = 1.0
# The reference: 1 MB per event (docs), 2 MB (the worker SDK); past 8 MB the stream is held
# back like a refused one (its events are left to polling).
MAX_EVENT_BYTES = 8 * 1024 * 1024


class _TooLarge(Exception):
    """An event grew past :data:`MAX_EVENT_BYTES` before it ended."""


class _Bounded(httpx.AsyncByteStream):
    """A response body that refuses to carry one event past :data:`MAX_EVENT_BYTES` (the
    SSE decoder buffers an event whole before yielding it: a hostile stream must not fill
    the memory)."""

    def __init__(self, inner: httpx.AsyncByteStream | httpx.SyncByteStream) -> None:
        self.inner = inner
        self.read = 0
        self.since = 0

    def mark(self) -> None:
        """An event came whole: the next one starts here."""
        self.since = self.read

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self.inner, httpx.AsyncByteStream)
        async for chunk in self.inner:
            self.read += len(chunk)
            if self.read - self.since > MAX_EVENT_BYTES:
                raise _TooLarge
            yield chunk

    async def aclose(self) -> None:
        if isinstance(self.inner, httpx.AsyncByteStream):
            await self.inner.aclose()


@dataclass
class _Root:
    received: int = -1  # the highest broker_sequence received by this process
    events: dict[int, StreamEvent] = field(default_factory=dict)  # not yet committed


@dataclass
class Taken:
    """What the streams said, as one poll cycle takes it."""

    events: dict[str, list[StreamEvent]]  # job id -> its events, oldest first
    checks: set[str]  # job ids to confirm with a GET (their stream ended)
    positions: dict[str, int]  # root -> the last sequence these cover


class Hints:
    """What the streams said that no commit has covered yet (in memory: after a restart the
    streams replay it from the committed positions)."""

    def __init__(self) -> None:
        self.roots: dict[str, _Root] = {}
        self.checks: set[str] = set()
        self.dropped = 0

    def add(self, root: str, event: StreamEvent) -> bool:
        """Keep ``event`` (from ``root``'s stream); whether it is news a poll should
        confirm now."""
        state = self.roots.setdefault(root, _Root())
        state.received = max(state.received, event.sequence)
        if event.type not in KEPT:
            return False
        state.events[event.sequence] = event
        if len(state.events) > MAX_PENDING:
            del state.events[min(state.events)]
            self.dropped += 1
        return True

    def check(self, job_id: str) -> None:
        """Ask the next cycle to confirm ``job_id`` with a GET."""
        self.checks.add(job_id)

    def last_received(self, root: str) -> int:
        """The highest sequence received from ``root``'s stream (-1: none)."""
        state = self.roots.get(root)
        return state.received if state is not None else -1

    def resume_at(self, root: str, committed: int | None) -> int:
        """Where ``root``'s stream goes on: after what was committed and what this process
        already holds."""
        state = self.roots.get(root)
        received = state.received if state is not None else -1
        return max(received, committed if committed is not None else -1) + 1

    def take(self, committed: Mapping[str, int]) -> Taken:
        """The events not covered by ``committed`` (forgotten here once covered), and the
        positions a commit of them reaches."""
        events: dict[str, list[StreamEvent]] = {}
        positions: dict[str, int] = {}
        for root, state in self.roots.items():
            done = committed.get(root, -1)
            for sequence in [s for s in state.events if s <= done]:
                del state.events[sequence]
            for event in state.events.values():
                events.setdefault(event.job_id, []).append(event)
            if state.received > done:
                positions[root] = state.received
        for found in events.values():
            found.sort(key=lambda e: e.sequence)
        checks, self.checks = self.checks, set()
        return Taken(events, checks, positions)

    def forget(self, roots: Sequence[str]) -> None:
        """Roots no longer followed."""
        for root in roots:
            self.roots.pop(root, None)


class Follower:
    """The streams of one source: which are open, reconnecting, refused."""

    def __init__(
        self,
        api: ApiClient,
        hints: Hints,
        *,
        max_streams: int,
        idle_timeout: float,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.api = api
        self.hints = hints
        self.max_streams = max_streams
        self.idle_timeout = idle_timeout
        self.sleep = sleep
        self.wanted: list[str] = []  # roots to follow, most wanted first (set by polls)
        self.open: set[str] = set()  # roots whose stream is connected
        self.refused: dict[str, float] = {}  # root -> monotonic time it may be tried again
        self.problem: str | None = None  # what degrades the source, until a stream opens
        self.failures = 0  # connection failures in a row, across roots
        self.connects = 0
        self._checked: dict[str, float] = {}

    def follow(self, roots: Sequence[str]) -> None:
        """The roots to follow, most wanted first (the first ``max_streams`` get a stream)."""
        self.wanted = list(roots)

    async def run(
        self, load_cursor: Callable[[], Awaitable[Cursor]], nudge: Callable[[], None]
    ) -> None:
        """Keep a stream open for each wanted root until cancelled."""
        async with (
            httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=max(1, self.max_streams), max_keepalive_connections=0
                ),
                follow_redirects=False,
                trust_env=False,
            ) as client,
            anyio.create_task_group() as tg,
        ):
            running: dict[str, anyio.CancelScope] = {}
            try:
                while True:
                    now = time.monotonic()
                    chosen = [r for r in self.wanted if self.refused.get(r, 0.0) <= now]
                    chosen = chosen[: self.max_streams]
                    for root in set(running) - set(chosen):
                        running.pop(root).cancel()
                    for root in chosen:
                        if root not in running:
                            scope = anyio.CancelScope()
                            running[root] = scope
                            tg.start_soon(
                                self._guarded, scope, client, root, load_cursor, nudge, running
                            )
                    await anyio.sleep(RECONCILE_EVERY)
            finally:
                tg.cancel_scope.cancel()

    async def _guarded(
        self,
        scope: anyio.CancelScope,
        client: httpx.AsyncClient,
        root: str,
        load_cursor: Callable[[], Awaitable[Cursor]],
        nudge: Callable[[], None],
        running: dict[str, anyio.CancelScope],
    ) -> None:
        with scope:
            try:
                await self._follow(client, root, load_cursor, nudge)
            except Exception:  # a bug must not stop the other streams, nor the daemon
                log.exception("stream_crashed", source=self.api.source, root=root)
                await self.sleep(5.0)
        self.open.discard(root)
        if running.get(root) is scope:
            del running[root]

    async def _follow(
        self,
        client: httpx.AsyncClient,
        root: str,
        load_cursor: Callable[[], Awaitable[Cursor]],
        nudge: Callable[[], None],
    ) -> None:
        attempt = 0
        retry_ms: int | None = None
        last = -1  # what this task received: a resume never goes back before it
        while root in self.wanted:
            committed = (await load_cursor()).streams.get(root)
            start = max(self.hints.resume_at(root, committed), last + 1)
            params: dict[str, Any] = {"root_workflow_exec_id": root, "start_seq": start}
            try:
                async with self.api.stream(
                    client, STREAM_PATH, params, route="stream", idle_timeout=self.idle_timeout
                ) as events:
                    self._opened(root, start)
                    attempt = 0
                    guard = _Bounded(events.response.stream)
                    events.response.stream = guard
                    async for sse in events:
                        guard.mark()
                        if sse.retry is not None:
                            retry_ms = sse.retry
                        if sse.event == "error":
                            self._error_frame(root, sse.data)
                            break
                        if sse.data and self._take(root, sse.data):
                            nudge()
                        last = max(last, self.hints.last_received(root))
                self._ended(root, nudge)
            except _TooLarge:
                self._refuse(root, f"an event larger than {MAX_EVENT_BYTES} bytes")
                return
            except StreamRefused as exc:
                self._refuse(root, str(exc))
                return
            except (SourceAuthError, SourceRetired) as exc:
                self._refuse(root, str(exc))
                return
            except httpx.ReadTimeout:
                log.info("stream_idle", source=self.api.source, root=root)
                self._ended(root, nudge)
            except (SourceError, httpx.TransportError) as exc:
                self._failed(root, exc)
            finally:
                self.open.discard(root)
            delay = backoff(attempt, base=0.5, cap=30.0)
            if retry_ms is not None and attempt == 0:
                delay = min(max(retry_ms / 1000, 0.0), 30.0)
            attempt += 1
            await self.sleep(delay)

    def _opened(self, root: str, start: int) -> None:
        self.open.add(root)
        self.connects += 1
        log.debug("stream_opened", source=self.api.source, root=root, start_seq=start)

    def _healthy(self, root: str) -> None:
        """A stream delivered an event: failures in a row end; the source is no longer
        degraded unless a refused stream is still held back."""
        self.failures = 0
        held = [r for r, until in self.refused.items() if until > time.monotonic()]
        if self.problem is not None and not held:
            log.warning("streams_recovered", source=self.api.source, root=root)
            self.problem = None

    def _take(self, root: str, data: str) -> bool:
        """One frame's data; whether it is news worth a poll now."""
        try:
            event = parse_frame(data)
        except MalformedItem as exc:
            log.warning("stream_frame_unusable", source=self.api.source, root=root, reason=str(exc))
            return False
        if event is None:
            return False
        self._healthy(root)
        return self.hints.add(root, event)

    def _error_frame(self, root: str, data: str) -> None:
        log.warning("stream_error_frame", source=self.api.source, root=root, data=data[:200])
        self.failures += 1
        if self.failures >= FAILURES_TO_REPORT:
            self._degrade(f"event streams keep failing: error frame {data[:200]}")

    def _ended(self, root: str, nudge: Callable[[], None]) -> None:
        """The stream ended (or went quiet): a poll confirms what became of the execution
        (TERMINATED and TIMED_OUT have no event)."""
        now = time.monotonic()
        if now - self._checked.get(root, -math.inf) >= CHECK_EVERY:
            self._checked[root] = now
            self.hints.check(root)
            nudge()

    def _failed(self, root: str, exc: Exception) -> None:
        self.failures += 1
        log.info("stream_failed", source=self.api.source, root=root, error=str(exc)[:200])
        if self.failures >= FAILURES_TO_REPORT:
            self._degrade(f"event streams keep failing: {str(exc)[:200]}")

    def _refuse(self, root: str, reason: str) -> None:
        self.refused[root] = time.monotonic() + REFUSED_HOLD
        self._degrade(f"the event stream was refused: {reason[:200]}")

    def _degrade(self, reason: str) -> None:
        if self.problem is None:
            log.error("streams_degraded", source=self.api.source, reason=reason)
        self.problem = reason
