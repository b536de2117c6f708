from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watcher.app import eventloop
from watcher.stores.sql import SqlStore

# Where the PostgreSQL tests create (and drop) their throwaway databases. This machine kind
# always runs one: if it is unreachable the tests fail rather than skip.
POSTGRES_ADMIN_URL = os.environ.get(
    "WATCHER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    # APScheduler 3's AsyncIOScheduler and uvicorn need asyncio; on the loop the daemon runs
    # on (uvloop where installed; WATCHER_EVENT_LOOP=asyncio for asyncio's own).
    return "asyncio", eventloop.backend_options()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({type(e).__name__}: {e}); "
            "the postgres store tests need it (set WATCHER_TEST_POSTGRES_URL to point "
            "elsewhere)",
            pytrace=False,
        )
    name = f"watcher_test_{uuid.uuid4().hex}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """An open store of each kind: every store implementation runs the same suite."""
    from watcher.stores import open_store

    s = open_store(store_url)
    await s.open()
    yield s
    await s.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a fresh SQLite file, a fresh PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/nested/dir/state.db"
