"""The extension points: :class:`Source`, :class:`Sink` and :class:`Store`.

Implementations live side by side in ``sources/``, ``sinks/`` and ``stores/`` and never
import each other; the pipeline around them owns retries, routing and commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from watcher.model.jobs import Job
from watcher.model.outbox import (
    AlertState,
    DeliveryRow,
    Envelope,
    PendingDelivery,
    Routed,
    StoreStatus,
)
from watcher.model.snapshot import Cursor, JobKind, Snapshot
from watcher.model.transitions import Transition


@dataclass(frozen=True)
class PollContext:
    """What a source may know of the past when it polls."""

    cursor: Cursor
    active: Mapping[str, Snapshot]  # non-terminal jobs being followed
    now: float
    lookup: Callable[[Sequence[str]], Awaitable[Mapping[str, Snapshot]]]
    # Record these jobs now, with this cursor, before the cycle ends: what is urgent goes
    # out without waiting for the slow part of the cycle (checkpoint sweeps), and a long
    # listing need not be held in memory whole. None: everything comes in the PollResult.
    flush: Callable[[Sequence[Job], Cursor], Awaitable[None]] | None = None


@dataclass
class PollResult:
    """Jobs worth diffing this cycle (changed, new, or detailed for checkpoints)."""

    jobs: list[Job]
    cursor: Cursor
    requests: int = 0
    malformed: int = 0  # items skipped because they could not be read
    # Why the source works in a degraded way (its event streams refused or failing):
    # reported once per spell as ``watcher.source.degraded``. None: all is well.
    degraded: str | None = None


class Source(Protocol):
    name: str
    kind: JobKind
    interval: float

    async def poll(self, ctx: PollContext) -> PollResult:
        """One cycle: what changed since ``ctx`` (the jobs to diff) and the cursor to commit
        with them."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (not the shared HTTP client, which it does not own)."""
        ...


