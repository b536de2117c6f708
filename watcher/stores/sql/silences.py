"""Runtime silences, shared by every replica (:class:`watcher.abc.SilenceStore`)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from watcher.model.silences import Silence
from watcher.stores.schema import silences
from watcher.stores.sql.base import SqlBase


def _row(silence: Silence) -> dict[str, Any]:
    source, job_id = silence.resolved if silence.resolved is not None else (None, None)
    return {
        "id": silence.id,
        "matchers": dict(silence.matchers),
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "resolved_source": source,
        "resolved_job_id": job_id,
        "comment": silence.comment[:1000],
        "created_by": silence.created_by[:255],
        "created_at": silence.created_at,
        "ended_at": silence.ended_at,
        "ended_by": silence.ended_by,
        "end_reason": silence.end_reason,
    }


def _silence(row: Any) -> Silence:
    resolved = None
    if row.resolved_source is not None and row.resolved_job_id is not None:
        resolved = (row.resolved_source, row.resolved_job_id)
    return Silence(
        id=row.id,
        matchers={str(k): str(v) for k, v in (row.matchers or {}).items()},
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        comment=row.comment,
        created_by=row.created_by,
        created_at=row.created_at,
        resolved=resolved,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        end_reason=row.end_reason,
    )


def open_at(now: float) -> sa.ColumnElement[bool]:
    """Not ended by anyone, and not past its end (it may start later)."""
    return sa.and_(
        silences.c.ended_at.is_(None),
        sa.or_(silences.c.ends_at.is_(None), silences.c.ends_at > now),
    )


class SqlSilences(SqlBase):
    async def add_silence(self, silence: Silence) -> None:
        async with self._writing() as conn:
            await conn.execute(sa.insert(silences), _row(silence))

    async def list_silences(self, *, include_ended: bool) -> list[Silence]:
        query = sa.select(silences).order_by(silences.c.created_at.desc(), silences.c.id)
        if not include_ended:
            query = query.where(open_at(time.time()))
        async with self.engine.connect() as conn:
            return [_silence(row) for row in await conn.execute(query)]

    async def active_silences(self, now: float) -> list[Silence]:
        query = (
            sa.select(silences)
            .where(open_at(now), silences.c.starts_at <= now)
            .order_by(silences.c.created_at, silences.c.id)
        )
        async with self.engine.connect() as conn:
            return [_silence(row) for row in await conn.execute(query)]

    async def expire_silence(
        self, silence_id: str, *, now: float, by: str, reason: str
    ) -> Silence | None:
        stmt = (
            sa.update(silences)
            .where(silences.c.id == silence_id, open_at(now))
            .values(ended_at=now, ended_by=by[:255], end_reason=reason[:255])
            .returning(*silences.c)
        )
        async with self._writing() as conn:
            row = (await conn.execute(stmt)).first()
        return _silence(row) if row is not None else None
