"""A steady cycle where nothing changed costs the store one transaction, on SQLite and
PostgreSQL alike: what a good cycle committed is kept for the next one (and read again
whenever it may be out of date), and a job fetched again unchanged is not written again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import event

from tests.factories import job
from tests.unit.record.fakes import Clock
from tests.unit.record.test_pipeline import ScriptedSource, scripted
from watcher.model.snapshot import Cursor
from watcher.stores.schema import snapshots
from watcher.stores.sql import SqlStore


@contextmanager
def statements(store: SqlStore) -> Iterator[list[str]]:
    """The first words of every statement the store sends meanwhile (BEGIN and COMMIT too)."""
    seen: list[str] = []
    engine = store.engine.sync_engine

    def executed(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(" ".join(statement.split()[:3]))

    def begun(conn: object) -> None:
        seen.append("BEGIN")

    def committed(conn: object) -> None:
        seen.append("COMMIT")

    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "begin", begun)
    event.listen(engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "begin", begun)
        event.remove(engine, "commit", committed)


async def updated_at(store: SqlStore, job_id: str) -> float:
    query = sa.select(snapshots.c.updated_at).where(snapshots.c.job_id == job_id)
    async with store.engine.connect() as conn:
        return float((await conn.execute(query)).scalar_one())


def running() -> list:  # type: ignore[type-arg]
    return [job("a", "RUNNING"), job("b", "QUEUED")]


async def test_a_steady_cycle_is_one_transaction_the_cursor(store: SqlStore) -> None:
    """Nothing changed: no read, no snapshot written; the cursor (last poll, version) is the
    cycle's one write."""
    source = ScriptedSource(running(), running(), running())
    clock = Clock(5000.0)
    pipeline, _ = scripted(store, source, clock)
    await pipeline.poll("ft")  # the baseline
    await pipeline.poll("ft")
    clock.now = 5030.0
    with statements(store) as seen:
        assert "ok" == (await pipeline.poll("ft")).outcome
    assert ["BEGIN", "INSERT INTO cursors", "COMMIT"] == seen
    assert 5030.0 == (await store.status()).last_poll_at["ft"]


async def test_a_job_fetched_again_unchanged_keeps_its_last_change(store: SqlStore) -> None:
    """An unchanged job is not written again (its ``updated_at`` is its last change); a
    changed one is, and the next cycle diffs against it."""
    source = ScriptedSource(
        running(), running(), [job("a", "FAILED"), job("b", "QUEUED")], [job("b", "VALIDATING")]
    )
    clock = Clock(5000.0)
    pipeline, polls = scripted(store, source, clock)
    await pipeline.poll("ft")
    clock.now = 5030.0
    await pipeline.poll("ft")
    assert (5000.0, 5000.0) == (await updated_at(store, "a"), await updated_at(store, "b"))
    clock.now = 5060.0
    await pipeline.poll("ft")
    assert (5060.0, 5000.0) == (await updated_at(store, "a"), await updated_at(store, "b"))
    clock.now = 5090.0
    await pipeline.poll("ft")
    assert ["fine_tuning.job.failed", "fine_tuning.job.validating"] == polls.types
    assert {"b": "VALIDATING"} == {
        k: s.status for k, s in (await store.active_snapshots("ft")).items()
    }


async def test_a_source_written_elsewhere_is_read_again(store: SqlStore) -> None:
    """Another writer of the source between two cycles (a replica that held it meanwhile):
    the next cycle's commit is refused by the version guard, and the one after reads what
    the other wrote; after :meth:`Pipeline.forget` (the source lost) it is read at once."""
    source = ScriptedSource(running(), running(), running(), running(), running())
    pipeline, _ = scripted(store, source, Clock(5000.0))
    await pipeline.poll("ft")
    cursor = await store.load_cursor("ft")
    await store.commit("ft", Cursor(watermark=9, baseline_done=True), [], [], now=1.0)
    assert "stale" == (await pipeline.poll("ft")).outcome
    assert "ok" == (await pipeline.poll("ft")).outcome
    assert 9 == (await store.load_cursor("ft")).watermark
    assert cursor.version + 2 == (await store.load_cursor("ft")).version
    await store.commit("ft", Cursor(watermark=11, baseline_done=True), [], [], now=1.0)
    pipeline.forget("ft")
    assert "ok" == (await pipeline.poll("ft")).outcome
    assert 11 == (await store.load_cursor("ft")).watermark


async def test_a_failed_cycle_reads_the_store_again(store: SqlStore) -> None:
    """What was kept is dropped by a cycle that does not end well: the next one reads."""
    from watcher.exceptions import SourceUnavailable

    down = SourceUnavailable("ft", "HTTP 503 from list")
    source = ScriptedSource(running(), down, running())
    pipeline, _ = scripted(store, source, Clock(5000.0))
    await pipeline.poll("ft")
    assert "error" == (await pipeline.poll("ft")).outcome
    with statements(store) as seen:
        assert "ok" == (await pipeline.poll("ft")).outcome
    assert "SELECT cursors.data, cursors.version" in seen
