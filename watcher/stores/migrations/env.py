"""Alembic's environment, run by :func:`watcher.stores.migrations.upgrade`.

It never opens a connection of its own: the caller lends a synchronous one (from
``AsyncConnection.run_sync``) in ``config.attributes["connection"]``, inside the caller's
transaction, so that the caller decides what is locked and when it commits.
"""

from __future__ import annotations

from alembic import context

from watcher.stores.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "watcher's migrations run through watcher.stores.migrate() or `watcher migrate`, "
        "not the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters tables by copying them ("batch"); PostgreSQL alters them in place.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
