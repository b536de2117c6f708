"""The one way a transition enters the outbox: route it, commit it, count it, wake the
dispatcher.

Every producer of transitions goes through a :class:`Recorder`: a source's poll cycle
(snapshots, cursor and outbox rows in ONE guarded transaction), the time rules (alert states
and outbox rows in one transaction) and what belongs to no source's cycle (digest,
heartbeat). A transition no route matches is recorded all the same, bound for no sink.
Transitions are counted once, after their commit is done; the dispatcher is woken only when
the commit added a delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import anyio

from watcher.abc import AlertStore, Outbox, SnapshotStore
from watcher.detect.routing import Router
from watcher.model.outbox import AlertState, Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition


class RecordStore(SnapshotStore, AlertStore, Outbox, Protocol):
    """The parts of the store that recording writes to."""


class RecordMetrics(Protocol):
    """What recording counts (:class:`watcher.app.metrics.Metrics` provides it)."""

    def transitions_recorded(self, transitions: Iterable[Transition]) -> None: ...


def _nothing() -> None:
    pass


class Recorder:
    """Routes transitions, commits them with what they belong to, counts them and wakes the
    dispatcher."""

    def __init__(
        self,
        store: RecordStore,
        router: Router,
        *,
        metrics: RecordMetrics | None = None,
        wake: Callable[[], None] = _nothing,
    ) -> None:
        self.store = store
        self.router = router
        self.metrics = metrics
        self.wake = wake

    def route(self, transitions: Iterable[Transition], now: float) -> list[Routed]:
        """Each transition with the sinks its routes reach (possibly none)."""
        return [Routed(t, self.router.sinks_for(t, now)) for t in transitions]

    async def cycle(
        self,
        source: str,
        cursor: Cursor,
        snapshots: Sequence[Snapshot],
        transitions: Sequence[Transition],
        *,
        now: float,
        polled: bool = True,
        expect: int | None = None,
    ) -> int:
        """A source's cycle (or part of one): snapshots, ``cursor`` and the outbox rows of
        ``transitions`` in ONE transaction, refused with
        :class:`~watcher.exceptions.StaleCycle` if the source was committed since version
        ``expect``. Shielded: a stop request lets the commit finish instead of rolling it
        back. Returns how many deliveries it added."""
        routed = self.route(transitions, now)
        with anyio.CancelScope(shield=True):
            added = await self.store.commit(
                source, cursor, snapshots, routed, now=now, polled=polled, expect=expect
            )
        self._done(routed, added)
        return added

    async def alerts(
        self,
        source: str,
        states: Sequence[AlertState],
        transitions: Sequence[Transition],
        *,
        now: float,
    ) -> int:
        """Alert states and the outbox rows of ``transitions``, in ONE transaction."""
        routed = self.route(transitions, now)
        added = await self.store.save_alerts(source, states, routed, now=now)
        self._done(routed, added)
        return added

    async def outbox(
        self,
        transitions: Sequence[Transition],
        *,
        now: float,
        sinks: Sequence[str] | None = None,
    ) -> int:
        """Transitions that belong to no source's cycle (digest, heartbeat): routed, or
        bound for ``sinks`` when given."""
        if sinks is None:
            routed = self.route(transitions, now)
        else:
            routed = [Routed(t, list(sinks)) for t in transitions]
        added = await self.store.enqueue(routed, now=now)
        self._done(routed, added)
        return added

    def _done(self, routed: Sequence[Routed], added: int) -> None:
        """Count what was committed; wake the dispatcher if there is something to send."""
        if self.metrics is not None:
            self.metrics.transitions_recorded(r.transition for r in routed)
        if added:
            self.wake()
