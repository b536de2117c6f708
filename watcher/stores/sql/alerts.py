"""Time-rule alerts: fired once, repeated, resolved, across restarts
(:class:`watcher.abc.AlertStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from watcher.model.outbox import AlertState, Routed
from watcher.stores.schema import alerts
from watcher.stores.sql.base import SqlBase


def _row(alert: AlertState) -> dict[str, Any]:
    """The ``alerts`` row of ``alert``: its fields are the table's columns."""
    return {f.name: getattr(alert, f.name) for f in fields(alert)} | {"data": dict(alert.data)}


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
                stmt = self._upsert(
                    alerts, keys=["id"], updates=["last_sent_at", "repeats", "resolved_at", "data"]
                )
                await conn.execute(stmt, [_row(a) for a in states])
            return await self._enqueue(conn, routed, now)
