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


class PostgresStore(SqlStore):
    def __init__(self, url: str) -> None:
        dsn = libpq_dsn(url)

        async def connect() -> Any:
            # asyncpg reads the DSN whole, as libpq would: SQLAlchemy would pass its query
            # (?sslmode=require) as keyword arguments asyncpg.connect does not take.
            return await asyncpg.connect(dsn)

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
