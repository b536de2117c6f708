"""The SQLite file deleted or replaced under a running store (issue 15, item 4): noticed at
the next write, written back from the open connection, nothing lost, said loudly."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import structlog

from tests.factories import transition
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor
from watcher.stores import open_store
from watcher.stores.sqlite import SQLiteStore


async def _store(path: Path) -> SQLiteStore:
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


async def _history(store: SQLiteStore, first: int, count: int) -> None:
    for n in range(first, first + count):
        await store.commit("ft", Cursor(), [], [Routed(transition(n), ["hook"])], now=float(n))


def _ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM transitions")}


def _set_aside(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".replaced-" in p.name]


@pytest.mark.parametrize("how", ["deleted", "deleted-with-wal", "replaced"])
async def test_a_lost_file_is_written_back_and_nothing_is_lost(tmp_path: Path, how: str) -> None:
    path = tmp_path / "state.db"
    store = await _store(path)
    try:
        await _history(store, 1, 5)
        if how == "replaced":
            path.unlink()
            with closing(sqlite3.connect(path)) as foreign, foreign:  # someone else's now
                foreign.execute("CREATE TABLE other (x)")
        else:
            path.unlink()
            if how == "deleted-with-wal":
                for suffix in ("-wal", "-shm"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
        with structlog.testing.capture_logs() as logs:
            await _history(store, 6, 3)  # the next write notices, writes back, goes on
        events = [entry["event"] for entry in logs]
        assert "store_file_lost" in events and "store_file_restored" in events
        assert store.notice is not None and "written back" in store.notice
        assert store.standing_error is None
        assert 8 == (await store.status()).pending
    finally:
        await store.aclose()
    assert {f"t{n}" for n in range(1, 9)} <= _ids(path)  # on disk, at the path
    reopened = await _store(path)  # and a restart finds it all
    try:
        assert 8 == (await reopened.status()).pending
    finally:
        await reopened.aclose()
    if how == "replaced":
        aside = _set_aside(tmp_path)
        assert 1 == len(aside)  # the other file is kept, not overwritten
        with closing(sqlite3.connect(aside[0])) as conn:
            assert [("other",)] == conn.execute("SELECT name FROM sqlite_master").fetchall()


async def test_a_file_that_cannot_be_written_back_fails_readiness_and_keeps_the_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = await _store(path)
    blocker = tmp_path / "state.db.restoring"  # where the copy goes: a directory, for now
    try:
        await _history(store, 1, 2)
        path.unlink()
        blocker.mkdir()
        with structlog.testing.capture_logs() as logs:
            await _history(store, 3, 2)  # goes on into the open database
        assert "store_file_not_restored" in [entry["event"] for entry in logs]
        assert store.standing_error is not None and "cannot write it back" in store.standing_error
        blocker.rmdir()
        await _history(store, 5, 1)  # the next write succeeds in writing it back
        assert store.standing_error is None
        assert 5 == (await store.status()).pending
    finally:
        await store.aclose()
    assert {f"t{n}" for n in range(1, 6)} <= _ids(path)


async def test_metrics_say_the_file_was_written_back(tmp_path: Path) -> None:
    """/metrics: ``watcher_store_file_restores_total`` counts the write-backs and
    ``watcher_store_writable`` is 1 once the file is back."""
    from prometheus_client import generate_latest

    from watcher.app.metrics import Metrics

    path = tmp_path / "state.db"
    store = await _store(path)
    metrics = Metrics(process=False)
    metrics.watch_store(store)
    try:
        await _history(store, 1, 1)
        path.unlink()
        await _history(store, 2, 1)
        text = generate_latest(metrics.registry).decode()
        assert "watcher_store_file_restores_total 1.0" in text
        assert "watcher_store_writable 1.0" in text
        store.standing_error = "database file deleted, cannot write it back"
        assert "watcher_store_writable 0.0" in generate_latest(metrics.registry).decode()
    finally:
        await store.aclose()
