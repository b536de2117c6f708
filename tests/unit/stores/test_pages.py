"""The status page's reads: bounded, filtered, and right on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.factories import transition
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor, Snapshot
from watcher.stores.sql import SqlStore


def snap(job_id: str, status: str, *, terminal: bool = False, source: str = "ft") -> Snapshot:
    return Snapshot(
        source=source,
        job_id=job_id,
        status=status,
        created_at=1,
        modified_at=2,
        status_since=2,
        terminal=terminal,
        job={"id": job_id, "status": status},
    )


async def _jobs(store: SqlStore) -> None:
    await store.commit("ft", Cursor(), [snap("a", "RUNNING"), snap("b", "QUEUED")], [], now=1.0)
    await store.commit("ft", Cursor(), [snap("c", "RUNNING")], [], now=2.0)
    await store.commit("ft", Cursor(), [snap("d", "SUCCESS", terminal=True)], [], now=3.0)
    await store.commit("ft", Cursor(), [snap("e", "FAILED", terminal=True)], [], now=4.0)
    await store.commit("batch", Cursor(), [snap("x", "RUNNING", source="batch")], [], now=5.0)


async def test_overview_lists_followed_jobs_latest_first_with_limits(store: SqlStore) -> None:
    """Followed jobs latest change first, at most ``limit`` of them with the total; the
    ``recent`` terminal ones; every source's cursor and last poll."""
    await _jobs(store)
    view = await store.overview(source=None, status=None, limit=3, recent=1)
    assert ["x", "c", "a"] == [row.snapshot.job_id for row in view.followed]
    assert 4 == view.followed_total
    assert ["e"] == [row.snapshot.job_id for row in view.recent]
    assert {"ft": 4.0, "batch": 5.0} == view.last_poll_at
    assert {"ft", "batch"} == set(view.cursors)
    assert 5.0 == view.followed[0].updated_at


async def test_overview_filters_by_source_and_status(store: SqlStore) -> None:
    await _jobs(store)
    view = await store.overview(source="ft", status="RUNNING", limit=10, recent=10)
    assert ["c", "a"] == [row.snapshot.job_id for row in view.followed]
    assert 2 == view.followed_total
    assert ["e", "d"] == [row.snapshot.job_id for row in view.recent]
    none = await store.overview(source="nope", status=None, limit=10, recent=10)
    assert ([], 0, []) == (none.followed, none.followed_total, none.recent)


async def test_overview_pages_through_every_followed_job(store: SqlStore) -> None:
    """``offset`` skips the newest ones: the pages together hold each followed job once."""
    jobs = [snap(f"j{n:02}", "RUNNING") for n in range(7)]
    for n, one in enumerate(jobs):
        await store.commit("ft", Cursor(), [one], [], now=float(n))
    seen = []
    for offset in (0, 3, 6, 9):
        view = await store.overview(source=None, status=None, limit=3, recent=0, offset=offset)
        assert 7 == view.followed_total
        seen.append([row.snapshot.job_id for row in view.followed])
    assert [["j06", "j05", "j04"], ["j03", "j02", "j01"], ["j00"], []] == seen


async def test_job_history_shows_each_transition_and_where_it_went(store: SqlStore) -> None:
    """Newest transition first, each with its deliveries (none when nothing routed it);
    another job's transitions are not there; ``limit`` keeps the newest."""
    await store.commit("ft", Cursor(), [snap("j1", "RUNNING")], [], now=1.0)
    routed = [
        Routed(transition(1, "j1"), ["a", "b"]),
        Routed(transition(2, "j2"), ["a"]),
        Routed(transition(3, "j1"), []),
    ]
    await store.enqueue(routed, now=2.0)
    [first, *_] = await store.pending(now=2.0, limit=10)
    await store.failed(first.seq, "a", now=3.0, error="HTTP 500", retry_at=None)
    history = await store.job_history("ft", "j1", limit=10)
    assert history.job is not None and "RUNNING" == history.job.snapshot.status
    assert ["t3", "t1"] == [t.transition_id for t in history.transitions]
    assert [] == history.transitions[0].deliveries
    assert [("a", "dead", 1, "HTTP 500"), ("b", "pending", 0, None)] == [
        d[:4] for d in history.transitions[1].deliveries
    ]
    assert ["t3"] == [
        t.transition_id for t in (await store.job_history("ft", "j1", limit=1)).transitions
    ]
    unknown = await store.job_history("ft", "nope", limit=10)
    assert (None, []) == (unknown.job, unknown.transitions)


async def test_deliveries_view_lists_each_state_and_counts_per_sink(store: SqlStore) -> None:
    routed = [Routed(transition(n, f"j{n}"), ["a", "b"]) for n in range(1, 5)]
    await store.enqueue(routed, now=1.0)
    due = await store.pending(now=1.0, limit=10)
    by_key = {(p.envelope.transition.id, p.sink): p for p in due}
    await store.delivered(by_key["t1", "a"].seq, "a", now=2.0)
    await store.failed(by_key["t2", "a"].seq, "a", now=3.0, error="HTTP 400", retry_at=None)
    await store.failed(by_key["t3", "b"].seq, "b", now=4.0, error="timeout", retry_at=50.0)
    view = await store.deliveries_view(limit=3)
    assert 3 == len(view.pending)  # of 5: the limit
    assert ("t1", "b") == (view.pending[0].transition_id, view.pending[0].sink)
    assert [("t2", "a", "HTTP 400")] == [(r.transition_id, r.sink, r.last_error) for r in view.dead]
    assert [] == view.silenced
    a, b = view.sinks["a"], view.sinks["b"]
    assert (2, 1, 1, 2.0) == (a.pending, a.dead, a.delivered, a.last_delivered_at)
    assert (4, 0, 0, None, "timeout") == (
        b.pending, b.dead, b.delivered, b.last_delivered_at, b.last_error
    )  # fmt: skip