class Sink(Protocol):
    """Formats and delivers; raises :class:`~watcher.exceptions.DeliveryError` on failure.

    Retry, dedup, routing and commits belong to the dispatcher around it.
    """

    name: str

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver ``batch`` (this sink's share of a round, in order); on failure raise
        ``DeliveryError``: what was sent before it was accepted."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds (not the shared HTTP client, which it does not own)."""
        ...


class CursorReader(Protocol):
    async def load_cursor(self, source: str) -> Cursor:
        """The source's cursor as last committed, with the row version it was read at (a
        fresh :class:`Cursor` for a source never committed)."""
        ...


class SnapshotReader(CursorReader, Protocol):
    """What the store remembers of each source's jobs."""

    async def active_snapshots(self, source: str) -> dict[str, Snapshot]:
        """Job id -> snapshot of the source's jobs that are not terminal (those followed)."""
        ...

    async def get_snapshots(self, source: str, job_ids: Sequence[str]) -> dict[str, Snapshot]:
        """The snapshots of those of ``job_ids`` the store knows, terminal or not."""
        ...


class SnapshotStore(SnapshotReader, Protocol):
    """The poll pipeline's side: the past of a source, and each cycle's commit."""

    async def commit(
        self,
        source: str,
        cursor: Cursor,
        snapshots: Sequence[Snapshot],
        routed: Sequence[Routed],
        *,
        now: float,
        polled: bool = True,
        expect: int | None = None,
    ) -> int:
        """Snapshots, cursor and the outbox rows of ``routed``, in ONE transaction.

        ``polled=False`` records a cycle that failed: the last successful poll time stays.
        ``expect``: the cursor version the cycle started from; if another commit of the
        source came in between, nothing is written and
        :class:`~watcher.exceptions.StaleCycle` is raised.

        Returns how many new deliveries became pending (a transition already in the
        outbox, same id, is not inserted twice).
        """
        ...


class Outbox(Protocol):
    """The dispatcher's side (and the daemon's chores): each (transition, sink) delivery,
    from pending to delivered or dead."""

    async def enqueue(self, routed: Sequence[Routed], *, now: float) -> int:
        """Outbox rows that belong to no source's cycle (digest, heartbeat); returns how
        many deliveries became pending."""
        ...

    async def pending(
        self, *, now: float, limit: int, sinks: Collection[str] | None = None
    ) -> list[PendingDelivery]:
        """Pending deliveries due by ``now``, not claimed by a replica, that wait behind no
        earlier pending delivery of the same job to the same sink, oldest transition first
        (``seq`` order); only to ``sinks`` when given."""
        ...

    async def claim(
        self, keys: Sequence[tuple[int, str]], *, owner: str, until: float, now: float
    ) -> set[tuple[int, str]]:
        """Claim the (seq, sink) deliveries of ``keys`` that are still pending, unclaimed
        (or whose claim expired) and first in line, for ``owner`` until ``until``; returns
        those claimed. Two replicas never both claim one delivery."""
        ...

    async def release(self, owner: str | None) -> int:
        """Drop ``owner``'s claims on deliveries still pending (a clean stop); ``None``:
        everyone's (a process alone on its store, starting: claims left are a dead
        process's). Returns how many."""
        ...

    async def next_due(self, *, sinks: Collection[str] | None = None) -> float | None:
        """When the earliest pending delivery (to ``sinks`` when given) is due (``None``:
        nothing pending)."""
        ...

    async def delivered(self, seq: int, sink: str, *, now: float) -> None:
        """The sink accepted this delivery."""
        ...

    async def delivered_all(self, keys: Sequence[tuple[int, str]], *, now: float) -> None:
        """The sink accepted these (seq, sink) deliveries: one transaction."""
        ...

    async def failed(
        self,
        seq: int,
        sink: str,
        *,
        now: float,
        error: str,
        retry_at: float | None,
        owner: str | None = None,
    ) -> None:
        """Record a failed attempt; ``retry_at=None`` moves the delivery to dead-letter.
        With ``owner``: only while the delivery is unclaimed or still ``owner``'s."""
        ...

    async def prune(self, *, before: float) -> int:
        """Forget delivered deliveries, and transitions left with none, older than
        ``before``; dead-lettered ones stay for someone to look at. Returns the transitions
        removed."""
        ...


class AlertStore(SnapshotReader, Protocol):
    """Time-rule alerting's side: the jobs it watches and the alerts it has fired."""

    async def open_alerts(self, source: str) -> list[AlertState]:
        """The source's alerts that are not resolved."""
        ...

    async def save_alerts(
        self, source: str, alerts: Sequence[AlertState], routed: Sequence[Routed], *, now: float
    ) -> int:
        """Alert states and the outbox rows of ``routed``, in ONE transaction; returns how
        many deliveries became pending."""
        ...


class SinkState(Protocol):
    """Small durable memory for sinks (e.g. the Slack thread of each job), kept in the
    store so that it survives restarts. Keys and values are short strings."""

    async def get_sink_state(self, sink: str, key: str) -> str | None:
        """The value ``sink`` last put under ``key`` (``None``: never put)."""
        ...

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        """Remember ``value`` under ``key`` for ``sink`` (replacing what was there)."""
        ...


class DigestLog(Protocol):
    """The digest's side: what was detected over a period, and where the last digest ended
    (so that the next one starts there)."""

    async def transitions_between(self, start: float, end: float) -> list[tuple[Transition, float]]:
        """Transitions detected in ``[start, end)``, in detection order, with that time."""
        ...

    async def last_digest_end(self) -> float | None:
        """The end of the period the last digest covered (``None``: no digest yet)."""
        ...

    async def record_digest_end(self, end: float) -> None:
        """A digest covering up to ``end`` is queued."""
        ...


class AdminViews(Protocol):
    """What operators see and do: ``watcher status``, ``watcher deliveries``, the gauges."""

    async def list_deliveries(self, *, state: str | None, limit: int) -> list[DeliveryRow]:
        """Deliveries, newest first, optionally of one state (pending, delivered, dead)."""
        ...

    async def retry_dead(self, transition_id: str | None, *, now: float) -> int:
        """Put dead-lettered deliveries (of one transition, or all) back in the queue, with a
        fresh max age. Returns how many."""
        ...

    async def status(self) -> StoreStatus:
        """Tracked jobs by source and status, each source's cursor and last poll, and the
        outbox's counts."""
        ...


class Readiness(CursorReader, Protocol):
    """What ``/readyz`` asks the store: does it answer, and do its writes go through."""

    @property
    def write_error(self) -> str | None:
        """Why the last write transaction failed, until one succeeds."""
        ...


class StoreLifecycle(Protocol):
    async def open(self) -> None:
        """Ready the database (apply pending migrations); before any other call."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class Store(
    SnapshotStore,
    Outbox,
    AlertStore,
    SinkState,
    DigestLog,
    AdminViews,
    Readiness,
    StoreLifecycle,
    Protocol,
):
    """Everything a state store does (what :func:`watcher.stores.open_store` returns):
    the protocols above, split by client so that each client is typed with the narrowest."""


class Ownership(Protocol):
    """Which sources this replica polls, and whether it does the chores that must happen
    once per deployment (digests, heartbeats, rate-limited sinks, housekeeping).

    One process alone owns everything; replicas sharing a PostgreSQL database share the
    sources out through advisory locks (:mod:`watcher.app.coordination`).
    """

    @property
    def replica(self) -> str:
        """This replica's name, as status and /readyz show it."""
        ...

    @property
    def owned(self) -> Mapping[str, float]:
        """Source -> wall time this replica took it."""
        ...

    @property
    def leader(self) -> bool:
        """Whether this replica does the once-per-deployment chores."""
        ...

    def owners(self) -> Mapping[str, str | None]:
        """Source -> the replica polling it (``None``: nobody right now), as last seen."""
        ...

    async def run(self, on_acquired: Callable[[str], None], on_lost: Callable[[str], None]) -> None:
        """Keep the share up to date until cancelled; ``on_lost`` is called the moment a
        source stops being ours (its poll must stop), ``on_acquired`` when one becomes ours."""
        ...

    async def take_free(self) -> None:
        """Take every source nobody holds, at once (``watcher once``)."""
        ...

    async def aclose(self) -> None:
        """Release what this replica holds (its locks go with its connection)."""
        ...


@runtime_checkable
class Follows(Protocol):
    """A source that also follows event streams while this replica owns it (Workflows):
    each event wakes a poll cycle of the source, which confirms and records it."""

    async def follow(
        self, load_cursor: Callable[[], Awaitable[Cursor]], nudge: Callable[[], None]
    ) -> None:
        """Follow the streams until cancelled; never raises for a stream's own failures.
        ``load_cursor`` reads the source's committed cursor (where each stream resumes),
        ``nudge`` asks for a poll cycle of the source now."""
        ...

    def streams_open(self) -> int:
        """How many streams are connected now."""
        ...


@runtime_checkable
class CountsFinalErrors(Protocol):
    """A sink that counts its final (not retried) errors by reason, for
    ``watcher_sink_final_errors_total``; reasons are short words, counts only grow."""

    @property
    def final_errors(self) -> Mapping[str, int]:
        """Final errors so far, by reason."""
        ...


@runtime_checkable
class Previews(Protocol):
    """A sink that can show what it would send for a batch, without sending it
    (``watcher render``): a text as is, or a JSON object."""

    def preview(self, batch: Sequence[Envelope]) -> str | dict[str, Any]:
        """What the sink would send for ``batch``: a text as is, or a JSON object."""
        ...
