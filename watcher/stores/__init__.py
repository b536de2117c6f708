"""State stores: one SQLAlchemy Core schema, one implementation per database."""

from __future__ import annotations

from watcher.abc import Store


def open_store(url: str) -> Store:
    """The store for ``state.url`` (``sqlite:///PATH``)."""
    from watcher.stores.sqlite import SQLiteStore

    return SQLiteStore(url)
