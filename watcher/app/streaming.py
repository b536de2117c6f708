"""The event streams of the sources that have them (:class:`~watcher.abc.Follows`), run
while this replica owns the source and stopped the moment it does not: on PostgreSQL with
several replicas, each stream is consumed by the replica that polls its source, and another
one resumes it from the committed positions after a takeover."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import anyio
import structlog

from watcher.abc import CursorReader, Follows, Ownership, Source

log = structlog.get_logger(__name__)

RECONCILE_EVERY = 1.0  # seconds between looks at what this replica owns


class StreamMetrics(Protocol):
    def streams_open(self, source: str, count: int) -> None: ...


class Streaming:
    """Starts and stops each following source's streams with its ownership."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        ownership: Ownership,
        store: CursorReader,
        nudge: Callable[[str], None],
        *,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.followers = {n: s for n, s in sources.items() if isinstance(s, Follows)}
        self.ownership = ownership
        self.store = store
        self.nudge = nudge
        self.metrics = metrics
        self.running: dict[str, anyio.CancelScope] = {}

    async def run(self) -> None:
        """Until cancelled."""
        if not self.followers:
            return
        async with anyio.create_task_group() as tg:
            while True:
                owned = self.ownership.owned
                for name, source in self.followers.items():
                    if name in owned and name not in self.running:
                        scope = anyio.CancelScope()
                        self.running[name] = scope
                        tg.start_soon(self._follow, name, source, scope)
                    elif name not in owned and name in self.running:
                        log.info("streams_stopped", source=name, reason="the source is not ours")
                        self.running.pop(name).cancel()
                    if self.metrics is not None:
                        count = source.streams_open() if name in self.running else 0
                        self.metrics.streams_open(name, count)
                await anyio.sleep(RECONCILE_EVERY)

    async def _follow(self, name: str, source: Follows, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                await source.follow(lambda: self.store.load_cursor(name), lambda: self.nudge(name))
            except Exception:
                log.exception("streams_crashed", source=name)
        if self.running.get(name) is scope:
            del self.running[name]
