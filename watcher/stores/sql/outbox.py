"""The outbox: each (transition, sink) delivery from pending to delivered or dead, claimed
by one replica at a time (:class:`watcher.abc.Outbox`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa

from watcher.model.outbox import Envelope, PendingDelivery, Routed
from watcher.model.transitions import Transition
from watcher.stores.schema import DEAD, DELIVERED, PENDING, SILENCED, deliveries, transitions
from watcher.stores.sql.base import SqlBase


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


def _unclaimed(now: float, table: sa.FromClause = deliveries) -> sa.ColumnElement[bool]:
    """No replica holds the delivery (never claimed, released, or the lease expired)."""
    return sa.or_(table.c.claim_until.is_(None), table.c.claim_until <= now)


def _keyed(
    keys: Sequence[tuple[int, str]], table: sa.FromClause = deliveries
) -> sa.ColumnElement[bool]:
    """The pending rows of ``keys`` ((seq, sink) pairs), found by primary key: a ``seq IN``
    per sink (the dispatcher's keys are of one sink), the sink and the state compared as
    expressions rather than columns, so that SQLite's planner (no statistics) looks each
    key up instead of walking the state or sink index: that walk made each claim and each
    commit cost as much as the whole outbox."""
    by_sink: dict[str, set[int]] = defaultdict(set)
    for seq, sink in keys:
        by_sink[sink].add(seq)
    return sa.and_(
        sa.or_(
            *(
                sa.and_(table.c.sink.concat("") == sink, table.c.seq.in_(sorted(seqs)))
                for sink, seqs in by_sink.items()
            )
        ),
        table.c.state.concat("") == PENDING,
    )


class SqlOutbox(SqlBase):
    async def enqueue(self, routed: Sequence[Routed], *, now: float) -> int:
        async with self._writing() as conn:
            return await self._enqueue(conn, routed, now)

    async def pending(
        self, *, now: float, limit: int, sinks: Collection[str] | None = None
    ) -> list[PendingDelivery]:
        waits_behind = _waits_behind()
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
                _unclaimed(now),
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
        picked = (
            sa.select(free.c.seq, free.c.sink)
            .where(
                _keyed(keys, free),
                _unclaimed(now, free),
                ~_waits_behind(free),
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

    async def claimants(self) -> set[str]:
        query = (
            sa.select(deliveries.c.claimed_by)
            .where(deliveries.c.state == PENDING, deliveries.c.claimed_by.is_not(None))
            .distinct()
        )
        async with self.engine.connect() as conn:
            return {str(row[0]) for row in await conn.execute(query)}

    async def next_due(self, *, sinks: Collection[str] | None = None) -> float | None:
        # A claimed delivery is due (to anyone else) when its lease runs out.
        due = sa.case(
            (deliveries.c.claim_until > deliveries.c.next_attempt_at, deliveries.c.claim_until),
            else_=deliveries.c.next_attempt_at,
        )
        query = sa.select(sa.func.min(due)).where(deliveries.c.state == PENDING, ~_waits_behind())
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
            .where(_keyed(keys))
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
        async with self._writing() as conn:
            await conn.execute(
                sa.delete(deliveries).where(
                    deliveries.c.state.in_([DELIVERED, SILENCED]),
                    deliveries.c.updated_at < before,
                )
            )
            orphan = ~sa.exists().where(deliveries.c.seq == transitions.c.seq)
            result = await conn.execute(
                sa.delete(transitions).where(transitions.c.detected_at < before, orphan)
            )
            return result.rowcount or 0
