"""State stores: one SQLAlchemy Core schema (:mod:`~watcher.stores.schema`), its Alembic
migrations, the SQL of every query (:mod:`~watcher.stores.sql`), and one thin backend per
database (``sqlite``, ``postgres``) that never import each other.

May import the layers below the stores (abc, model, exceptions), never record, deliver,
sinks or sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.abc import Store
    from watcher.stores.sql import SqlStore

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgresql+asyncpg://")


def open_store(url: str) -> Store:
    """The store for ``state.url``: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``
    (``postgresql+asyncpg://`` too). Call ``open()`` before use: it applies migrations."""
    return _sql_store(url)


def _sql_store(url: str) -> SqlStore:
    # Imported on use: importing the package for its prefixes (coordination, the CLI)
    # loads no backend and no SQL.
    if url.startswith(SQLITE_PREFIX):
        from watcher.stores.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(POSTGRES_PREFIXES):
        from watcher.stores.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unsupported state.url {url.split(':', 1)[0]}:… (sqlite:/// or postgresql://)"
    )


async def migrate(url: str) -> str:
    """Apply pending migrations to the database of ``url``; returns its (head) revision."""
    store = _sql_store(url)
    try:
        return await store.migrate()
    finally:
        await store.aclose()
