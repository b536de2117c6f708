"""State stores: one SQLAlchemy Core schema, one implementation per database."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.stores.sql import SqlStore

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgresql+asyncpg://")


def open_store(url: str) -> SqlStore:
    """The store for ``state.url``: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DB``
    (``postgresql+asyncpg://`` too). Call ``open()`` before use: it applies migrations."""
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
    store = open_store(url)
    try:
        return await store.migrate()
    finally:
        await store.aclose()
