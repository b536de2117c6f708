"""What every part of the SQL store shares: the engine, the one-writer transaction that
readiness watches, the dialect's upsert, and the outbox rows every write path adds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from watcher.exceptions import RecordRefused
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor
from watcher.stores import migrations
from watcher.stores.schema import PENDING, SILENCED, deliveries, transitions

log = structlog.get_logger(__name__)


def _brief(exc: sa.exc.DBAPIError) -> str:
    """The driver's own message, without SQLAlchemy's SQL and parameters (no data leaks
    into logs or /readyz)."""
    return f"{type(exc.orig).__name__}: {exc.orig}"[:200]


def _brief_any(exc: BaseException) -> str:
    """The reason a write's values were refused: PostgreSQL refusing a NUL character or a
    malformed value (DataError), a value the driver or the JSON encoder cannot take (a
    StatementError around a TypeError or ValueError). The store itself is fine."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}"[:200]


def cursor_of(data: dict[str, Any], version: int) -> Cursor:
    """The :class:`Cursor` of a ``cursors`` row."""
    state = {k: v for k, v in data.items() if k != "version"}  # the column is the truth
    return Cursor(**state, version=version)


class SqlBase:
    """The engine and the write path of :class:`~watcher.stores.sql.SqlStore`; its parts
    (snapshots, outbox, alerts, …) build on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # One writer at a time inside this process: SQLite has one write lock anyway, and
        # queueing here is cheaper than BUSY retries.
        self._write = anyio.Lock()
        self.write_error: str | None = None  # why the last write failed, until one succeeds
        self.standing_error: str | None = None  # see watcher.abc.Readiness
        self.notice: str | None = None  # something /readyz shows, not a failure
        self._write_failing_since: float | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. A failing one (disk full or read-only, database down) is
        remembered in :attr:`write_error` for the readiness check, and logged once per
        spell rather than once per attempt; the first success after it says so."""
        async with self._write:
            await self._before_write()
            try:
                async with self.engine.begin() as conn:
                    yield conn
            except sa.exc.DataError as exc:
                # What was written, not the store: the write is refused, the store is fine.
                raise RecordRefused(_brief_any(exc)) from exc
            except sa.exc.DBAPIError as exc:
                if self.write_error is None:
                    self._write_failing_since = time.time()
                    log.error("store_unwritable", error=_brief(exc))
                self.write_error = _brief(exc)
                raise
            except sa.exc.StatementError as exc:  # a value the driver could not take
                raise RecordRefused(_brief_any(exc)) from exc
            if self.write_error is not None:
                down = time.time() - (self._write_failing_since or time.time())
                log.warning("store_writable_again", down_seconds=round(down, 1))
                self.write_error = None

    async def _before_write(self) -> None:
        """A backend's check before each write transaction (SQLite: is the file still
        there?); nothing by default."""

    def _insert(self, table: sa.Table) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert(self, table: sa.Table, *, keys: Sequence[str], updates: Sequence[str]) -> Any:
        """``INSERT … ON CONFLICT (keys) DO UPDATE``: ``updates`` take the inserted values."""
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(
            index_elements=[table.c[key] for key in keys],
            set_={name: stmt.excluded[name] for name in updates},
        )

    async def open(self) -> None:
        await self.migrate()

    async def migrate(self) -> str:
        """Bring the schema to the newest revision (Alembic ``upgrade head``) in one
        transaction; returns that revision."""
        async with self.engine.begin() as conn, self._migrating(conn):
            return await conn.run_sync(migrations.upgrade)

    @asynccontextmanager
    async def _migrating(self, conn: AsyncConnection) -> AsyncIterator[None]:
        """Keep other migrations of this database out while ``conn`` migrates it. SQLite
        serves one process: only other stores of this process, which must not interleave
        anyway (Alembic keeps its running context in module globals)."""
        async with migrations.process_lock():
            yield

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def _enqueue(self, conn: AsyncConnection, routed: Sequence[Routed], now: float) -> int:
        """The outbox rows of ``routed`` inside the caller's transaction; returns how many
        deliveries became pending. A silenced transition's rows are ``silenced`` (recorded,
        never sent), with the silence named in ``last_error``."""
        if not routed:
            return 0
        # Two statements for the whole batch, not two per transition (a storm of thousands
        # of transitions is one commit): the transitions, each id once (already in the outbox
        # after a crash: left out), in order, so that their seq keeps the order of detection;
        # then the deliveries of those that are new.
        first: dict[str, Routed] = {}
        for item in routed:
            first.setdefault(item.transition.id, item)
        stmt = (
            self._insert(transitions)
            .on_conflict_do_nothing(index_elements=[transitions.c.id])
            .returning(transitions.c.id, transitions.c.seq, sort_by_parameter_order=True)
        )
        rows = [
            {
                "id": t.id,
                "source": t.source,
                "job_id": t.job_id,
                "type": t.type[:128],
                "body": t.to_json(),
                "detected_at": now,
            }
            for t in (item.transition for item in first.values())
        ]
        seqs = {row.id: row.seq for row in await conn.execute(stmt, rows)}
        added = 0
        outbox: list[dict[str, Any]] = []
        for item in first.values():
            t = item.transition
            seq = seqs.get(t.id)
            if seq is None or not item.sinks:
                continue  # already in the outbox (re-detected after a crash), or unrouted
            outbox.extend(
                {
                    "seq": seq,
                    "sink": sink,
                    "job_key": f"{t.source}/{t.job_id or t.id}",
                    "state": PENDING if item.silenced_by is None else SILENCED,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "last_error": None
                    if item.silenced_by is None
                    else f"silenced by {item.silenced_by}"[:500],
                }
                for sink in item.sinks
            )
            if item.silenced_by is None:
                added += len(item.sinks)
        if outbox:
            await conn.execute(sa.insert(deliveries), outbox)
        return added
