"""The outbox: each (transition, sink) delivery from pending to delivered or dead, claimed
by one replica at a time (:class:`watcher.abc.Outbox`).

The dispatcher's statements (read what is due, claim, record) run for every round of
deliveries, so they are built once, with bound parameters, and reused: building them (an
alias's columns, the cache key SQLAlchemy finds the compiled form by) cost more CPU than
executing them."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

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


def _unclaimed(now: Any, table: sa.FromClause = deliveries) -> sa.ColumnElement[bool]:
    """No replica holds the delivery (never claimed, released, or the lease expired)."""
    return sa.or_(table.c.claim_until.is_(None), table.c.claim_until <= now)


def _keyed(table: sa.FromClause = deliveries) -> sa.ColumnElement[bool]:
    """The pending rows of one sink (``:to_sink``) among the ``:seqs``, found by primary key:
    the sink and the state compared as expressions rather than columns, so that SQLite's
    planner (no statistics) looks each key up instead of walking the state or sink index:
    that walk made each claim and each commit cost as much as the whole outbox."""
    return sa.and_(
        table.c.sink.concat("") == sa.bindparam("to_sink"),
        table.c.seq.in_(sa.bindparam("seqs", expanding=True)),
        table.c.state.concat("") == PENDING,
    )


def _by_sink(keys: Sequence[tuple[int, str]]) -> dict[str, list[int]]:
    """``keys`` ((seq, sink) pairs) as the seqs of each sink (the dispatcher's are of one)."""
    by_sink: dict[str, list[int]] = defaultdict(list)
    for seq, sink in keys:
        by_sink[sink].append(seq)
    return by_sink


@functools.cache
def _pending(some_sinks: bool) -> Any:
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
            deliveries.c.next_attempt_at <= sa.bindparam("now"),
            _unclaimed(sa.bindparam("now")),
            ~_waits_behind(),
        )
        .order_by(deliveries.c.seq, deliveries.c.sink)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    if some_sinks:
        query = query.where(deliveries.c.sink.in_(sa.bindparam("sinks", expanding=True)))
    return query


@functools.cache
def _claim() -> Any:
    """One statement, so that the check and the claim are one step: the subquery picks what
    is free (``FOR UPDATE SKIP LOCKED``: skipping rows another replica is claiming this
    instant), the update takes it; an alias, so that the subquery is not correlated to the
    updated table. Returns the (seq, sink) claimed."""
    free = deliveries.alias("free")
    picked = (
        sa.select(free.c.seq, free.c.sink)
        .where(_keyed(free), _unclaimed(sa.bindparam("now"), free), ~_waits_behind(free))
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(deliveries)
        .where(sa.tuple_(deliveries.c.seq, deliveries.c.sink).in_(picked))
        .values(claimed_by=sa.bindparam("owner"), claim_until=sa.bindparam("until"))
        .returning(deliveries.c.seq, deliveries.c.sink)
    )


@functools.cache
def _delivered() -> Any:
    return (
        sa.update(deliveries)
        .where(_keyed())
        .values(
            state=DELIVERED,
            attempts=deliveries.c.attempts + 1,
            updated_at=sa.bindparam("now"),
            last_error=None,
            claimed_by=None,
            claim_until=None,
        )
    )


@functools.cache
def _failed(*, dead: bool, owned: bool) -> Any:
    """A failed attempt of one pending delivery (``:of_seq``, ``:to_sink``): dead-lettered, or due
    again at ``:retry_at``; ``owned``: only while unclaimed or ``:owner``'s."""
    stmt = sa.update(deliveries).where(
        deliveries.c.seq == sa.bindparam("of_seq"),
        deliveries.c.sink == sa.bindparam("to_sink"),
        deliveries.c.state == PENDING,
    )
    if owned:
        # A replica whose lease ran out while it sent reports nothing over the claim of the
        # replica that took the delivery since (that one will say how it went).
        mine = deliveries.c.claimed_by == sa.bindparam("owner")
        stmt = stmt.where(sa.or_(deliveries.c.claimed_by.is_(None), mine))
    outcome: dict[str, Any] = (
        {"state": DEAD} if dead else {"next_attempt_at": sa.bindparam("retry_at")}
    )
    return stmt.values(
        attempts=deliveries.c.attempts + 1,
        claimed_by=None,
        claim_until=None,
        updated_at=sa.bindparam("now"),
        last_error=sa.bindparam("error"),
        **outcome,
    )


class SqlOutbox(SqlBase):
    async def enqueue(self, routed: Sequence[Routed], *, now: float) -> int:
        async with self._writing() as conn:
            return await self._enqueue(conn, routed, now)

    async def pending(
        self, *, now: float, limit: int, sinks: Collection[str] | None = None
    ) -> list[PendingDelivery]:
        params: dict[str, Any] = {"now": now, "limit": limit}
        if sinks is not None:
            params["sinks"] = list(sinks)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_pending(sinks is not None), params)).all()
        return [
            PendingDelivery(
                seq=row.seq,
                envelope=Envelope(
                    transition=Transition.from_json(row.body, safe=True),
                    detected_at=row.detected_at,
                ),
                sink=row.sink,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def claim(
        self,
        keys: Sequence[tuple[int, str]],
        *,
        owner: str,
        until: float,
        now: float,
        delivered: Sequence[tuple[int, str]] = (),
    ) -> set[tuple[int, str]]:
        """``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a replica skips the rows another one is
        claiming at this instant, and the lease then keeps them out of everyone's way.
        (SQLite serves one process: its write lock serializes claims anyway.)"""
        if not keys and not delivered:
            return set()
        claimed: set[tuple[int, str]] = set()
        async with self._writing() as conn:
            await self._delivered(conn, delivered, now)
            for sink, seqs in _by_sink(keys).items():
                params = {"to_sink": sink, "seqs": seqs, "now": now, "owner": owner[:128]}
                rows = await conn.execute(_claim(), {**params, "until": until})
                claimed.update((row.seq, row.sink) for row in rows)
        return claimed

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
        async with self._writing() as conn:
            await self._delivered(conn, keys, now)

    async def _delivered(
        self, conn: AsyncConnection, keys: Sequence[tuple[int, str]], now: float
    ) -> None:
        for sink, seqs in _by_sink(keys).items():
            await conn.execute(_delivered(), {"to_sink": sink, "seqs": seqs, "now": now})

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
        stmt = _failed(dead=retry_at is None, owned=owner is not None)
        params: dict[str, Any] = {"of_seq": seq, "to_sink": sink, "now": now, "error": error[:500]}
        if retry_at is not None:
            params["retry_at"] = retry_at
        if owner is not None:
            params["owner"] = owner[:128]
        async with self._writing() as conn:
            await conn.execute(stmt, params)

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
