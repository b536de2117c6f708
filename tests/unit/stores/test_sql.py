"""The store: snapshots and outbox in one transaction, delivery states, reopen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.factories import T0, history, job, transition
from watcher.detect.diff import diff
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor
from watcher.sources.fine_tuning import KIND
from watcher.stores import open_store
from watcher.stores.sql import SqlStore


async def test_commit_persists_snapshots_cursor_and_outbox(store: SqlStore) -> None:
    """One commit stores snapshots, the cursor and one delivery per routed sink."""
    snapshot, _ = diff(
        None, job(status="RUNNING", events=history("QUEUED", "RUNNING")), source="ft", kind=KIND
    )
    cursor = Cursor(watermark=T0, last_full_sync=1.0, baseline_done=True)
    added = await store.commit(
        "ft",
        cursor,
        [snapshot],
        [Routed(transition(1), ["a", "b"]), Routed(transition(2), [])],
        now=100.0,
    )
    assert 2 == added
    assert cursor == await store.load_cursor("ft")
    assert {"job-1": snapshot} == await store.active_snapshots("ft")
    pending = await store.pending(now=1e12, limit=10)
    assert [("t1", "a"), ("t1", "b")] == [(p.envelope.transition.id, p.sink) for p in pending]
    assert transition(1) == pending[0].envelope.transition
    status = await store.status()
    assert (2, 0, 0) == (status.pending, status.dead, status.delivered)


async def test_same_transition_is_not_queued_twice(store: SqlStore) -> None:
    """Re-detecting a transition (same id) after a crash adds no delivery."""
    await store.commit("ft", Cursor(), [], [Routed(transition(1), ["a"])], now=1.0)
    added = await store.commit("ft", Cursor(), [], [Routed(transition(1), ["a"])], now=2.0)
    assert 0 == added
    assert 1 == len(await store.pending(now=1e12, limit=10))


async def test_commit_is_atomic(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing the outbox fails, the snapshots of that commit are not kept either."""
    snapshot, _ = diff(None, job(status="RUNNING"), source="ft", kind=KIND)

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_enqueue", broken)
    with pytest.raises(RuntimeError):
        await store.commit(
            "ft", Cursor(baseline_done=True), [snapshot], [Routed(transition(1), ["a"])], now=1.0
        )
    assert {} == await store.active_snapshots("ft")
    assert Cursor() == await store.load_cursor("ft")


async def test_terminal_snapshots_are_not_active(store: SqlStore) -> None:
    """Terminal jobs leave the active set but can still be looked up."""
    running, _ = diff(None, job("a", status="RUNNING"), source="ft", kind=KIND)
    done, _ = diff(None, job("b", status="SUCCESS"), source="ft", kind=KIND)
    await store.commit("ft", Cursor(), [running, done], [], now=1.0)
    assert ["a"] == list(await store.active_snapshots("ft"))
    assert {"b"} == set(await store.get_snapshots("ft", ["b", "zzz"]))


async def test_delivery_states(store: SqlStore) -> None:
    """delivered and dead leave the pending list; a retry moves next_attempt_at."""
    routed = [Routed(transition(n, f"j{n}"), ["a"]) for n in (1, 2, 3)]
    await store.commit("ft", Cursor(), [], routed, now=1.0)
    first, second, third = await store.pending(now=1.0, limit=10)
    await store.delivered(first.seq, "a", now=2.0)
    await store.failed(second.seq, "a", now=2.0, error="HTTP 503", retry_at=50.0)
    await store.failed(third.seq, "a", now=2.0, error="HTTP 400", retry_at=None)
    assert [] == await store.pending(now=49.0, limit=10)
    pending = await store.pending(now=50.0, limit=10)
    assert [(second.seq, 1, 50.0)] == [(p.seq, p.attempts, p.next_attempt_at) for p in pending]
    assert 50.0 == await store.next_due()
    status = await store.status()
    assert (1, 1, 1) == (status.pending, status.dead, status.delivered)


