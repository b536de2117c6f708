"""The status page's reads (:class:`watcher.abc.PageViews`): one connection per page, a few
statements each, every one bounded by a ``LIMIT`` or a ``GROUP BY`` over small keys."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from watcher.model.outbox import DeliveryRow
from watcher.model.pages import (
    DeliveriesView,
    JobHistory,
    JobRow,
    Overview,
    SinkHealth,
    TransitionDeliveries,
)
from watcher.model.snapshot import Snapshot
from watcher.stores.schema import (
    DEAD,
    DELIVERED,
    PENDING,
    SILENCED,
    cursors,
    deliveries,
    snapshots,
    transitions,
)
from watcher.stores.sql.base import SqlBase, cursor_of

_DELIVERY_ROW = [f.name for f in fields(DeliveryRow)]
_JOB_COLUMNS = (
    snapshots.c.source,
    snapshots.c.job_id,
    snapshots.c.data,
    snapshots.c.terminal,
    snapshots.c.updated_at,
)


def _job(row: Any) -> JobRow:
    snapshot = Snapshot.from_json(row.source, row.job_id, row.data, terminal=row.terminal)
    return JobRow(snapshot, float(row.updated_at or 0.0))


def _deliveries_of(state: str, limit: int) -> sa.Select[Any]:
    """Deliveries in ``state`` with their transition: pending soonest due first, the others
    newest first."""
    order = (
        (deliveries.c.next_attempt_at, deliveries.c.seq)
        if state == PENDING
        else (deliveries.c.updated_at.desc(), deliveries.c.seq.desc())
    )
    return (
        sa.select(
            deliveries,
            transitions.c.id.label("transition_id"),
            transitions.c.type,
            transitions.c.source,
            transitions.c.job_id,
        )
        .join(transitions, transitions.c.seq == deliveries.c.seq)
        .where(deliveries.c.state == state)
        .order_by(*order, deliveries.c.sink)
        .limit(limit)
    )


class SqlPageViews(SqlBase):
    async def overview(
        self,
        *,
        source: str | None,
        status: str | None,
        limit: int,
        recent: int,
        offset: int = 0,
    ) -> Overview:
        out = Overview()
        followed = sa.select(*_JOB_COLUMNS).where(snapshots.c.terminal.is_(False))
        count = sa.select(sa.func.count()).select_from(snapshots)
        count = count.where(snapshots.c.terminal.is_(False))
        if source is not None:
            followed = followed.where(snapshots.c.source == source)
            count = count.where(snapshots.c.source == source)
        if status is not None:
            followed = followed.where(snapshots.c.status == status)
            count = count.where(snapshots.c.status == status)
        followed = followed.order_by(snapshots.c.updated_at.desc(), snapshots.c.job_id)
        ended = sa.select(*_JOB_COLUMNS).where(snapshots.c.terminal.is_(True))
        if source is not None:
            ended = ended.where(snapshots.c.source == source)
        ended = ended.order_by(snapshots.c.updated_at.desc(), snapshots.c.job_id).limit(recent)
        async with self.engine.connect() as conn:
            for row in await conn.execute(sa.select(cursors)):
                out.cursors[row.source] = cursor_of(row.data, row.version)
                out.last_poll_at[row.source] = row.last_poll_at
            out.followed.extend(
                _job(r) for r in await conn.execute(followed.limit(limit).offset(offset))
            )
            total = int((await conn.execute(count)).scalar_one())
            out.recent.extend(_job(r) for r in await conn.execute(ended))
        return Overview(
            cursors=out.cursors,
            last_poll_at=out.last_poll_at,
            followed=out.followed,
            followed_total=total,
            recent=out.recent,
        )

    async def job_history(self, source: str, job_id: str, *, limit: int) -> JobHistory:
        job = sa.select(*_JOB_COLUMNS).where(
            snapshots.c.source == source, snapshots.c.job_id == job_id
        )
        last = (
            sa.select(transitions.c.seq)
            .where(transitions.c.source == source, transitions.c.job_id == job_id)
            .order_by(transitions.c.seq.desc())
            .limit(limit)
        )
        query = (
            sa.select(
                transitions.c.seq,
                transitions.c.id,
                transitions.c.type,
                transitions.c.detected_at,
                deliveries.c.sink,
                deliveries.c.state,
                deliveries.c.attempts,
                deliveries.c.last_error,
                deliveries.c.updated_at,
            )
            .outerjoin(deliveries, deliveries.c.seq == transitions.c.seq)
            .where(transitions.c.seq.in_(last.scalar_subquery()))
            .order_by(transitions.c.seq.desc(), deliveries.c.sink)
        )
        async with self.engine.connect() as conn:
            found = (await conn.execute(job)).first()
            rows = (await conn.execute(query)).all()
        history: dict[int, TransitionDeliveries] = {}
        for row in rows:
            item = history.get(row.seq)
            if item is None:
                item = TransitionDeliveries(row.id, row.type, float(row.detected_at))
                history[row.seq] = item
            if row.sink is not None:
                sent = (row.sink, row.state, row.attempts, row.last_error, row.updated_at)
                item.deliveries.append(sent)
        return JobHistory(_job(found) if found is not None else None, list(history.values()))

    async def deliveries_view(self, *, limit: int) -> DeliveriesView:
        by_sink = sa.select(
            deliveries.c.sink,
            deliveries.c.state,
            sa.func.count(),
            sa.func.max(deliveries.c.updated_at),
        ).group_by(deliveries.c.sink, deliveries.c.state)
        # Each sink's latest failed attempt still pending: its current trouble.
        newest = (
            sa.select(deliveries.c.sink, sa.func.max(deliveries.c.updated_at).label("at"))
            .where(deliveries.c.state == PENDING, deliveries.c.last_error.is_not(None))
            .group_by(deliveries.c.sink)
            .subquery()
        )
        errors = sa.select(deliveries.c.sink, deliveries.c.last_error).join(
            newest,
            sa.and_(newest.c.sink == deliveries.c.sink, newest.c.at == deliveries.c.updated_at),
        )
        lists: dict[str, list[DeliveryRow]] = {}
        counts: dict[str, dict[str, tuple[int, float]]] = {}
        last_error: dict[str, str] = {}
        async with self.engine.connect() as conn:
            for state in (PENDING, DEAD, SILENCED):
                rows = await conn.execute(_deliveries_of(state, limit))
                lists[state] = [
                    DeliveryRow(**{name: row._mapping[name] for name in _DELIVERY_ROW})
                    for row in rows
                ]
            for sink, state, number, latest in await conn.execute(by_sink):
                counts.setdefault(sink, {})[state] = (int(number), float(latest or 0.0))
            for sink, error in await conn.execute(errors):
                last_error.setdefault(sink, error)
        sinks = {}
        for sink, states in sorted(counts.items()):
            delivered = states.get(DELIVERED)
            sinks[sink] = SinkHealth(
                pending=states.get(PENDING, (0, 0.0))[0],
                dead=states.get(DEAD, (0, 0.0))[0],
                silenced=states.get(SILENCED, (0, 0.0))[0],
                delivered=delivered[0] if delivered else 0,
                last_delivered_at=delivered[1] if delivered else None,
                last_error=last_error.get(sink),
            )
        return DeliveriesView(lists[PENDING], lists[DEAD], lists[SILENCED], sinks)
