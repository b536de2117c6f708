"""The store over SQLAlchemy 2 Core (async), for any database it speaks with
``INSERT … ON CONFLICT`` (SQLite, PostgreSQL): one module per side of
:class:`watcher.abc.Store` over the one schema of :mod:`watcher.stores.schema`, composed
here into :class:`SqlStore`.

Owns: the SQL of every store query. May import: ``watcher.stores.schema`` and
``watcher.stores.migrations``, and the layers below the stores (abc, model, exceptions);
never a backend (``stores.sqlite``, ``stores.postgres``), which subclass it.
"""

from __future__ import annotations

from watcher.stores.sql.admin import SqlAdminViews
from watcher.stores.sql.alerts import SqlAlerts
from watcher.stores.sql.bookkeeping import SqlDigestLog, SqlSinkState
from watcher.stores.sql.outbox import SqlOutbox
from watcher.stores.sql.pages import SqlPageViews
from watcher.stores.sql.silences import SqlSilences
from watcher.stores.sql.snapshots import SqlSnapshots

__all__ = ["SqlStore"]


class SqlStore(
    SqlSnapshots,
    SqlOutbox,
    SqlAlerts,
    SqlSinkState,
    SqlDigestLog,
    SqlAdminViews,
    SqlPageViews,
    SqlSilences,
):
    """Implements :class:`watcher.abc.Store`; the backends give it an engine (and, for
    PostgreSQL, a lock across processes while migrating)."""
