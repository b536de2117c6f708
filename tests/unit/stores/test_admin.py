"""What operators see and do: the deliveries list and putting dead letters back."""

from __future__ import annotations

from tests.factories import transition
from watcher.model.outbox import DeliveryRow, Routed
from watcher.model.snapshot import Cursor
from watcher.stores.sql import SqlStore


async def _three_deliveries(store: SqlStore) -> None:
    """t1 -> a delivered, t2 -> a dead, t3 -> a and b pending."""
    routed = [
        Routed(transition(1, "j1"), ["a"]),
        Routed(transition(2, "j2"), ["a"]),
        Routed(transition(3, "j3"), ["a", "b"]),
    ]
    await store.commit("ft", Cursor(), [], routed, now=1.0)
    first, second, *_ = await store.pending(now=1.0, limit=10)
    await store.delivered(first.seq, "a", now=2.0)
    await store.failed(second.seq, "a", now=3.0, error="HTTP 400", retry_at=None)


async def test_list_deliveries_newest_first(store: SqlStore) -> None:
    """Every delivery, newest transition first, with its transition and its last error."""
    await _three_deliveries(store)
    rows = await store.list_deliveries(state=None, limit=10)
    expected = [("t3", "a", "pending"), ("t3", "b", "pending"), ("t2", "a", "dead")]
    expected.append(("t1", "a", "delivered"))
    assert expected == [(r.transition_id, r.sink, r.state) for r in rows]
    dead = DeliveryRow(
        transition_id="t2", type="fine_tuning.job.running", source="ft", job_id="j2", sink="a",
        state="dead", attempts=1, next_attempt_at=1.0, created_at=1.0, updated_at=3.0,
        last_error="HTTP 400",
    )  # fmt: skip
    assert dead == rows[2]
    assert [("t3", "a")] == [
        (r.transition_id, r.sink) for r in await store.list_deliveries(state=None, limit=1)
    ]


async def test_list_deliveries_of_one_state(store: SqlStore) -> None:
    """A state filter keeps only the deliveries in that state."""
    await _three_deliveries(store)
    rows = await store.list_deliveries(state="dead", limit=10)
    assert [("t2", "a")] == [(r.transition_id, r.sink) for r in rows]


async def test_retry_dead_puts_dead_letters_back(store: SqlStore) -> None:
    """A dead delivery goes back to pending with a fresh age; one transition's or all."""
    await _three_deliveries(store)
    assert 0 == await store.retry_dead("t1", now=5.0)  # delivered, not dead
    assert 1 == await store.retry_dead("t2", now=5.0)
    [row] = [
        r for r in await store.list_deliveries(state="pending", limit=10) if r.transition_id == "t2"
    ]
    assert (5.0, 5.0, 5.0) == (row.next_attempt_at, row.created_at, row.updated_at)
    assert 0 == await store.retry_dead(None, now=6.0)
    status = await store.status()
    assert (3, 0, 1) == (status.pending, status.dead, status.delivered)
