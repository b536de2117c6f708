"""The state store's parts, one Protocol per client (the poll pipeline, the dispatcher,
alerting, sinks, the digest, the admin views, readiness), and :class:`Store`, all of them.

One implementation today (:mod:`watcher.stores.sql`, over SQLite or PostgreSQL); each client
is typed with the narrowest part it uses.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from watcher.model.outbox import (
    AlertState,
    DeliveryRow,
    PendingDelivery,
    Routed,
    StoreStatus,
)
from watcher.model.pages import DeliveriesView, JobHistory, Overview
from watcher.model.silences import Silence
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.transitions import Transition


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

    async def claimants(self) -> set[str]:
        """The owners holding claims on pending deliveries now."""
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
        """Forget delivered (and silenced) deliveries, and transitions left with none, older
        than ``before``; dead-lettered ones stay for someone to look at. Returns the
        transitions removed."""
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
        many deliveries became pending. An acknowledgement the store holds for an alert
        (``data["acknowledged"]``) is kept even if ``alerts`` were read before it."""
        ...

    async def acknowledge_alerts(
        self, job_id: str, *, source: str | None, by: str, now: float
    ) -> list[AlertState]:
        """Mark the job's open alerts that were sent (not a silent baseline's) as
        acknowledged by ``by`` at ``now`` (``data["acknowledged"] = {"by", "at"}``), in
        one transaction; of every source unless ``source`` is given. Returns them, as
        now stored (none: the job has no open alert)."""
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

    async def put_sink_state_once(self, sink: str, key: str, value: str) -> bool:
        """Remember ``value`` under ``key`` unless something is there already: ``True``
        for the one caller (of any replica) that put it."""
        ...

    async def forget_sink_state(self, sink: str, *, before: float) -> int:
        """Forget what ``sink`` put before ``before`` (wall time); returns how many."""
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
        """Deliveries, newest first, optionally of one state (pending, delivered, dead,
        silenced)."""
        ...

    async def retry_dead(self, transition_id: str | None, *, now: float) -> int:
        """Put dead-lettered deliveries (of one transition, or all) back in the queue, with a
        fresh max age. Returns how many."""
        ...

    async def status(self) -> StoreStatus:
        """Tracked jobs by source and status, each source's cursor and last poll, and the
        outbox's counts."""
        ...


class PageViews(Protocol):
    """The status page's reads: one call per page, a few statements each, every one with a
    limit (never one query per row)."""

    async def overview(
        self,
        *,
        source: str | None,
        status: str | None,
        limit: int,
        recent: int,
        offset: int = 0,
    ) -> Overview:
        """Cursors and last polls, the followed jobs (of ``source`` / in ``status`` when
        given; at most ``limit`` after skipping ``offset``, the latest changed first) and
        their total, and the ``recent`` terminal jobs that changed last."""
        ...

    async def job_history(self, source: str, job_id: str, *, limit: int) -> JobHistory:
        """The job as last seen and its last ``limit`` transitions with their deliveries."""
        ...

    async def deliveries_view(self, *, limit: int) -> DeliveriesView:
        """At most ``limit`` pending, dead and silenced deliveries each, and every sink's
        counts."""
        ...


class SilenceStore(Protocol):
    """Runtime silences, shared by every replica through the store."""

    async def add_silence(self, silence: Silence) -> None:
        """Keep ``silence`` (its id is new)."""
        ...

    async def list_silences(self, *, include_ended: bool) -> list[Silence]:
        """Silences, newest first; those that ended (expired, past their end, ended with
        their job) only with ``include_ended``."""
        ...

    async def active_silences(self, now: float) -> list[Silence]:
        """The silences in force at ``now``, oldest first."""
        ...

    async def expire_silence(
        self, silence_id: str, *, now: float, by: str, reason: str
    ) -> Silence | None:
        """End the silence now, if it has not ended yet; returns it as ended, or ``None``
        (no such silence, or it had ended: only one caller ends a silence)."""
        ...


class Readiness(CursorReader, Protocol):
    """What ``/readyz`` asks the store: does it answer, and do its writes go through."""

    @property
    def write_error(self) -> str | None:
        """Why the last write transaction failed, until one succeeds."""
        ...

    @property
    def standing_error(self) -> str | None:
        """A problem successful writes do not end (SQLite: the database file lost and not
        yet written back), until the store itself ends it."""
        ...

    @property
    def notice(self) -> str | None:
        """Something that went wrong and was mended (the file written back): shown by
        ``/readyz``, not a failure."""
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
    PageViews,
    SilenceStore,
    Readiness,
    StoreLifecycle,
    Protocol,
):
    """Everything a state store does (what :func:`watcher.stores.open_store` returns):
    the protocols above, split by client so that each client is typed with the narrowest."""
