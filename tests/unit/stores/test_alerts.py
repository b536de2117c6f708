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


async def test_acknowledging_marks_the_jobs_open_sent_alerts(store: SqlStore) -> None:
    """The job's open alerts that were sent are acknowledged (who, when) and returned;
    resolved ones, silent ones and other jobs' are left alone."""
    silent = {"type": "fine_tuning.job.stalled", "silent": True}
    await store.save_alerts(
        "ft",
        [
            alert("a1", data={"type": "fine_tuning.job.stalled", "since": "S"}),
            alert("a2", rule="overrun"),
            alert("a3", resolved_at=5.0),
            alert("a4", rule="other", data=silent),
            alert("b1", job_id="j2"),
        ],
        [],
        now=10.0,
    )
    await store.save_alerts("bt", [alert("c1", source="bt")], [], now=10.0)
    acked = await store.acknowledge_alerts("j1", source="ft", by="alice", now=20.0)
    assert ["a1", "a2"] == sorted(a.id for a in acked)
    mark = {"by": "alice", "at": 20.0}
    stored = {a.id: a for a in await store.open_alerts("ft")}
    assert (mark, mark) == (stored["a1"].data["acknowledged"], stored["a2"].data["acknowledged"])
    assert "S" == stored["a1"].data["since"]
    assert all("acknowledged" not in stored[i].data for i in ("a4", "b1"))
    assert "acknowledged" not in (await store.open_alerts("bt"))[0].data


async def test_acknowledging_without_a_source_covers_every_source(store: SqlStore) -> None:
    await store.save_alerts("ft", [alert("a1")], [], now=10.0)
    await store.save_alerts("bt", [alert("c1", source="bt")], [], now=10.0)
    acked = await store.acknowledge_alerts("j1", source=None, by="bob", now=20.0)
    assert [("bt", "c1"), ("ft", "a1")] == sorted((a.source, a.id) for a in acked)
    assert [] == await store.acknowledge_alerts("nope", source=None, by="bob", now=20.0)


async def test_an_acknowledgement_outlives_a_save_read_before_it(store: SqlStore) -> None:
    """Alerting read the alert, someone acknowledged it, alerting saves a repeat: the
    acknowledgement stays; a resolved alert's id fired anew starts unacknowledged."""
    await store.save_alerts("ft", [alert("a1")], [], now=10.0)
    await store.open_alerts("ft")  # what alerting read (no acknowledgement)
    await store.acknowledge_alerts("j1", source="ft", by="alice", now=15.0)
    await store.save_alerts("ft", [alert("a1", last_sent_at=20.0, repeats=1)], [], now=20.0)
    (kept,) = await store.open_alerts("ft")
    assert ({"by": "alice", "at": 15.0}, 1) == (kept.data.get("acknowledged"), kept.repeats)
    await store.save_alerts("ft", [alert("a1", resolved_at=30.0, data=kept.data)], [], now=30.0)
    await store.save_alerts("ft", [alert("a1", fired_at=40.0)], [], now=40.0)
    (again,) = await store.open_alerts("ft")
    assert "acknowledged" not in again.data
