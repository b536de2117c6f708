"""Snapshots and cursors: the poll pipeline's side of the store
(:class:`watcher.abc.SnapshotStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from watcher.exceptions import StaleCycle
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.stores.schema import cursors, snapshots
from watcher.stores.sql.base import SqlBase, cursor_of


def _snapshot(source: str, row: Any) -> Snapshot:
    return Snapshot.from_json(source, row.job_id, row.data, terminal=row.terminal)


class SqlSnapshots(SqlBase):
    async def load_cursor(self, source: str) -> Cursor:
        query = sa.select(cursors.c.data, cursors.c.version).where(cursors.c.source == source)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return cursor_of(row.data, row.version) if row else Cursor()

    async def active_snapshots(self, source: str) -> dict[str, Snapshot]:
        query = sa.select(snapshots.c.job_id, snapshots.c.data, snapshots.c.terminal).where(
            snapshots.c.source == source, snapshots.c.terminal.is_(False)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row.job_id: _snapshot(source, row) for row in rows}

    async def get_snapshots(self, source: str, job_ids: Sequence[str]) -> dict[str, Snapshot]:
        out: dict[str, Snapshot] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(job_ids), 500):
                chunk = list(job_ids[start : start + 500])
                query = sa.select(snapshots.c.job_id, snapshots.c.data, snapshots.c.terminal).where(
                    snapshots.c.source == source, snapshots.c.job_id.in_(chunk)
                )
                for row in (await conn.execute(query)).all():
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
                stmt = self._upsert(
                    snapshots,
                    keys=["source", "job_id"],
                    updates=["status", "terminal", "data", "updated_at"],
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
