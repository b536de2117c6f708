"""Versioned schema changes (Alembic), applied in code: no ``alembic.ini`` at runtime."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent
# The revision whose schema the stores created with ``metadata.create_all`` before there were
# migrations: such a database is stamped with it instead of being created again.
BASELINE = "0001"

# Alembic keeps the running environment in module globals (``alembic.context``), so two
# upgrades in one process must not interleave; one lock per event loop.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def current(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: sa.Connection) -> str:
    """Bring the database to the head revision, inside the connection's transaction; returns
    the revision it is at."""
    config = alembic_config(connection)
    if current(connection) is None and sa.inspect(connection).has_table("snapshots"):
        command.stamp(config, BASELINE)  # created by create_all before migrations existed
    command.upgrade(config, "head")
    revision = current(connection)
    assert revision is not None
    return revision
