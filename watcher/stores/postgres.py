"""Scale-out / HA: PostgreSQL (asyncpg), shared by several replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from watcher.exceptions import POSTGRES_EXTRA, MissingExtra
from watcher.stores.sql import SqlStore

try:
    import asyncpg
except ImportError:  # the `postgres` extra is not installed (check-config says so first)
    raise MissingExtra("state.url", *POSTGRES_EXTRA) from None

# pg_advisory_xact_lock key held while migrating, so that replicas starting at once on an
# empty database take turns (the later ones then find it at head). Any constant will do as
# long as no other lock of this database uses it: the ASCII of "watcher\0".
MIGRATION_LOCK = 0x7761746368657200


def libpq_dsn(url: str) -> str:
    """``state.url`` as the plain ``postgresql://`` DSN asyncpg parses itself (libpq's
    parameters: ``sslmode``, ``sslrootcert``…)."""
    parsed = make_url(url)
    if parsed.drivername not in ("postgresql", "postgresql+asyncpg"):
        raise ValueError(f"not a postgresql:// URL: {parsed!r}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _server(url: str) -> str:
    """``host:port`` of ``state.url`` (no credentials), or what libpq would use."""
    parsed = make_url(url)
    host = parsed.host or "the local socket"
    return f"{host}:{parsed.port or 5432}" if parsed.host else host


class PostgresStore(SqlStore):
    def __init__(self, url: str) -> None:
        dsn = libpq_dsn(url)
        where = _server(url)

        async def connect() -> Any:
            # asyncpg reads the DSN whole, as libpq would: SQLAlchemy would pass its query
            # (?sslmode=require) as keyword arguments asyncpg.connect does not take.
            try:
                return await asyncpg.connect(dsn)
            except OSError as exc:
                # Named by the server it could not reach (each event loop words a refused
                # connection its own way, some without the address); never the credentials.
                reason = exc.strerror or str(exc) or type(exc).__name__
                said = f"the state database at {where}: {reason}"
                args = (said,) if exc.errno is None else (exc.errno, said)
                try:
                    named = type(exc)(*args)  # the same kind (refused, timed out…)
                except TypeError:
                    named = OSError(*args)
                raise named from None

        # pre_ping: a server restart or failover must not hand out dead pooled connections.
        super().__init__(
            create_async_engine("postgresql+asyncpg://", async_creator=connect, pool_pre_ping=True)
        )

    @asynccontextmanager
    async def _migrating(self, conn: AsyncConnection) -> AsyncIterator[None]:
        # Held until conn's transaction ends (after the upgrade commits or rolls back), against
        # other processes and other connections of this one alike.
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        yield
