"""Time-rule alerts: saved with their outbox rows in one transaction, open until resolved."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import transition
from watcher.model.outbox import AlertState, Routed
from watcher.stores.sql import SqlStore


def alert(alert_id: str = "a1", **changes: Any) -> AlertState:
    fields: dict[str, Any] = {
        "id": alert_id,
        "source": "ft",
        "job_id": "j1",
        "rule": "stalled",
        "fired_at": 10.0,
        "last_sent_at": 10.0,
        "data": {"type": "fine_tuning.job.stalled", "silent": False},
    }
    return AlertState(**(fields | changes))


async def test_saved_alerts_are_open_until_resolved(store: SqlStore) -> None:
    """A saved alert reads back whole; once saved resolved it is no longer open."""
    await store.save_alerts("ft", [alert("a1"), alert("a2", job_id="j2")], [], now=10.0)
    assert [alert("a1"), alert("a2", job_id="j2")] == sorted(
        await store.open_alerts("ft"), key=lambda a: a.id
    )
    repeated = alert("a1", last_sent_at=20.0, repeats=1, data={"type": "x"})
    await store.save_alerts(
        "ft", [repeated, alert("a2", job_id="j2", resolved_at=20.0)], [], now=20.0
    )
    assert [repeated] == await store.open_alerts("ft")
    assert [] == await store.open_alerts("other")


async def test_save_alerts_queues_its_transitions(store: SqlStore) -> None:
    """The transitions an alert check produced are queued with the alert states."""
    added = await store.save_alerts("ft", [alert()], [Routed(transition(1), ["a", "b"])], now=1.0)
    assert 2 == added
    assert [("t1", "a"), ("t1", "b")] == [
        (p.envelope.transition.id, p.sink) for p in await store.pending(now=1.0, limit=10)
    ]


async def test_save_alerts_is_atomic(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """If writing the outbox fails, the alert states of that save are not kept either."""

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_enqueue", broken)
    with pytest.raises(RuntimeError):
        await store.save_alerts("ft", [alert()], [Routed(transition(1), ["a"])], now=1.0)
    assert [] == await store.open_alerts("ft")
