"""The silences table on SQLite and PostgreSQL: kept, listed, active by time, ended once;
a database at 0003 upgrades to it (its outbox kept) and downgrades without it."""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import command

from tests.factories import transition
from tests.unit.stores.test_migrations import inspect, tables_and_columns
from watcher.model.outbox import Routed
from watcher.model.silences import Silence, new_silence_id
from watcher.stores import migrate, open_store
from watcher.stores import migrations as migrations_pkg
from watcher.stores.sql import SqlStore

NOW = time.time()  # status() counts the active silences at the wall time


def silence(*, at: float | None = None, **fields: object) -> Silence:
    """A silence made at ``at`` (the module's NOW by default: a test comparing with the
    wall time passes its own, taken when it runs, not when the module was imported)."""
    now = NOW if at is None else at
    base: dict[str, object] = {
        "id": new_silence_id(),
        "matchers": {"source": "ft", "job_id": "ftjob-*"},
        "starts_at": now - 10,
        "ends_at": now + 3600,
        "comment": "maintenance ✓",
        "created_by": "ana",
        "created_at": now - 10,
    }
    return Silence(**(base | fields))  # type: ignore[arg-type]


async def test_kept_listed_and_active(store: SqlStore) -> None:
    now = time.time()
    timed = silence(at=now, created_at=now - 10)
    bound = silence(at=now, ends_at=None, resolved=("ft", "ftjob-1"), created_at=now - 5)
    later = silence(at=now, starts_at=now + 100, created_at=now - 1)
    past = silence(at=now, ends_at=now - 1, created_at=now - 20)
    for s in (timed, bound, later, past):
        await store.add_silence(s)
    assert [timed, bound] == await store.active_silences(now)
    assert [later, bound, timed] == await store.list_silences(include_ended=False)
    assert [later, bound, timed, past] == await store.list_silences(include_ended=True)
    assert 2 == (await store.status()).silences_active


async def test_a_silence_ends_once(store: SqlStore) -> None:
    s = silence()
    await store.add_silence(s)
    ended = await store.expire_silence(s.id, now=NOW, by="bo", reason="expired")
    assert ended is not None
    assert (NOW, "bo", "expired") == (ended.ended_at, ended.ended_by, ended.end_reason)
    assert ended.matchers == s.matchers
    assert await store.expire_silence(s.id, now=NOW + 1, by="cy", reason="expired") is None
    assert await store.expire_silence("sil-none", now=NOW, by="cy", reason="expired") is None
    assert [] == await store.active_silences(NOW)
    assert [ended] == await store.list_silences(include_ended=True)
    assert 0 == (await store.status()).silences_active


async def test_silenced_deliveries_wait_for_no_one(store: SqlStore) -> None:
    """Silenced rows are never pending, never due, and never hold back the job's next."""
    await store.enqueue(
        [Routed(transition(1), ["hooks"], silenced_by="sil-x"), Routed(transition(2), ["hooks"])],
        now=NOW,
    )
    assert ["t2"] == [p.envelope.transition.id for p in await store.pending(now=NOW, limit=9)]
    (row,) = await store.list_deliveries(state="silenced", limit=9)
    assert ("t1", "silenced by sil-x", 0) == (row.transition_id, row.last_error, row.attempts)
    assert (1, 1) == ((s := await store.status()).silenced, s.pending)


async def test_a_database_at_0003_upgrades(store_url: str) -> None:
    def at_0003(conn: sa.Connection) -> None:
        command.upgrade(migrations_pkg.alembic_config(conn), "0003")
        conn.commit()

    await inspect(store_url, at_0003)
    assert "silences" not in await inspect(store_url, tables_and_columns)
    assert migrations_pkg.head() == await migrate(store_url)
    store = open_store(store_url)
    await store.open()
    try:
        s = silence()
        await store.add_silence(s)
        assert [s] == await store.active_silences(NOW)
    finally:
        await store.aclose()

    def back_to_0003(conn: sa.Connection) -> None:
        command.downgrade(migrations_pkg.alembic_config(conn), "0003")
        conn.commit()

    await inspect(store_url, back_to_0003)
    assert "silences" not in await inspect(store_url, tables_and_columns)
