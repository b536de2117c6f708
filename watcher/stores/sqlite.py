"""The embedded default: one SQLite file (aiosqlite), one process."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import create_async_engine

from watcher.stores.sql import SqlStore


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dispatcher read while a poll commits; FULL syncs each commit so that an
    # acknowledged snapshot+outbox transaction survives a power cut, not only a crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    """SQLite opens a file it cannot write read-only, and such a connection stays read-only
    for good: once the file is writable again, every transaction landing on it would still
    fail. Treat "readonly database" like a lost connection, so that the pool throws its
    connections away and opens fresh ones."""
    error = context.original_exception
    if isinstance(error, sqlite3.OperationalError) and "readonly" in str(error):
        context.is_disconnect = True


class SQLiteStore(SqlStore):
    def __init__(self, url: str) -> None:
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            path = str(Path(path).expanduser())
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        event.listen(engine.sync_engine, "connect", _pragmas)
        event.listen(engine.sync_engine, "handle_error", _read_only_is_a_disconnect)
        super().__init__(engine)
