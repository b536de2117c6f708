"""Scale-out on PostgreSQL: three ``watcher run`` processes on one database, six API
"workspaces" (six simulators, one source each) playing a scripted scenario of over 200
status changes, one receiver.

Without kills: every change arrives exactly once. With one replica at a time SIGKILLed every
few seconds and restarted: nothing is lost, a change sent twice carries the same webhook-id,
and the dead replica's sources are polled again within 10 s (measured, printed).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.e2e.harness import (
    JSON_LOGS,
    QUICK_DELIVERY,
    QUICK_SOURCE,
    WatcherProcess,
    assert_in_order_per_job,
    config,
    received_keys,
    source,
    status_keys,
    webhook,
    write,
)
from tests.waiting import wait_until
from watcher.app.coordination.advisory import current_owners
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, random_scenario, simulator

pytestmark = pytest.mark.e2e

WORKSPACES = 6
JOBS_PER_WORKSPACE = 9
REPLICAS = ("r1", "r2", "r3")
TAKEOVER_LIMIT = 10.0


@dataclass
class Cluster:
    sims: dict[str, RunningSimulator]  # source name -> its simulator
    receiver: Receiver
    replicas: dict[str, WatcherProcess]
    url: str

    def wanted(self) -> Counter[tuple[str, str | None, str]]:
        out: Counter[tuple[str, str | None, str]] = Counter()
        for sim in self.sims.values():
            out += status_keys(sim.sim.log)
        return out

    def missing(self) -> list[tuple[str, str | None, str]]:
        got = received_keys(self.receiver.received)
        return [k for k in self.wanted() if k not in got]

    def settled(self) -> bool:
        """Every scheduled step applied (some lifecycles end VALIDATED, awaiting a start)."""
        return all(
            len(sim.sim.jobs) >= JOBS_PER_WORKSPACE and sim.sim.pending() == 0
            for sim in self.sims.values()
        )

    def list_requests(self, name: str) -> int:
        return int(self.sims[name].sim.stats()["requests"]["list"])


def write_config(
    path: Path, cluster_sims: dict[str, RunningSimulator], hook: str, secret: str, url: str
) -> Path:
    return write(
        path,
        config(
            url,
            sources=[source(sim, name=name, **QUICK_SOURCE) for name, sim in cluster_sims.items()],
            sinks=[webhook(hook, secret, timeout="2s")],
            delivery=QUICK_DELIVERY,
            logging=JSON_LOGS,
        ),
    )


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[Cluster]:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(serve_app(receiver.app))
        sims = {
            f"ws-{n}": await stack.enter_async_context(simulator(speed=2.0))
            for n in range(WORKSPACES)
        }
        replicas = {
            name: WatcherProcess(
                write_config(
                    tmp_path / name / "config.yaml", sims, f"{hook}/hooks", secret, postgres_url
                ),
                env={"WATCHER_REPLICA": name},
            )
            for name in REPLICAS
        }
        try:
            yield Cluster(sims, receiver, replicas, postgres_url)
        finally:
            for replica in replicas.values():
                if replica.alive():
                    replica.kill()


async def start_all(cluster: Cluster) -> None:
    """All replicas at the same instant on the empty database: migrations take turns, every
    one comes up, and the sources end up shared out."""
    for replica in cluster.replicas.values():
        replica.start()
    names = list(cluster.sims)

    async def shared() -> bool:
        assert all(r.alive() for r in cluster.replicas.values()), "a replica exited"
        owners = await current_owners(cluster.url, names)
        return all(owners.values()) and len(set(owners.values())) == len(REPLICAS)

    # A database query per look: every 0.2 s is often enough.
    await wait_until(shared, within=60, what="the sources to be shared out", every=0.2)
    for name, replica in cluster.replicas.items():
        assert '"event": "watcher_started"' in replica.output(), name
    # The silent baseline: every source polled (twice) before the scenario starts.
    await wait_until(
        lambda: all(cluster.list_requests(s) >= 2 for s in names), within=30, what="the first polls"
    )


def schedule(cluster: Cluster, seed: int) -> None:
    for n, sim in enumerate(cluster.sims.values()):
        sim.sim.schedule(
            random_scenario(seed + n, JOBS_PER_WORKSPACE, start_within=8, step_gap=(0.5, 2.5))
        )


def duplicates(receiver: Receiver) -> tuple[int, int]:
    """(status changes received more than once under the same webhook-id, under another)."""
    same = sum(
        len([r for r in group if r.accepted]) - 1
        for group in receiver.by_id().values()
        if len([r for r in group if r.accepted]) > 1
    )
    other = sum(len(ids) - 1 for ids in received_keys(receiver.received).values())
    return same, other


async def test_three_replicas_deliver_every_change_once(cluster: Cluster) -> None:
    await start_all(cluster)
    # `watcher status` tells who polls what, from the database alone.
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "watcher", "status", "-c", str(cluster.replicas["r1"].config)],
            env={**os.environ, "COLUMNS": "250"},
        )
    shown = done.stdout.decode()
    assert "polled by" in shown
    owners = await current_owners(cluster.url, list(cluster.sims))
    for polled, owner in owners.items():
        assert any(polled in line and f"{owner}" in line for line in shown.splitlines())
    schedule(cluster, seed=100)
    await wait_until(
        lambda: cluster.settled() and not cluster.missing(),
        within=120,
        what="every change to arrive",
        diagnose=lambda: f"missing {len(cluster.missing())} of {sum(cluster.wanted().values())}",
    )
    # Then one marker job per source: once every marker is in and no request is in flight,
    # each replica has polled and some replica delivered since the last change arrived, so
    # a change sent twice or detected twice would be in by now too.
    markers = {
        sim.sim.create(JobSpec(status="QUEUED", frozen=True)).id for sim in cluster.sims.values()
    }

    def markers_in() -> bool:
        arrived = {job for job, _, _ in received_keys(cluster.receiver.received)}
        return markers <= arrived and cluster.receiver.in_flight == 0

    await wait_until(markers_in, within=30, what="a marker job from every source")
    wanted = cluster.wanted()
    got = received_keys(cluster.receiver.received)
    assert sum(wanted.values()) >= 200
    assert [] == [k for k in got if k not in wanted]  # nothing spurious
    assert (0, 0) == duplicates(cluster.receiver)  # nothing twice at all
    assert all(r.valid for r in cluster.receiver.received)
    assert_in_order_per_job(cluster.receiver)
    print(
        f"\n{sum(wanted.values())} status changes over {WORKSPACES} sources, 3 replicas: "
        f"all delivered once"
    )
    for replica in cluster.replicas.values():
        assert 0 == replica.stop()


async def test_replicas_killed_one_at_a_time_lose_nothing(cluster: Cluster) -> None:
    await start_all(cluster)
    schedule(cluster, seed=200)
    rng = random.Random(7)
    takeovers: list[float] = []
    kills = 0
    names = list(cluster.sims)
    while not cluster.settled() or kills < 4:
        # The kill rhythm is chaos on purpose (seeded): a replica dies at an arbitrary point
        # of its poll or delivery, not at one the test chose to observe.
        await anyio.sleep(rng.uniform(2.0, 4.0))
        owners = await current_owners(cluster.url, names)
        victim_name = rng.choice([r for r in REPLICAS if r in owners.values()] or list(REPLICAS))
        victim = cluster.replicas[victim_name]
        orphans = [s for s, owner in owners.items() if owner == victim_name]
        before = {s: cluster.list_requests(s) for s in orphans}
        victim.kill()
        killed_at = time.monotonic()
        kills += 1
        for orphan in orphans:
            await wait_until(
                lambda s=orphan, b=before: cluster.list_requests(s) > b[s],
                within=TAKEOVER_LIMIT + 5,
                what=f"{orphan} to be polled again after {victim_name} was killed",
            )
            takeovers.append(time.monotonic() - killed_at)
        await anyio.sleep(rng.uniform(0.5, 1.5))  # chaos too: down for a random while
        victim.start()
        if kills > 30:
            break
    await wait_until(
        lambda: cluster.settled() and not cluster.missing(),
        within=120,
        what="every change to arrive after the kills",
        diagnose=lambda: f"missing {len(cluster.missing())} of {sum(cluster.wanted().values())}",
    )
    wanted = cluster.wanted()
    got = received_keys(cluster.receiver.received)
    same, other = duplicates(cluster.receiver)
    print(
        f"\n{sum(wanted.values())} status changes, {kills} SIGKILLs: lost 0, duplicates "
        f"with the same webhook-id {same}, with another id {other}; takeover after a kill: "
        f"max {max(takeovers):.2f}s, median {sorted(takeovers)[len(takeovers) // 2]:.2f}s "
        f"over {len(takeovers)} sources moved"
    )
    assert sum(wanted.values()) >= 200
    assert [] == [k for k in got if k not in wanted]
    assert 0 == other
    assert takeovers and max(takeovers) <= TAKEOVER_LIMIT
    assert_in_order_per_job(cluster.receiver)
