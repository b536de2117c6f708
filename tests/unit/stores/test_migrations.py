"""Alembic migrations: empty databases reach head, reruns are no-ops, replicas starting at
once on PostgreSQL take turns, the migrated schema is the one schema.py declares, and data
moved by a migration (the digest's last end) survives the upgrade."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from watcher.model.snapshot import Cursor
from watcher.stores import migrate, open_store
from watcher.stores import migrations as migrations_pkg
from watcher.stores.schema import metadata

T = TypeVar("T")


async def inspect(url: str, fn: Callable[[sa.Connection], T]) -> T:
    """Run ``fn`` on a synchronous connection to the database of ``url``."""
    store = open_store(url)
    try:
        async with store.engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await store.aclose()


def versions(conn: sa.Connection) -> list[str]:
    if not sa.inspect(conn).has_table("alembic_version"):
        return []
    return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def tables_and_columns(conn: sa.Connection) -> dict[str, list[str]]:
    inspector = sa.inspect(conn)
    return {
        t: sorted(c["name"] for c in inspector.get_columns(t)) for t in inspector.get_table_names()
    }


def indexes(conn: sa.Connection) -> dict[str, list[str]]:
    """Declared indexes (not the ones PostgreSQL makes for unique constraints)."""
    inspector = sa.inspect(conn)
    return {
        t: sorted(
            str(i["name"]) for i in inspector.get_indexes(t) if "duplicates_constraint" not in i
        )
        for t in metadata.tables
    }


def differences(conn: sa.Connection) -> list[Any]:
    """What autogenerate would change to make the database match ``metadata``."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_empty_database_reaches_head(store_url: str) -> None:
    """An empty SQLite file or PostgreSQL database is brought to the head revision."""
    assert [] == await inspect(store_url, versions)
    assert migrations_pkg.head() == await migrate(store_url)
    assert [migrations_pkg.head()] == await inspect(store_url, versions)


async def test_second_run_is_a_no_op(store_url: str) -> None:
    """Migrating a database already at head changes nothing and keeps the data."""
    await migrate(store_url)
    store = open_store(store_url)
    await store.open()
    await store.commit("ft", Cursor(watermark=7), [], [], now=1.0)
    await store.aclose()
    before = await inspect(store_url, tables_and_columns)
    assert migrations_pkg.head() == await migrate(store_url)
    assert before == await inspect(store_url, tables_and_columns)
    assert [migrations_pkg.head()] == await inspect(store_url, versions)
    store = open_store(store_url)
    await store.open()  # open() migrates too: still a no-op
    try:
        assert Cursor(watermark=7) == await store.load_cursor("ft")
    finally:
        await store.aclose()


async def test_migrated_schema_matches_metadata(store_url: str) -> None:
    """The tables, columns and indexes the migrations create are the ones schema.py declares,
    and autogenerate finds nothing left to change."""
    await migrate(store_url)
    expected = {t.name: sorted(c.name for c in t.columns) for t in metadata.tables.values()}
    actual = await inspect(store_url, tables_and_columns)
    assert sorted(actual.pop("alembic_version")) == ["version_num"]
    assert expected == actual
    expected_indexes = {
        t.name: sorted(str(i.name) for i in t.indexes) for t in metadata.tables.values()
    }
    assert expected_indexes == await inspect(store_url, indexes)
    assert [] == await inspect(store_url, differences)


async def test_concurrent_migrations_take_turns(postgres_url: str) -> None:
    """Two replicas migrating one empty PostgreSQL database at once both succeed: the
    advisory lock makes the second wait, then find the schema at head."""
    results: list[str] = []

    async def run() -> None:
        results.append(await migrate(postgres_url))

    with anyio.fail_after(60):  # without the lock the upgrades can deadlock, not only fail
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(run)
    assert [migrations_pkg.head()] * 3 == results
    assert [migrations_pkg.head()] == await inspect(postgres_url, versions)
    assert [] == await inspect(postgres_url, differences)


# A replica: imports, waits for the common start time, migrates, prints the revision.
REPLICA = """
import asyncio, sys, time
from watcher.stores import migrate
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(asyncio.run(migrate(sys.argv[1])))
"""


