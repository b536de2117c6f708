"""The embedded default: one SQLite file (aiosqlite), one process.

The file is watched: deleted or replaced under the running daemon (a cleanup script, an
operator's ``rm``, a restore gone wrong), commits would go on into the unlinked inode and
everything would be lost at the next start. Before each write the file's device and inode
are compared with those opened; on a difference the open connection, which still holds the
whole database, is copied back to the path (SQLite's backup API) before the write goes on.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import create_async_engine

from watcher.stores.sql import SqlStore

log = structlog.get_logger(__name__)


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
        self.path: Path | None = None  # None: in memory, nothing to watch
        if path and path != ":memory:":
            path = str(Path(path).expanduser())
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(path)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        event.listen(engine.sync_engine, "connect", _pragmas)
        event.listen(engine.sync_engine, "handle_error", _read_only_is_a_disconnect)
        super().__init__(engine)
        self._identity: tuple[int, int] | None = None
        self.restores = 0  # times the file was written back

    async def open(self) -> None:
        await super().open()
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (found.st_dev, found.st_ino)

    async def _before_write(self) -> None:
        """The file is still the one opened, or it is written back (under the write lock)."""
        if self.path is None or self._identity is None:
            return
        now = self._stat()
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced by another file"
        log.error(
            "store_file_lost",
            path=str(self.path),
            what=what,
            hint="writing the open database back to its path; find what removed it",
        )
        try:
            await self._write_back(replaced=now is not None)
        except (OSError, sqlite3.Error) as exc:
            # Writes go on into the open (unlinked) database: nothing is lost while the
            # process lives; the next write tries again.
            self.standing_error = f"database file {what}, cannot write it back: {exc}"[:200]
            log.error("store_file_not_restored", path=str(self.path), error=str(exc)[:200])
            return
        self.restores += 1
        self.standing_error = None
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.notice = f"the database file was {what} at {at}; written back from the open connection"
        log.warning("store_file_restored", path=str(self.path), what=what)

    async def _write_back(self, *, replaced: bool) -> None:
        assert self.path is not None
        path = self.path
        partial = path.with_name(f"{path.name}.restoring")
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            live = raw.driver_connection
            target = sqlite3.connect(partial, check_same_thread=False)
            try:
                await live.backup(target)  # type: ignore[union-attr]
            finally:
                target.close()
        # Close every pooled connection to the lost file (the last one to close takes its
        # WAL with it), then put the copy in place: new connections open it.
        await self.engine.dispose()
        if replaced:  # someone else's file: kept aside, not overwritten
            aside = path.with_name(f"{path.name}.replaced-{int(time.time())}")
            os.replace(path, aside)
            log.warning("store_file_set_aside", path=str(aside))
        for leftover in (f"{path.name}-wal", f"{path.name}-shm"):
            with contextlib.suppress(FileNotFoundError):
                path.with_name(leftover).unlink()
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._identity = self._stat()
