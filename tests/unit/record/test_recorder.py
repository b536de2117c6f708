"""The one recorder: routes transitions, commits them in one transaction with what they
belong to, counts them once and wakes the dispatcher only when something was added."""

from __future__ import annotations

import pytest

from tests.factories import job, transition
from tests.unit.record.fakes import Bell, Counted
from watcher.config import MatchConfig, RouteConfig
from watcher.detect.diff import diff
from watcher.detect.routing import Router
from watcher.exceptions import StaleCycle
from watcher.model.outbox import AlertState
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.record.recorder import Recorder
from watcher.sources.fine_tuning import KIND
from watcher.stores.sql import SqlStore

NOW = 1_751_020_000.0


def recorder(store: SqlStore, counted: Counted, bell: Bell) -> Recorder:
    """Failures to ``pager`` (and to ``hooks``), everything else to ``hooks`` only."""
    router = Router(
        [
            RouteConfig(match=MatchConfig(type=["*.failed"]), sinks=["pager", "hooks"]),
            RouteConfig(match=MatchConfig(source=["ft"]), sinks=["hooks"]),
        ]
    )
    return Recorder(store, router, metrics=counted, wake=bell)


def failed(n: int) -> Transition:
    return Transition(id=f"f{n}", type="fine_tuning.job.failed", source="ft", job_id="j1")


async def outbox(store: SqlStore) -> list[tuple[str, str]]:
    rows = await store.list_deliveries(state=None, limit=100)
    return sorted((r.transition_id, r.sink) for r in rows)


async def test_a_cycle_routes_each_transition_to_its_sinks(sqlite: SqlStore) -> None:
    """A cycle's commit holds one outbox row per (transition, sink) its routes reach."""
    counted, bell = Counted(), Bell()
    added = await recorder(sqlite, counted, bell).cycle(
        "ft", Cursor(baseline_done=True), [], [transition(1), failed(2)], now=NOW
    )
    assert 3 == added
    assert [("f2", "hooks"), ("f2", "pager"), ("t1", "hooks")] == await outbox(sqlite)


async def test_a_cycle_commits_snapshots_cursor_and_outbox_together(sqlite: SqlStore) -> None:
    """Snapshots, cursor and outbox rows are in the store after the one commit."""
    snapshot, found = diff(None, job("a", "RUNNING"), source="ft", kind=KIND)
    await recorder(sqlite, Counted(), Bell()).cycle(
        "ft", Cursor(baseline_done=True, watermark=7), [snapshot], found, now=NOW
    )
    assert (7, ["a"], len(found)) == (
        (await sqlite.load_cursor("ft")).watermark,
        list(await sqlite.active_snapshots("ft")),
        len(await sqlite.list_deliveries(state=None, limit=100)),
    )


async def test_each_transition_is_counted_once_after_its_commit(sqlite: SqlStore) -> None:
    """The metrics see every transition recorded once, whatever the number of sinks."""
    counted, bell = Counted(), Bell()
    rec = recorder(sqlite, counted, bell)
    await rec.cycle("ft", Cursor(), [], [transition(1), failed(2)], now=NOW)
    await rec.outbox([failed(3)], now=NOW)
    expected = ["fine_tuning.job.running", "fine_tuning.job.failed", "fine_tuning.job.failed"]
    assert expected == counted.types


async def test_the_dispatcher_is_woken_only_when_a_delivery_was_added(sqlite: SqlStore) -> None:
    """A commit that adds deliveries wakes the dispatcher; one that adds none (nothing to
    send, or the same transitions again) does not."""
    counted, bell = Counted(), Bell()
    rec = recorder(sqlite, counted, bell)
    await rec.cycle("ft", Cursor(), [], [transition(1)], now=NOW)
    await rec.cycle("ft", Cursor(), [], [], now=NOW)
    await rec.outbox([transition(1)], now=NOW)  # already in the outbox: same id
    assert 1 == bell.rings


async def test_a_transition_no_route_matches_is_recorded_and_sent_nowhere(
    sqlite: SqlStore,
) -> None:
    """A transition of another source reaches no sink, yet is recorded and counted."""
    counted, bell = Counted(), Bell()
    lonely = Transition(id="b1", type="batch.job.running", source="batch", job_id="j2")
    added = await recorder(sqlite, counted, bell).outbox([lonely], now=NOW)
    recorded = await sqlite.transitions_between(0, NOW + 1)
    assert (0, [], 0) == (added, await outbox(sqlite), bell.rings)
    assert (["b1"], ["batch.job.running"]) == ([t.id for t, _ in recorded], counted.types)


async def test_given_sinks_replace_the_routes(sqlite: SqlStore) -> None:
    """Outbox-only transitions bound for given sinks (the digest's) skip the routes."""
    await recorder(sqlite, Counted(), Bell()).outbox([failed(1)], now=NOW, sinks=["mail"])
    assert [("f1", "mail")] == await outbox(sqlite)


async def test_a_stale_cycle_is_refused_and_neither_counted_nor_woken(sqlite: SqlStore) -> None:
    """A commit from a cursor version another commit has passed raises StaleCycle, writes
    nothing, counts nothing and leaves the dispatcher asleep."""
    counted, bell = Counted(), Bell()
    rec = recorder(sqlite, counted, bell)
    await rec.cycle("ft", Cursor(), [], [], now=NOW, expect=0)  # another replica's commit
    with pytest.raises(StaleCycle):
        await rec.cycle("ft", Cursor(), [], [transition(1)], now=NOW, expect=0)
    assert ([], [], 0) == (await outbox(sqlite), counted.types, bell.rings)


async def test_alert_states_and_their_transitions_are_recorded_together(
    sqlite: SqlStore,
) -> None:
    """Alert states and the outbox rows of their transitions land in one transaction."""
    counted, bell = Counted(), Bell()
    state = AlertState(id="a1", source="ft", job_id="j1", rule="stalled", fired_at=NOW,
                       last_sent_at=NOW)  # fmt: skip
    added = await recorder(sqlite, counted, bell).alerts("ft", [state], [failed(1)], now=NOW)
    open_alerts = await sqlite.open_alerts("ft")
    assert (2, ["a1"], 1) == (added, [a.id for a in open_alerts], bell.rings)
    assert ["fine_tuning.job.failed"] == counted.types


def test_route_names_the_sinks_of_each_transition() -> None:
    """route() pairs each transition with the union of its routes' sinks, in order."""
    rec = Recorder(None, Router([RouteConfig(sinks=["hooks"])]))  # type: ignore[arg-type]
    assert [["hooks"]] == [list(r.sinks) for r in rec.route([transition(1)], NOW)]
