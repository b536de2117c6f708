"""The store over SQLAlchemy 2 Core (async): snapshots, cursors and the outbox."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watcher.abc import (
    AlertState,
    Cursor,
    DeliveryRow,
    Envelope,
    PendingDelivery,
    Routed,
    StoreStatus,
)
from watcher.exceptions import StaleCycle
from watcher.model.snapshot import Snapshot
from watcher.model.transitions import Transition
from watcher.stores import migrations
from watcher.stores.schema import (
    alerts,
    cursors,
    deliveries,
    sink_state,
    snapshots,
    transitions,
)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

log = structlog.get_logger(__name__)


def _brief(exc: sa.exc.DBAPIError) -> str:
    """The driver's own message, without SQLAlchemy's SQL and parameters (no data leaks
    into logs or /readyz)."""
    return f"{type(exc.orig).__name__}: {exc.orig}"[:200]


def _cursor(data: dict[str, Any], version: int) -> Cursor:
    state = {k: v for k, v in data.items() if k != "version"}  # the column is the truth
    return Cursor(**state, version=version)


class SqlStore:
    """Implements :class:`watcher.abc.Store` for any database SQLAlchemy Core speaks with
    ``INSERT … ON CONFLICT`` (SQLite, PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # One writer at a time inside this process: SQLite has one write lock anyway, and
        # queueing here is cheaper than BUSY retries.
        self._write = anyio.Lock()
        self.write_error: str | None = None  # why the last write failed, until one succeeds
        self._write_failing_since: float | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. A failing one (disk full or read-only, database down) is
        remembered in :attr:`write_error` for the readiness check, and logged once per
        spell rather than once per attempt; the first success after it says so."""
        async with self._write:
            try:
                async with self.engine.begin() as conn:
                    yield conn
            except sa.exc.DBAPIError as exc:
                if self.write_error is None:
                    self._write_failing_since = time.time()
                    log.error("store_unwritable", error=_brief(exc))
                self.write_error = _brief(exc)
                raise
            if self.write_error is not None:
                down = time.time() - (self._write_failing_since or time.time())
                log.warning("store_writable_again", down_seconds=round(down, 1))
                self.write_error = None

    def _insert(self, table: sa.Table) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    async def open(self) -> None:
        """Ready the database: apply pending migrations."""
        await self.migrate()

    async def migrate(self) -> str:
        """Bring the schema to the newest revision (Alembic ``upgrade head``) in one
        transaction; returns that revision."""
        async with self.engine.begin() as conn, self._migrating(conn):
            return await conn.run_sync(migrations.upgrade)

    @asynccontextmanager
    async def _migrating(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Keep other migrations of this database out while ``conn`` migrates it. SQLite
        serves one process: only other stores of this process, which must not interleave
        anyway (Alembic keeps its running context in module globals)."""
        async with migrations.process_lock():
            yield

    async def aclose(self) -> None:
        await self.engine.dispose()

    # --- snapshots and cursors ------------------------------------------------------------

    async def load_cursor(self, source: str) -> Cursor:
        query = sa.select(cursors.c.data, cursors.c.version).where(cursors.c.source == source)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _cursor(row.data, row.version) if row else Cursor()

    @staticmethod
    def _snapshot(source: str, row: Any) -> Snapshot:
        return Snapshot.from_json(source, row.job_id, row.data, terminal=row.terminal)

    async def active_snapshots(self, source: str) -> dict[str, Snapshot]:
        query = sa.select(snapshots.c.job_id, snapshots.c.data, snapshots.c.terminal).where(
            snapshots.c.source == source, snapshots.c.terminal.is_(False)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row.job_id: self._snapshot(source, row) for row in rows}

    async def get_snapshots(self, source: str, job_ids: Sequence[str]) -> dict[str, Snapshot]:
        out: dict[str, Snapshot] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(job_ids), 500):
                chunk = list(job_ids[start : start + 500])
                query = sa.select(snapshots.c.job_id, snapshots.c.data, snapshots.c.terminal).where(
                    snapshots.c.source == source, snapshots.c.job_id.in_(chunk)
                )
                for row in (await conn.execute(query)).all():
                    out[row.job_id] = self._snapshot(source, row)
        return out

    async def commit(
        self,
        source: str,
        cursor: Cursor,
        snapshot_list: Sequence[Snapshot],
        routed: Sequence[Routed],
        *,
        now: float,
        polled: bool = True,
        expect: int | None = None,
    ) -> int:
        async with self._writing() as conn:
            # The cursor first: a stale cycle is refused before anything else is written,
            # and on PostgreSQL the row lock it takes orders concurrent commits of a source.
            await self._put_cursor(conn, source, cursor, now=now, polled=polled, expect=expect)
            if snapshot_list:
                stmt = self._insert(snapshots)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[snapshots.c.source, snapshots.c.job_id],
                    set_={
                        "status": stmt.excluded.status,
                        "terminal": stmt.excluded.terminal,
                        "data": stmt.excluded.data,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
                await conn.execute(
                    stmt,
                    [
                        {
                            "source": source,
                            "job_id": s.job_id,
                            "status": s.status[:128],
                            "terminal": s.terminal,
                            "data": s.to_json(),
                            "updated_at": now,
                        }
                        for s in snapshot_list
                    ],
                )
            return await self._enqueue(conn, routed, now)

    async def _put_cursor(
        self,
        conn: AsyncConnection,
        source: str,
        cursor: Cursor,
        *,
        now: float,
        polled: bool,
        expect: int | None,
    ) -> None:
        data = asdict(cursor)
        del data["version"]
        stmt = self._insert(cursors).values(
            source=source, data=data, last_poll_at=now if polled else 0.0, version=1
        )
        updates: dict[str, Any] = {
            "data": stmt.excluded.data,
            "version": cursors.c.version + 1,
        }
        if polled:
            updates["last_poll_at"] = stmt.excluded.last_poll_at
        guard = cursors.c.version == expect if expect is not None else None
        stmt = stmt.on_conflict_do_update(
            index_elements=[cursors.c.source], set_=updates, where=guard
        ).returning(cursors.c.version)
        if (await conn.execute(stmt)).scalar_one_or_none() is None:
            raise StaleCycle(source, expect if expect is not None else -1)

    async def _enqueue(self, conn: AsyncConnection, routed: Sequence[Routed], now: float) -> int:
        added = 0
        for item in routed:
            t = item.transition
            stmt = (
                self._insert(transitions)
                .values(
                    id=t.id,
                    source=t.source,
                    job_id=t.job_id,
                    type=t.type[:128],
                    body=t.to_json(),
                    detected_at=now,
                )
                .on_conflict_do_nothing(index_elements=[transitions.c.id])
                .returning(transitions.c.seq)
            )
            seq = (await conn.execute(stmt)).scalar_one_or_none()
            if seq is None or not item.sinks:
                continue  # already in the outbox (re-detected after a crash), or unrouted
            await conn.execute(
                sa.insert(deliveries),
                [
                    {
                        "seq": seq,
                        "sink": sink,
                        "job_key": f"{t.source}/{t.job_id or t.id}",
                        "state": PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for sink in item.sinks
                ],
            )
            added += len(item.sinks)
        return added

    async def enqueue(self, routed: Sequence[Routed], *, now: float) -> int:
        """Outbox rows that belong to no source's cycle (digest, heartbeat)."""
        async with self._writing() as conn:
            return await self._enqueue(conn, routed, now)

    async def transitions_between(self, start: float, end: float) -> list[tuple[Transition, float]]:
        """Transitions detected in ``[start, end)``, in detection order, with that time."""
        query = (
            sa.select(transitions.c.body, transitions.c.detected_at)
            .where(transitions.c.detected_at >= start, transitions.c.detected_at < end)
            .order_by(transitions.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(Transition.from_json(row.body), row.detected_at) for row in rows]

    # --- deliveries -----------------------------------------------------------------------

    @staticmethod
    def _waits_behind(table: sa.FromClause = deliveries) -> sa.Exists:
        """An earlier delivery of the same job to the same sink is still pending."""
        earlier = deliveries.alias("earlier")
        return (
            sa.exists()
            .where(
                earlier.c.sink == table.c.sink,
                earlier.c.job_key == table.c.job_key,
                earlier.c.state == PENDING,
                earlier.c.seq < table.c.seq,
            )
            .correlate(table)
        )

    @staticmethod
    def _unclaimed(now: float, table: sa.FromClause = deliveries) -> sa.ColumnElement[bool]:
        """No replica holds the delivery (never claimed, released, or the lease expired)."""
        return sa.or_(table.c.claim_until.is_(None), table.c.claim_until <= now)

    async def pending(
        self, *, now: float, limit: int, sinks: Collection[str] | None = None
    ) -> list[PendingDelivery]:
        waits_behind = self._waits_behind()
        query = (
            sa.select(
                deliveries.c.seq,
                deliveries.c.sink,
                deliveries.c.attempts,
                deliveries.c.next_attempt_at,
                deliveries.c.created_at,
                transitions.c.body,
                transitions.c.detected_at,
            )
            .join(transitions, transitions.c.seq == deliveries.c.seq)
            .where(
                deliveries.c.state == PENDING,
                deliveries.c.next_attempt_at <= now,
                self._unclaimed(now),
                ~waits_behind,
            )
            .order_by(deliveries.c.seq, deliveries.c.sink)
            .limit(limit)
        )
        if sinks is not None:
            query = query.where(deliveries.c.sink.in_(list(sinks)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            PendingDelivery(
                seq=row.seq,
                envelope=Envelope(
                    transition=Transition.from_json(row.body), detected_at=row.detected_at
                ),
                sink=row.sink,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def claim(
        self, keys: Sequence[tuple[int, str]], *, owner: str, until: float, now: float
    ) -> set[tuple[int, str]]:
        """``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a replica skips the rows another one is
        claiming at this instant, and the lease then keeps them out of everyone's way.
        (SQLite serves one process: its write lock serializes claims anyway.)"""
        if not keys:
            return set()
        # One statement, so that the check and the claim are one step: the subquery picks
        # what is free (skipping rows another replica is claiming this instant), the update
        # takes it; an alias, so that the subquery is not correlated to the updated table.
        free = deliveries.alias("free")
        wanted = sa.tuple_(free.c.seq, free.c.sink).in_([tuple(k) for k in keys])
        picked = (
            sa.select(free.c.seq, free.c.sink)
            .where(
                wanted,
                free.c.state == PENDING,
                self._unclaimed(now, free),
                ~self._waits_behind(free),
            )
            .with_for_update(skip_locked=True)
        )
        stmt = (
            sa.update(deliveries)
            .where(sa.tuple_(deliveries.c.seq, deliveries.c.sink).in_(picked))
            .values(claimed_by=owner[:128], claim_until=until)
            .returning(deliveries.c.seq, deliveries.c.sink)
        )
        async with self._writing() as conn:
            return {(row.seq, row.sink) for row in await conn.execute(stmt)}

    async def release(self, owner: str | None) -> int:
        stmt = (
            sa.update(deliveries)
            .where(deliveries.c.state == PENDING, deliveries.c.claimed_by.is_not(None))
            .values(claimed_by=None, claim_until=None)
        )
        if owner is not None:
            stmt = stmt.where(deliveries.c.claimed_by == owner[:128])
        async with self._writing() as conn:
            return (await conn.execute(stmt)).rowcount or 0

    async def next_due(self, *, sinks: Collection[str] | None = None) -> float | None:
        # A claimed delivery is due (to anyone else) when its lease runs out.
        due = sa.case(
            (deliveries.c.claim_until > deliveries.c.next_attempt_at, deliveries.c.claim_until),
            else_=deliveries.c.next_attempt_at,
        )
        query = sa.select(sa.func.min(due)).where(
            deliveries.c.state == PENDING, ~self._waits_behind()
        )
        if sinks is not None:
            query = query.where(deliveries.c.sink.in_(list(sinks)))
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return float(value) if value is not None else None

    async def delivered(self, seq: int, sink: str, *, now: float) -> None:
        await self.delivered_all([(seq, sink)], now=now)

    async def delivered_all(self, keys: Sequence[tuple[int, str]], *, now: float) -> None:
        if not keys:
            return
        stmt = (
            sa.update(deliveries)
            .where(
                sa.tuple_(deliveries.c.seq, deliveries.c.sink).in_([tuple(k) for k in keys]),
                deliveries.c.state == PENDING,
            )
            .values(
                state=DELIVERED,
                attempts=deliveries.c.attempts + 1,
                updated_at=now,
                last_error=None,
                claimed_by=None,
                claim_until=None,
            )
        )
        async with self._writing() as conn:
            await conn.execute(stmt)

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
        values: dict[str, Any] = {"updated_at": now, "last_error": error[:500]}
        if retry_at is None:
            values["state"] = DEAD
        else:
            values["next_attempt_at"] = retry_at
        stmt = sa.update(deliveries).where(
            deliveries.c.seq == seq,
            deliveries.c.sink == sink,
            deliveries.c.state == PENDING,
        )
        if owner is not None:
            # A replica whose lease ran out while it sent reports nothing over the claim of
            # the replica that took the delivery since (that one will say how it went).
            mine = sa.or_(deliveries.c.claimed_by.is_(None), deliveries.c.claimed_by == owner[:128])
            stmt = stmt.where(mine)
        stmt = stmt.values(
            attempts=deliveries.c.attempts + 1, claimed_by=None, claim_until=None, **values
        )
        async with self._writing() as conn:
            await conn.execute(stmt)

    async def prune(self, *, before: float) -> int:
        """Forget delivered deliveries, and transitions left with none, older than
        ``before``; dead-lettered ones stay for someone to look at. Returns the transitions
        removed."""
        async with self._writing() as conn:
            await conn.execute(
                sa.delete(deliveries).where(
                    deliveries.c.state == DELIVERED, deliveries.c.updated_at < before
                )
            )
            orphan = ~sa.exists().where(deliveries.c.seq == transitions.c.seq)
            result = await conn.execute(
                sa.delete(transitions).where(transitions.c.detected_at < before, orphan)
            )
            return result.rowcount or 0

    async def open_alerts(self, source: str) -> list[AlertState]:
        query = sa.select(alerts).where(alerts.c.source == source, alerts.c.resolved_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            AlertState(
                id=row.id,
                source=row.source,
                job_id=row.job_id,
                rule=row.rule,
                fired_at=row.fired_at,
                last_sent_at=row.last_sent_at,
                repeats=row.repeats,
                resolved_at=row.resolved_at,
                data=row.data,
            )
            for row in rows
        ]

    async def save_alerts(
        self, source: str, states: Sequence[AlertState], routed: Sequence[Routed], *, now: float
    ) -> int:
        async with self._writing() as conn:
            if states:
                stmt = self._insert(alerts)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[alerts.c.id],
                        set_={
                            "last_sent_at": stmt.excluded.last_sent_at,
                            "repeats": stmt.excluded.repeats,
                            "resolved_at": stmt.excluded.resolved_at,
                            "data": stmt.excluded.data,
                        },
                    ),
                    [
                        {
                            "id": a.id,
                            "source": a.source,
                            "job_id": a.job_id,
                            "rule": a.rule,
                            "fired_at": a.fired_at,
                            "last_sent_at": a.last_sent_at,
                            "repeats": a.repeats,
                            "resolved_at": a.resolved_at,
                            "data": dict(a.data),
                        }
                        for a in states
                    ],
                )
            return await self._enqueue(conn, routed, now)

    async def get_sink_state(self, sink: str, key: str) -> str | None:
        query = sa.select(sink_state.c.value).where(
            sink_state.c.sink == sink, sink_state.c.key == key[:330]
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return str(value) if value is not None else None

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        stmt = self._insert(sink_state)
        async with self._writing() as conn:
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[sink_state.c.sink, sink_state.c.key],
                    set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
                ),
                {"sink": sink, "key": key[:330], "value": value[:1000], "updated_at": time.time()},
            )

    async def list_deliveries(self, *, state: str | None, limit: int) -> list[DeliveryRow]:
        """Deliveries, newest first, optionally of one state (pending, delivered, dead)."""
        query = (
            sa.select(
                deliveries,
                transitions.c.id.label("transition_id"),
                transitions.c.type,
                transitions.c.source,
                transitions.c.job_id,
            )
            .join(transitions, transitions.c.seq == deliveries.c.seq)
            .order_by(deliveries.c.seq.desc(), deliveries.c.sink)
            .limit(limit)
        )
        if state is not None:
            query = query.where(deliveries.c.state == state)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DeliveryRow(
                transition_id=row.transition_id, type=row.type, source=row.source,
                job_id=row.job_id, sink=row.sink, state=row.state, attempts=row.attempts,
                next_attempt_at=row.next_attempt_at, created_at=row.created_at,
                updated_at=row.updated_at, last_error=row.last_error,
            )
            for row in rows
        ]  # fmt: skip

    async def retry_dead(self, transition_id: str | None, *, now: float) -> int:
        """Put dead-lettered deliveries (of one transition, or all) back in the queue, with a
        fresh max age. Returns how many."""
        stmt = sa.update(deliveries).where(deliveries.c.state == DEAD)
        if transition_id is not None:
            seqs = sa.select(transitions.c.seq).where(transitions.c.id == transition_id)
            stmt = stmt.where(deliveries.c.seq.in_(seqs.scalar_subquery()))
        stmt = stmt.values(
            state=PENDING,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            claimed_by=None,
            claim_until=None,
        )
        async with self._writing() as conn:
            return (await conn.execute(stmt)).rowcount or 0

    async def status(self) -> StoreStatus:
        out = StoreStatus()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(snapshots.c.source, snapshots.c.status, sa.func.count()).group_by(
                    snapshots.c.source, snapshots.c.status
                )
            )
            for source, status, count in rows:
                out.jobs_by_source.setdefault(source, {})[status] = count
            for row in await conn.execute(sa.select(cursors)):
                out.cursors[row.source] = _cursor(row.data, row.version)
                out.last_poll_at[row.source] = row.last_poll_at
            for state, count, oldest in await conn.execute(
                sa.select(
                    deliveries.c.state, sa.func.count(), sa.func.min(deliveries.c.created_at)
                ).group_by(deliveries.c.state)
            ):
                if state == PENDING:
                    out.pending, out.oldest_pending_at = count, oldest
                elif state == DEAD:
                    out.dead = count
                elif state == DELIVERED:
                    out.delivered = count
        return out
