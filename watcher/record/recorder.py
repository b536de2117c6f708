"""The one way a transition enters the outbox: route it, commit it, count it, wake the
dispatcher.

Every producer of transitions goes through a :class:`Recorder`: a source's poll cycle
(snapshots, cursor and outbox rows in ONE guarded transaction), the time rules (alert states
and outbox rows in one transaction) and what belongs to no source's cycle (digest,
heartbeat). A transition no route matches is recorded all the same, bound for no sink.
Transitions are counted once, after their commit is done; the dispatcher is woken only when
the commit added a delivery.

Active silences (:mod:`watcher.record.silences`) are honoured on every path: a transition
one matches is recorded with its deliveries ``silenced``, sent nowhere. A transition that
ends an "until resolved" silence (its job ended, its alert resolved) is not silenced by it;
once committed, the silence is ended and that is audited (``watcher.action.silence_expired``
by watcher).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import anyio
import structlog

from watcher.abc import AlertStore, Outbox, SilenceStore, SnapshotStore
from watcher.detect.routing import Router
from watcher.detect.silencing import ending, silenced_by
from watcher.model import types
from watcher.model.outbox import AlertState, Routed
from watcher.model.silences import Silence
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition
from watcher.record.silences import WATCHER, SilenceCache, audit, logged

log = structlog.get_logger(__name__)


class RecordStore(SnapshotStore, AlertStore, Outbox, SilenceStore, Protocol):
    """The parts of the store that recording writes to (and the silences it honours)."""


class RecordMetrics(Protocol):
    """What recording counts (:class:`watcher.app.metrics.Metrics` provides it)."""

    def transitions_recorded(self, transitions: Iterable[Transition]) -> None: ...

    def transitions_silenced(self, count: int) -> None: ...


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
        self.silences = SilenceCache(store)

    def route(
        self, transitions: Iterable[Transition], now: float, silences: Sequence[Silence] = ()
    ) -> list[Routed]:
        """Each transition with the sinks its routes reach (possibly none), and the silence
        among ``silences`` that keeps it from them, if one does."""
        return [
            Routed(t, self.router.sinks_for(t, now), silenced_by(silences, t, now))
            for t in transitions
        ]

    async def _route(
        self, transitions: Sequence[Transition], now: float, sinks: Sequence[str] | None = None
    ) -> tuple[list[Routed], dict[str, tuple[Silence, str]]]:
        """:meth:`route` under the active silences (or bound for ``sinks``, silenced all the
        same), and the "until resolved" silences these transitions end (id -> silence, why)."""
        silences = await self.silences.get(now) if transitions else []
        if sinks is None:
            routed = self.route(transitions, now, silences)
        else:
            routed = [Routed(t, list(sinks), silenced_by(silences, t, now)) for t in transitions]
        ends: dict[str, tuple[Silence, str]] = {}
        for silence in silences:
            for t in transitions:
                if silence.id not in ends and (why := ending(silence, t)) is not None:
                    ends[silence.id] = (silence, why)
        return routed, ends

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
        routed, ends = await self._route(transitions, now)
        with anyio.CancelScope(shield=True):
            added = await self.store.commit(
                source, cursor, snapshots, routed, now=now, polled=polled, expect=expect
            )
            self._done(routed, added)
            await self._end(ends, now)
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
        routed, ends = await self._route(transitions, now)
        added = await self.store.save_alerts(source, states, routed, now=now)
        self._done(routed, added)
        await self._end(ends, now)
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
        routed, ends = await self._route(transitions, now, sinks)
        added = await self.store.enqueue(routed, now=now)
        self._done(routed, added)
        await self._end(ends, now)
        return added

    async def _end(self, ends: dict[str, tuple[Silence, str]], now: float) -> None:
        """End the "until resolved" silences whose job ended or whose alert resolved, and
        audit it; a silence another replica ended first is left to that one's audit."""
        audits = []
        for silence, why in ends.values():
            ended = await self.store.expire_silence(silence.id, now=now, by=WATCHER, reason=why)
            if ended is None:
                continue
            logged("silence_expired", ended, by=WATCHER, reason=why)
            audits.append(
                audit(ended, types.ACTION_SILENCE_EXPIRED, by=WATCHER, at=now, reason=why)
            )
        if audits:
            self.silences.forget()
            await self.outbox(audits, now=now)

    def _done(self, routed: Sequence[Routed], added: int) -> None:
        """Count what was committed; wake the dispatcher if there is something to send."""
        quiet = [r for r in routed if r.silenced_by is not None]
        for r in quiet:
            t = r.transition
            log.info(
                "transition_silenced",
                type=t.type,
                source=t.source,
                job_id=t.job_id,
                silence=r.silenced_by,
            )
        if self.metrics is not None:
            self.metrics.transitions_recorded(r.transition for r in routed)
            if quiet:
                self.metrics.transitions_silenced(len(quiet))
        if added:
            self.wake()
