"""What sinks and the digest remember across restarts: sink state, the digest log, and the
transitions a digest reads back."""

from __future__ import annotations

from tests.factories import transition
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor
from watcher.stores import open_store
from watcher.stores.sql import SqlStore


async def test_sink_state_is_kept_per_sink_and_key(store: SqlStore) -> None:
    """A value put under a key comes back for that sink only; putting again replaces it."""
    assert await store.get_sink_state("slack", "thread:j1") is None
    await store.put_sink_state("slack", "thread:j1", "1700000000.000100")
    await store.put_sink_state("slack", "thread:j1", "1700000000.000200")
    await store.put_sink_state("other", "thread:j1", "x")
    assert "1700000000.000200" == await store.get_sink_state("slack", "thread:j1")
    assert "x" == await store.get_sink_state("other", "thread:j1")


async def test_no_digest_yet(store: SqlStore) -> None:
    """A database that never queued a digest has no last digest end."""
    assert await store.last_digest_end() is None


async def test_digest_end_is_recorded_and_replaced(store: SqlStore) -> None:
    """The last recorded end is the one read back, exactly (no rounding of the float)."""
    await store.record_digest_end(1_751_010_000.123456)
    assert 1_751_010_000.123456 == await store.last_digest_end()
    await store.record_digest_end(1_751_096_400.5)
    assert 1_751_096_400.5 == await store.last_digest_end()


async def test_digest_end_is_not_sink_state(store: SqlStore) -> None:
    """The digest's bookkeeping lives apart: no sink named "watcher" appears in sink state."""
    await store.record_digest_end(42.0)
    assert await store.get_sink_state("watcher", "digest.last_end") is None


async def test_digest_end_survives_reopen(store_url: str) -> None:
    """A new process opening the same database finds where the last digest ended."""
    first = open_store(store_url)
    await first.open()
    await first.record_digest_end(1234.5)
    await first.aclose()
    second = open_store(store_url)
    await second.open()
    try:
        assert 1234.5 == await second.last_digest_end()
    finally:
        await second.aclose()


async def test_transitions_between_is_half_open_in_detection_order(store: SqlStore) -> None:
    """Transitions detected in ``[start, end)`` come back in detection order with their
    detection time; those at ``end`` belong to the next window."""
    await store.commit("ft", Cursor(), [], [Routed(transition(1), ["a"])], now=10.0)
    await store.enqueue([Routed(transition(2), [])], now=20.0)
    await store.enqueue([Routed(transition(3), ["a"])], now=30.0)
    found = await store.transitions_between(10.0, 30.0)
    assert [(transition(1), 10.0), (transition(2), 20.0)] == found
    assert [(transition(3), 30.0)] == await store.transitions_between(30.0, 31.0)
