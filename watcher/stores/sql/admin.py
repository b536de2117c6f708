"""What operators see and do: ``watcher status``, ``watcher deliveries``, the gauges
(:class:`watcher.abc.AdminViews`)."""

from __future__ import annotations

import time
from dataclasses import fields

import sqlalchemy as sa

from watcher.model.outbox import DeliveryRow, StoreStatus
from watcher.stores.schema import (
    DEAD,
    DELIVERED,
    PENDING,
    SILENCED,
    cursors,
    deliveries,
    silences,
    snapshots,
    transitions,
)
from watcher.stores.sql.base import SqlBase, cursor_of
from watcher.stores.sql.silences import open_at

# The columns a DeliveryRow is made of (the query below labels them so).
_DELIVERY_ROW = [f.name for f in fields(DeliveryRow)]


class SqlAdminViews(SqlBase):
    async def list_deliveries(self, *, state: str | None, limit: int) -> list[DeliveryRow]:
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
        return [DeliveryRow(**{name: row._mapping[name] for name in _DELIVERY_ROW}) for row in rows]

    async def retry_dead(self, transition_id: str | None, *, now: float) -> int:
        stmt = sa.update(deliveries).where(deliveries.c.state == DEAD)
        if transition_id is not None:
            seqs = sa.select(transitions.c.seq).where(transitions.c.id == transition_id)
            stmt = stmt.where(deliveries.c.seq.in_(seqs.scalar_subquery()))
        fresh = dict.fromkeys(["next_attempt_at", "created_at", "updated_at"], now)
        stmt = stmt.values(state=PENDING, claimed_by=None, claim_until=None, **fresh)
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
                out.cursors[row.source] = cursor_of(row.data, row.version)
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
                elif state == SILENCED:
                    out.silenced = count
            now = time.time()
            active = sa.select(sa.func.count()).select_from(silences)
            active = active.where(open_at(now), silences.c.starts_at <= now)
            out.silences_active = int((await conn.execute(active)).scalar_one())
        return out
