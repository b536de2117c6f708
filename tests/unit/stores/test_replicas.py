"""What several replicas sharing one store rely on: a cycle's commit is refused once another
replica committed the source since the cycle read it, and deliveries are claimed by one
replica at a time (with a lease that expires) without breaking the order per job and sink.

Every test runs on SQLite and on PostgreSQL; "two replicas" are two stores on one database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from tests.factories import job, transition
from watcher.detect.diff import diff
from watcher.exceptions import StaleCycle
from watcher.model.outbox import Routed
from watcher.model.snapshot import Cursor
from watcher.sources.fine_tuning import KIND
from watcher.stores import open_store
from watcher.stores.sql import SqlStore


@pytest.fixture
async def pair(store_url: str) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    first, second = open_store(store_url), open_store(store_url)
    await first.open()
    await second.open()
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_commit_from_a_stale_cursor_writes_nothing(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    """Replica A took the source over and committed; B's cycle, started before, is refused
    whole: no snapshot, no cursor, no outbox row."""
    a, b = pair
    read_by_b = await b.load_cursor("ft")
    read_by_a = await a.load_cursor("ft")
    assert 0 == read_by_a.version == read_by_b.version
    await a.commit("ft", Cursor(watermark=1), [], [Routed(transition(1), ["s"])], now=1.0, expect=0)
    snapshot, _ = diff(None, job(status="FAILED"), source="ft", kind=KIND)
    with pytest.raises(StaleCycle):
        await b.commit(
            "ft",
            Cursor(watermark=2),
            [snapshot],
            [Routed(transition(2), ["s"])],
            now=2.0,
            expect=read_by_b.version,
        )
    cursor = await a.load_cursor("ft")
    assert Cursor(watermark=1) == cursor
    assert 1 == cursor.version
    assert {} == await a.get_snapshots("ft", ["job-1"])
    assert ["t1"] == [p.envelope.transition.id for p in await a.pending(now=10.0, limit=10)]


async def test_each_commit_moves_the_version_on(store: SqlStore) -> None:
    for expected in range(3):
        cursor = await store.load_cursor("ft")
        assert expected == cursor.version
        await store.commit("ft", cursor, [], [], now=1.0, expect=cursor.version)
    # An unguarded commit (a single process) always goes through, and counts too.
    await store.commit("ft", Cursor(), [], [], now=1.0)
    assert 4 == (await store.load_cursor("ft")).version


async def test_racing_commits_of_one_source_let_exactly_one_through(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    a, b = pair
    await a.commit("ft", Cursor(), [], [], now=1.0, expect=0)
    results: list[str] = []

    async def attempt(store: SqlStore, name: str) -> None:
        try:
            await store.commit("ft", Cursor(watermark=9), [], [], now=2.0, expect=1)
        except StaleCycle:
            results.append("stale")
        else:
            results.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt, a, "a")
        tg.start_soon(attempt, b, "b")
    assert ["stale"] == [r for r in results if r == "stale"]
    assert 2 == (await a.load_cursor("ft")).version


async def _queue(store: SqlStore, *items: tuple[int, str]) -> None:
    routed = [Routed(transition(n, job_id), ["hook"]) for n, job_id in items]
    await store.commit("ft", Cursor(), [], routed, now=100.0)


async def test_a_claimed_delivery_is_nobody_elses_until_its_lease_ends(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    a, b = pair
    await _queue(a, (1, "j1"), (2, "j2"))
    keys = [(p.seq, p.sink) for p in await a.pending(now=100.0, limit=10)]
    assert 2 == len(keys)
    assert set(keys) == await a.claim(keys, owner="a", until=160.0, now=100.0)
    assert set() == await b.claim(keys, owner="b", until=170.0, now=110.0)
    assert [] == await b.pending(now=110.0, limit=10)
    assert 160.0 == await b.next_due()  # due again, for anyone, when the lease runs out
    # A killed before sending: its lease expires and another replica takes over.
    assert set(keys) == await b.claim(keys, owner="b", until=230.0, now=161.0)
    await b.delivered(keys[0][0], "hook", now=162.0)
    await b.failed(keys[1][0], "hook", now=162.0, error="503", retry_at=200.0)
    # A failed attempt drops the claim: the retry is anyone's when due.
    assert [keys[1]] == [(p.seq, p.sink) for p in await a.pending(now=200.0, limit=10)]


async def test_claims_keep_the_order_per_job_and_sink(store: SqlStore) -> None:
    """A later transition of a job is not claimable while an earlier one is pending, even
    when the earlier one is claimed by another replica and in flight."""
    await _queue(store, (1, "j1"), (2, "j1"))
    rows = await store.list_deliveries(state="pending", limit=10)
    keys = sorted((r.transition_id, r.sink) for r in rows)
    seqs = {p.envelope.transition.id: p.seq for p in await store.pending(now=1e9, limit=10)}
    assert ["t1"] == list(seqs)  # t2 waits behind t1
    assert [("t1", "hook"), ("t2", "hook")] == keys
    first = (seqs["t1"], "hook")
    later = (first[0] + 1, "hook")
    assert {first} == await store.claim([first, later], owner="a", until=1e9, now=100.0)
    assert set() == await store.claim([later], owner="b", until=1e9, now=100.0)
    await store.delivered(first[0], "hook", now=101.0)
    assert {later} == await store.claim([later], owner="b", until=1e9, now=101.0)


async def test_a_claim_records_the_last_rounds_deliveries_first(store: SqlStore) -> None:
    """``claim(delivered=…)``: the deliveries the sink accepted are recorded in the claim's
    transaction, before it, so a job's next transition, which waited behind one of them,
    is claimable in that same call; recording touches only pending rows."""
    await _queue(store, (1, "j1"), (2, "j1"), (3, "j2"))
    seqs = {p.envelope.transition.id: p.seq for p in await store.pending(now=1e9, limit=10)}
    first, other = (seqs["t1"], "hook"), (seqs["t3"], "hook")
    later = (first[0] + 1, "hook")
    assert {first, other} == await store.claim([first, other], owner="a", until=1e9, now=100.0)
    got = await store.claim([later], owner="a", until=1e9, now=101.0, delivered=[first])
    assert {later} == got
    await store.failed(other[0], "hook", now=102.0, error="HTTP 400", retry_at=None)
    # A delivery already dead-lettered is not turned into a delivered one.
    assert set() == await store.claim([], owner="a", until=1e9, now=103.0, delivered=[other])
    states = {r.transition_id: r.state for r in await store.list_deliveries(state=None, limit=9)}
    assert {"t1": "delivered", "t2": "pending", "t3": "dead"} == states
    assert {"a"} == await store.claimants()  # t2, claimed; t1's claim went with its record


async def test_release_gives_the_claims_back(store: SqlStore) -> None:
    await _queue(store, (1, "j1"), (2, "j2"))
    keys = [(p.seq, p.sink) for p in await store.pending(now=100.0, limit=10)]
    await store.claim(keys, owner="a", until=1e9, now=100.0)
    assert [] == await store.pending(now=100.0, limit=10)
    assert 2 == await store.release("a")
    assert 2 == len(await store.pending(now=100.0, limit=10))


async def test_concurrent_claims_split_the_work(pair: tuple[SqlStore, SqlStore]) -> None:
    """Two replicas claiming the same 200 due deliveries at once: each is claimed once."""
    a, b = pair
    await _queue(a, *[(n, f"job-{n}") for n in range(200)])
    keys = [(p.seq, p.sink) for p in await a.pending(now=100.0, limit=1000)]
    got: dict[str, set[tuple[int, str]]] = {}

    async def grab(store: SqlStore, owner: str) -> None:
        got[owner] = set()
        for start in range(0, len(keys), 20):
            got[owner] |= await store.claim(
                keys[start : start + 20], owner=owner, until=1e9, now=100.0
            )

    async with anyio.create_task_group() as tg:
        tg.start_soon(grab, a, "a")
        tg.start_soon(grab, b, "b")
    assert set() == got["a"] & got["b"]
    assert set(keys) == got["a"] | got["b"]


async def test_a_late_failure_does_not_clear_another_replicas_claim(
    pair: tuple[SqlStore, SqlStore],
) -> None:
    """Replica a's lease ran out mid-send and b claimed the delivery: a's failure report
    changes nothing, b's claim stands and b's outcome is the one recorded."""
    a, b = pair
    await _queue(a, (1, "j1"))
    keys = [(p.seq, p.sink) for p in await a.pending(now=100.0, limit=10)]
    seq = keys[0][0]
    assert set(keys) == await a.claim(keys, owner="a", until=130.0, now=100.0)
    assert set(keys) == await b.claim(keys, owner="b", until=200.0, now=131.0)
    await a.failed(seq, "hook", now=140.0, error="timeout", retry_at=150.0, owner="a")
    assert [] == await a.pending(now=160.0, limit=10)  # still b's: not due for anyone
    rows = await a.list_deliveries(state="pending", limit=10)
    assert [(0, None)] == [(r.attempts, r.last_error) for r in rows]
    await b.failed(seq, "hook", now=141.0, error="503", retry_at=150.0, owner="b")
    assert keys == [(p.seq, p.sink) for p in await a.pending(now=160.0, limit=10)]


async def test_sslmode_in_the_url_is_honoured_by_store_and_coordination(
    postgres_url: str,
) -> None:
    """``?sslmode=…`` reaches asyncpg as libpq would read it (SQLAlchemy used to pass it as
    a keyword asyncpg refuses): ``disable`` connects, ``require`` against this server (no
    TLS) fails with the server's own answer, not a TypeError."""
    import asyncpg

    from watcher.app.coordination.advisory import connect
    from watcher.stores import open_store

    store = open_store(f"{postgres_url}?sslmode=disable")
    await store.open()
    try:
        assert 0 == (await store.status()).pending
    finally:
        await store.aclose()
    conn = await connect(f"{postgres_url}?sslmode=disable", "r1")
    await conn.close()
    strict = open_store(f"{postgres_url}?sslmode=require")
    try:
        with pytest.raises((ConnectionError, OSError, asyncpg.PostgresError)) as caught:
            await strict.open()
        assert "SSL" in str(caught.value)
    finally:
        await strict.aclose()


async def test_an_unreachable_database_is_named_by_its_server_not_its_credentials() -> None:
    """Whatever the event loop's own words (uvloop's leave the address out), a connection
    the server refuses says which server, never the password; the kind of error stays."""
    store = open_store("postgresql://watcher:hunter2@127.0.0.1:1/watcher")
    try:
        with pytest.raises(ConnectionRefusedError) as caught:
            await store.open()
    finally:
        await store.aclose()
    said = str(caught.value)
    assert "the state database at 127.0.0.1:1" in said and "hunter2" not in said
