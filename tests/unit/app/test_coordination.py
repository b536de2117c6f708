"""Sharing sources between replicas: the fair-share arithmetic, then the advisory locks on
the machine's real PostgreSQL (each test on a database of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import asyncpg

from tests.waiting import wait_until
from watcher.app.coordination import SoleOwnership, build_ownership
from watcher.app.coordination.advisory import AdvisoryLocks, current_owners
from watcher.app.coordination.share import fair_share, rebalance
from watcher.stores.postgres import libpq_dsn

SOURCES = ["ft-a", "ft-b", "batch-a", "batch-b", "ft-c"]
ROUND = 0.1


def test_fair_share() -> None:
    assert [5, 3, 2, 2, 1, 1] == [fair_share(5, n) for n in (1, 2, 3, 4, 5, 6)]
    assert 5 == fair_share(5, 0)  # before the first survey: alone


def test_a_lone_replica_takes_everything() -> None:
    moves = rebalance(SOURCES, {}, "me", 1)
    assert () == moves.release
    assert 5 == moves.room
    assert sorted(SOURCES) == sorted(moves.candidates)


def test_a_replica_above_its_share_gives_up_idle_sources() -> None:
    holders = dict.fromkeys(SOURCES, "me")
    moves = rebalance(SOURCES, holders, "me", 2, busy={"ft-c"})
    assert 2 == len(moves.release)  # 5 held, a share of 3
    assert "ft-c" not in moves.release
    assert 0 == moves.room
    assert () == moves.candidates


def test_a_replica_at_its_share_takes_nothing_more() -> None:
    holders = {"ft-a": "me", "ft-b": "me", "ft-c": "other"}
    moves = rebalance(SOURCES, holders, "me", 3)
    assert ((), (), 0) == (moves.release, moves.candidates, moves.room)


def test_replicas_try_free_sources_in_different_orders() -> None:
    orders = {tuple(rebalance(SOURCES, {}, f"replica-{n}", 3).candidates) for n in range(6)}
    assert len(orders) > 1


def test_sqlite_means_one_process_owning_everything() -> None:
    ownership = build_ownership("sqlite:///x.db", ["a", "b"], replica="solo")
    assert isinstance(ownership, SoleOwnership)
    assert {"a", "b"} == set(ownership.owned)
    assert ownership.leader
    assert {"a": "solo", "b": "solo"} == ownership.owners()


class Replica:
    """An AdvisoryLocks running its rounds in a task, recording what it was told."""

    def __init__(self, url: str, name: str, sources: Sequence[str] = SOURCES) -> None:
        self.locks = AdvisoryLocks(url, sources, replica=name, round_seconds=ROUND)
        self.acquired: list[str] = []
        self.lost: list[str] = []
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            await self.locks.run(self.acquired.append, self.lost.append)

    async def stop(self) -> None:
        self.scope.cancel()
        await self.locks.aclose()


@asynccontextmanager
async def replicas(url: str, *names: str) -> AsyncIterator[list[Replica]]:
    started = [Replica(url, name) for name in names]
    async with anyio.create_task_group() as tg:
        for replica in started:
            tg.start_soon(replica.run)
        yield started
        for replica in started:
            await replica.stop()


def shares(group: Sequence[Replica]) -> list[int]:
    return sorted(len(r.locks.owned) for r in group)


def exactly_once(group: Sequence[Replica]) -> bool:
    held = [s for r in group for s in r.locks.owned]
    return sorted(held) == sorted(SOURCES)


async def test_replicas_share_the_sources_fairly(postgres_url: str) -> None:
    async with replicas(postgres_url, "r1", "r2", "r3") as group:
        await wait_until(lambda: exactly_once(group) and shares(group) == [1, 2, 2])
        assert 1 == sum(r.locks.leader for r in group)
        await wait_until(lambda: all(r.locks.owners() == group[0].locks.owners() for r in group))
        owners = await current_owners(postgres_url, SOURCES)
        expected = {s: r.locks.replica for r in group for s in r.locks.owned}
        assert expected == owners


async def test_a_dead_replicas_sources_move_within_seconds(postgres_url: str) -> None:
    async with replicas(postgres_url, "r1", "r2") as group:
        await wait_until(lambda: exactly_once(group) and shares(group) == [2, 3])
        leaving, staying = group
        gone = set(leaving.locks.owned)
        was_leader = leaving.locks.leader
        await leaving.stop()
        took = await wait_until(lambda: set(SOURCES) == set(staying.locks.owned), within=5)
        assert took < 3 * ROUND + 1.0
        assert gone <= set(staying.acquired)
        if was_leader:
            await wait_until(lambda: staying.locks.leader)


async def test_a_newcomer_gets_its_share(postgres_url: str) -> None:
    async with replicas(postgres_url, "r1") as group:
        await wait_until(lambda: 5 == len(group[0].locks.owned))
        newcomer = Replica(postgres_url, "r2")
        async with anyio.create_task_group() as tg:
            tg.start_soon(newcomer.run)
            await wait_until(lambda: exactly_once([*group, newcomer]))
            await wait_until(lambda: [2, 3] == shares([*group, newcomer]))
            assert set(group[0].lost) == set(newcomer.locks.owned)  # given, not shared
            await newcomer.stop()


async def test_a_replica_cut_from_the_database_stops_at_once(postgres_url: str) -> None:
    """The server ends the lock connection: the replica drops every source (told through
    on_lost), then joins again and gets its sources back."""
    async with replicas(postgres_url, "r1") as group:
        replica = group[0]
        await wait_until(lambda: 5 == len(replica.locks.owned))
        conn = await asyncpg.connect(libpq_dsn(postgres_url))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'watcher:r1'"
            )
        finally:
            await conn.close()
        await wait_until(lambda: 5 == len(replica.lost))
        assert set(SOURCES) == set(replica.lost)
        await wait_until(lambda: 5 == len(replica.locks.owned), within=15)


async def test_once_takes_only_what_no_replica_holds(postgres_url: str) -> None:
    """``watcher once`` beside running replicas polls only the sources nobody holds."""
    async with replicas(postgres_url, "r1") as group:
        await wait_until(lambda: 5 == len(group[0].locks.owned))
        await group[0].stop()
        holder = AdvisoryLocks(postgres_url, SOURCES[:2], replica="daemon")
        await holder.take_free()
        once = AdvisoryLocks(postgres_url, SOURCES, replica="once")
        try:
            await once.take_free()
            assert set(SOURCES[2:]) == set(once.owned)
            assert not once.leader  # the daemon holds the leader lock
        finally:
            await once.aclose()
            await holder.aclose()
        assert {} == once.owned