async def test_replicas_starting_at_once_take_turns(postgres_url: str) -> None:
    """Separate processes migrating one empty PostgreSQL database at the same instant all
    succeed, and the schema is created once."""
    start_at = str(time.time() + 3.0)  # after every interpreter has imported watcher
    outputs: list[str] = []

    async def replica() -> None:
        done = await anyio.run_process(
            [sys.executable, "-c", REPLICA, postgres_url, start_at], check=False
        )
        assert 0 == done.returncode, done.stderr.decode()
        outputs.append(done.stdout.decode().strip())

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(replica)
    assert [migrations_pkg.head()] * 3 == outputs
    assert [migrations_pkg.head()] == await inspect(postgres_url, versions)
    assert [] == await inspect(postgres_url, differences)


async def test_database_from_before_migrations_is_adopted(store_url: str) -> None:
    """A database ``metadata.create_all`` made (before there were migrations) is stamped with
    the baseline and upgraded from there, its data kept."""
    await inspect(store_url, _create_all_with_a_cursor)
    assert [] == await inspect(store_url, versions)
    assert migrations_pkg.head() == await migrate(store_url)
    assert [migrations_pkg.head()] == await inspect(store_url, versions)
    store = open_store(store_url)
    await store.open()
    try:
        assert Cursor(watermark=3) == await store.load_cursor("ft")
    finally:
        await store.aclose()


def _create_all_with_a_cursor(conn: sa.Connection) -> None:
    # The schema create_all made then is the baseline revision's: build it, then forget
    # Alembic's bookkeeping, as such a database never had any.
    command.upgrade(migrations_pkg.alembic_config(conn), migrations_pkg.BASELINE)
    conn.execute(sa.text("DROP TABLE alembic_version"))
    conn.execute(
        metadata.tables["cursors"].insert(),
        {"source": "ft", "data": {"watermark": 3}, "last_poll_at": 1.0},
    )
    conn.commit()


def _at_0002(conn: sa.Connection) -> None:
    command.upgrade(migrations_pkg.alembic_config(conn), "0002")
    conn.commit()


def _at_0002_with_a_digest_end(conn: sa.Connection) -> None:
    # A database a watcher before 0003 ran: the end of its last digest in sink_state,
    # under the fake sink "watcher", beside a real sink's state.
    _at_0002(conn)
    conn.execute(
        sa.text("INSERT INTO sink_state (sink, key, value, updated_at) VALUES (:s, :k, :v, 9.0)"),
        [
            {"s": "watcher", "k": "digest.last_end", "v": repr(1_751_010_000.123456)},
            {"s": "slack", "k": "thread:j1", "v": "1700000000.000100"},
        ],
    )
    conn.commit()


def sink_state_rows(conn: sa.Connection) -> list[tuple[str, str, str]]:
    return [
        (row.sink, row.key, row.value)
        for row in conn.execute(sa.text("SELECT sink, key, value FROM sink_state ORDER BY sink"))
    ]


async def test_upgrade_moves_the_last_digest_end(store_url: str) -> None:
    """A database from before the digest log keeps where its last digest ended: the row
    moves from sink_state to the digest log, and the sinks' own state stays."""
    await inspect(store_url, _at_0002_with_a_digest_end)
    assert ["0002"] == await inspect(store_url, versions)
    assert migrations_pkg.head() == await migrate(store_url)
    assert [("slack", "thread:j1", "1700000000.000100")] == await inspect(
        store_url, sink_state_rows
    )
    store = open_store(store_url)
    await store.open()
    try:
        assert 1_751_010_000.123456 == await store.last_digest_end()
    finally:
        await store.aclose()


async def test_upgrade_without_a_digest_end(store_url: str) -> None:
    """A database that never sent a digest upgrades to an empty digest log."""
    await inspect(store_url, _at_0002)
    assert ["0002"] == await inspect(store_url, versions)
    assert migrations_pkg.head() == await migrate(store_url)
    store = open_store(store_url)
    await store.open()
    try:
        assert await store.last_digest_end() is None
    finally:
        await store.aclose()


def _downgrade_to_0002(conn: sa.Connection) -> None:
    command.downgrade(migrations_pkg.alembic_config(conn), "0002")
    conn.commit()


async def test_downgrade_puts_the_digest_end_back(store_url: str) -> None:
    """Downgrading below the digest log writes the last digest end back where the older
    watcher looks for it."""
    store = open_store(store_url)
    await store.open()
    try:
        await store.record_digest_end(1_751_010_000.5)
    finally:
        await store.aclose()
    await inspect(store_url, _downgrade_to_0002)
    assert ["0002"] == await inspect(store_url, versions)
    assert [("watcher", "digest.last_end", "1751010000.5")] == await inspect(
        store_url, sink_state_rows
    )
