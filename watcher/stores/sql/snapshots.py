"""Snapshots and cursors: the poll pipeline's side of the store
(:class:`watcher.abc.SnapshotStore`).

Every poll cycle commits here, so its statements are built once, with bound parameters,
and reused: building an ``INSERT … ON CONFLICT DO UPDATE`` (and its cache key, by which
SQLAlchemy finds it compiled) costs more CPU than executing it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.exceptions import StaleCycle
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.stores.schema import cursors, snapshots
from watcher.stores.sql.base import SqlBase, cursor_of

_SNAPSHOT_COLUMNS = (snapshots.c.job_id, snapshots.c.data, snapshots.c.terminal)
LOAD_CURSOR = sa.select(cursors.c.data, cursors.c.version).where(
    cursors.c.source == sa.bindparam("source")
)
ACTIVE = sa.select(*_SNAPSHOT_COLUMNS).where(
    snapshots.c.source == sa.bindparam("source"), snapshots.c.terminal.is_(False)
)
SOME = sa.select(*_SNAPSHOT_COLUMNS).where(
    snapshots.c.source == sa.bindparam("source"),
    snapshots.c.job_id.in_(sa.bindparam("ids", expanding=True)),
)


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


@functools.cache
def put_snapshots(dialect: str) -> Any:
    """Snapshot rows, inserted or replaced (executed with one parameter set per row)."""
    stmt = _dialect_insert(dialect, snapshots)
    updates = ("status", "terminal", "data", "updated_at")
    return stmt.on_conflict_do_update(
        index_elements=[snapshots.c.source, snapshots.c.job_id],
        set_={name: stmt.excluded[name] for name in updates},
    )


@functools.cache
def put_cursor(dialect: str, *, polled: bool, guarded: bool) -> Any:
    """A source's cursor, inserted at version 1 or moved one version on; ``guarded``: only
    from version ``expect``. Returns the version written (no row: refused)."""
    stmt = _dialect_insert(dialect, cursors).values(
        source=sa.bindparam("source"),
        data=sa.bindparam("data", type_=cursors.c.data.type),
        last_poll_at=sa.bindparam("last_poll_at"),
        version=1,
    )
    updates: dict[str, Any] = {"data": stmt.excluded.data, "version": cursors.c.version + 1}
    if polled:
        updates["last_poll_at"] = stmt.excluded.last_poll_at
    guard = cursors.c.version == sa.bindparam("expect") if guarded else None
    return stmt.on_conflict_do_update(
        index_elements=[cursors.c.source], set_=updates, where=guard
    ).returning(cursors.c.version)


def _snapshot(source: str, row: Any) -> Snapshot:
    return Snapshot.from_json(source, row.job_id, row.data, terminal=row.terminal)


class SqlSnapshots(SqlBase):
    async def load_cursor(self, source: str) -> Cursor:
        async with self.engine.connect() as conn:
            row = (await conn.execute(LOAD_CURSOR, {"source": source})).first()
        return cursor_of(row.data, row.version) if row else Cursor()

    async def active_snapshots(self, source: str) -> dict[str, Snapshot]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(ACTIVE, {"source": source})).all()
        return {row.job_id: _snapshot(source, row) for row in rows}

    async def get_snapshots(self, source: str, job_ids: Sequence[str]) -> dict[str, Snapshot]:
        out: dict[str, Snapshot] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(job_ids), 500):
                chunk = list(job_ids[start : start + 500])
                for row in (await conn.execute(SOME, {"source": source, "ids": chunk})).all():
                    out[row.job_id] = _snapshot(source, row)
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
                await conn.execute(
                    put_snapshots(self.engine.dialect.name),
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
        stmt = put_cursor(self.engine.dialect.name, polled=polled, guarded=expect is not None)
        values = {
            "source": source,
            "data": data,
            "last_poll_at": now if polled else 0.0,
            "expect": expect,
        }
        if (await conn.execute(stmt, values)).scalar_one_or_none() is None:
            raise StaleCycle(source, expect if expect is not None else -1)
