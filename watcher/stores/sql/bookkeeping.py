"""What sinks and the digest remember across restarts (:class:`watcher.abc.SinkState`,
:class:`watcher.abc.DigestLog`)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from watcher.model.transitions import Transition
from watcher.stores.schema import DIGEST, digest_log, sink_state, transitions
from watcher.stores.sql.base import SqlBase


class SqlSinkState(SqlBase):
    async def get_sink_state(self, sink: str, key: str) -> str | None:
        query = sa.select(sink_state.c.value).where(
            sink_state.c.sink == sink, sink_state.c.key == key[:330]
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return str(value) if value is not None else None

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        stmt = self._upsert(sink_state, keys=["sink", "key"], updates=["value", "updated_at"])
        row = {"sink": sink, "key": key[:330], "value": value[:1000], "updated_at": time.time()}
        async with self._writing() as conn:
            await conn.execute(stmt, row)

    async def put_sink_state_once(self, sink: str, key: str, value: str) -> bool:
        stmt = (
            self._insert(sink_state)
            .values(sink=sink, key=key[:330], value=value[:1000], updated_at=time.time())
            .on_conflict_do_nothing(index_elements=[sink_state.c.sink, sink_state.c.key])
            .returning(sink_state.c.key)
        )
        async with self._writing() as conn:
            return (await conn.execute(stmt)).scalar_one_or_none() is not None

    async def forget_sink_state(self, sink: str, *, before: float) -> int:
        stmt = sa.delete(sink_state).where(
            sink_state.c.sink == sink, sink_state.c.updated_at < before
        )
        async with self._writing() as conn:
            return (await conn.execute(stmt)).rowcount or 0


class SqlDigestLog(SqlBase):
    async def transitions_between(self, start: float, end: float) -> list[tuple[Transition, float]]:
        query = (
            sa.select(transitions.c.body, transitions.c.detected_at)
            .where(transitions.c.detected_at >= start, transitions.c.detected_at < end)
            .order_by(transitions.c.seq)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(Transition.from_json(row.body), row.detected_at) for row in rows]

    async def last_digest_end(self) -> float | None:
        query = sa.select(digest_log.c.last_end).where(digest_log.c.name == DIGEST)
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return float(value) if value is not None else None

    async def record_digest_end(self, end: float) -> None:
        stmt = self._upsert(digest_log, keys=["name"], updates=["last_end", "updated_at"])
        row = {"name": DIGEST, "last_end": end, "updated_at": time.time()}
        async with self._writing() as conn:
            await conn.execute(stmt, row)