async def test_state_survives_reopen(store_url: str) -> None:
    """A new process opening the same database finds snapshots and pending deliveries."""
    url = store_url
    first = open_store(url)
    await first.open()
    snapshot, _ = diff(None, job(status="RUNNING"), source="ft", kind=KIND)
    await first.commit(
        "ft", Cursor(watermark=5), [snapshot], [Routed(transition(1), ["a"])], now=1.0
    )
    await first.aclose()
    second = open_store(url)
    await second.open()
    try:
        assert Cursor(watermark=5) == await second.load_cursor("ft")
        assert ["t1"] == [p.envelope.transition.id for p in await second.pending(now=1e12, limit=5)]
    finally:
        await second.aclose()


async def test_prune_keeps_pending_and_dead(store: SqlStore) -> None:
    """Pruning forgets old delivered rows and unrouted transitions, never pending or dead."""
    routed = [Routed(transition(n, f"j{n}"), ["a"]) for n in (1, 2, 3)]
    await store.commit("ft", Cursor(), [], [*routed, Routed(transition(4), [])], now=1.0)
    first, second, _third = await store.pending(now=1.0, limit=10)
    await store.delivered(first.seq, "a", now=2.0)
    await store.failed(second.seq, "a", now=2.0, error="HTTP 400", retry_at=None)
    assert 2 == await store.prune(before=100.0)  # t1 (delivered) and t4 (unrouted)
    status = await store.status()
    assert (1, 1, 0) == (status.pending, status.dead, status.delivered)
    assert 0 == await store.prune(before=100.0)


async def test_pending_keeps_order_per_job_and_sink(store: SqlStore) -> None:
    """Only the earliest pending delivery of a job per sink is offered; other jobs and
    other sinks are not held up by it."""
    routed = [
        Routed(transition(1), ["a", "b"]),
        Routed(transition(2), ["a"]),
        Routed(transition(3, "j2"), ["a"]),
    ]
    await store.commit("ft", Cursor(), [], routed, now=1.0)
    offered = await store.pending(now=1.0, limit=10)
    assert [("t1", "a"), ("t1", "b"), ("t3", "a")] == [
        (p.envelope.transition.id, p.sink) for p in offered
    ]
    await store.failed(offered[0].seq, "a", now=1.0, error="503", retry_at=30.0)
    assert [("t1", "b"), ("t3", "a")] == [
        (p.envelope.transition.id, p.sink) for p in await store.pending(now=2.0, limit=10)
    ]
    assert 1.0 == await store.next_due()


async def test_home_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sqlite:///~/dir/state.db`` opens under the home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("sqlite:///~/watcher/state.db")
    await store.open()
    await store.aclose()
    assert (tmp_path / "watcher" / "state.db").exists()


async def test_failing_writes_are_reported_once_and_recovered(store: SqlStore) -> None:
    """A write that fails (here: a table gone) is remembered for /readyz and logged once per
    spell, not once per attempt; the next successful write clears it and says so."""
    import sqlalchemy as sa
    from structlog.testing import capture_logs

    await store.commit("ft", Cursor(), [], [], now=1.0)
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE cursors RENAME TO cursors_away"))
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(sa.exc.DBAPIError):
                await store.commit("ft", Cursor(watermark=2), [], [], now=2.0)
        assert store.write_error is not None
        assert "cursors" in store.write_error
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE cursors_away RENAME TO cursors"))
        await store.commit("ft", Cursor(watermark=3), [], [], now=3.0)
    assert store.write_error is None
    events = [e["event"] for e in logs if e["event"].startswith("store_")]
    assert ["store_unwritable", "store_writable_again"] == events
    assert Cursor(watermark=3) == await store.load_cursor("ft")


async def test_non_finite_values_in_a_job_do_not_break_the_commit(store: SqlStore) -> None:
    """``NaN`` and ``Infinity`` are valid to ``json.loads`` and to SQLite, refused by
    PostgreSQL's json (issue 15, item 1): stored as strings, on both stores."""
    import math

    metadata = {"cost": math.nan, "eta": math.inf, "nested": [{"x": -math.inf}]}
    hostile = job(status="RUNNING", metadata=metadata)
    snapshot, _ = diff(None, hostile, source="ft", kind=KIND)
    await store.commit("ft", Cursor(), [snapshot], [Routed(transition(1), ["a"])], now=1.0)
    kept = (await store.active_snapshots("ft"))["job-1"]
    assert "NaN" in str(kept.job) and "Infinity" in str(kept.job)
    assert 1 == (await store.status()).pending
