"""Time-rule alerts: fired once, repeated, resolved, across restarts, and acknowledged by
people (:class:`watcher.abc.AlertStore`). An acknowledgement lives in the row's ``data``
(``data["acknowledged"] = {"by", "at"}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.model.outbox import AlertState, Routed
from watcher.stores.schema import alerts
from watcher.stores.sql.base import SqlBase

ACKNOWLEDGED = "acknowledged"


def _row(alert: AlertState) -> dict[str, Any]:
    """The ``alerts`` row of ``alert``: its fields are the table's columns."""
    return {f.name: getattr(alert, f.name) for f in fields(alert)} | {"data": dict(alert.data)}


async def _acknowledgements(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Any]:
    """Alert id -> the acknowledgement stored for it, of those of ``ids`` still open that
    have one (rows locked until the transaction ends, on PostgreSQL)."""
    if not ids:
        return {}
    query = (
        sa.select(alerts.c.id, alerts.c.data)
        .where(alerts.c.id.in_(ids), alerts.c.resolved_at.is_(None))
        .with_for_update()
    )
    rows = (await conn.execute(query)).all()
    return {
        row.id: row.data[ACKNOWLEDGED]
        for row in rows
        if isinstance(row.data, Mapping) and row.data.get(ACKNOWLEDGED)
    }


class SqlAlerts(SqlBase):
    async def open_alerts(self, source: str) -> list[AlertState]:
        query = sa.select(alerts).where(alerts.c.source == source, alerts.c.resolved_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AlertState(**row._mapping) for row in rows]

    async def save_alerts(
        self, source: str, states: Sequence[AlertState], routed: Sequence[Routed], *, now: float
    ) -> int:
        async with self._writing() as conn:
            if states:
                # An acknowledgement made since ``states`` were read is not written over.
                still_open = [a.id for a in states if a.resolved_at is None]
                acked = await _acknowledgements(conn, still_open)
                rows = [
                    _row(a)
                    if a.id not in acked or a.data.get(ACKNOWLEDGED)
                    else _row(replace(a, data={**a.data, ACKNOWLEDGED: acked[a.id]}))
                    for a in states
                ]
                stmt = self._upsert(
                    alerts, keys=["id"], updates=["last_sent_at", "repeats", "resolved_at", "data"]
                )
                await conn.execute(stmt, rows)
            return await self._enqueue(conn, routed, now)

    async def acknowledge_alerts(
        self, job_id: str, *, source: str | None, by: str, now: float
    ) -> list[AlertState]:
        query = (
            sa.select(alerts)
            .where(alerts.c.job_id == job_id, alerts.c.resolved_at.is_(None))
            .order_by(alerts.c.source, alerts.c.fired_at, alerts.c.id)
            .with_for_update()
        )
        if source is not None:
            query = query.where(alerts.c.source == source)
        acknowledged: list[AlertState] = []
        async with self._writing() as conn:
            for row in (await conn.execute(query)).all():
                alert = AlertState(**row._mapping)
                if alert.data.get("silent"):
                    continue  # a baseline's spell: never sent, nothing to acknowledge
                alert = replace(alert, data={**alert.data, ACKNOWLEDGED: {"by": by, "at": now}})
                await conn.execute(
                    alerts.update().where(alerts.c.id == alert.id).values(data=dict(alert.data))
                )
                acknowledged.append(alert)
        return acknowledged
