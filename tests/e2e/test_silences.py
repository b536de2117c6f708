"""Runtime silences through the real wire: two ``watcher run`` replicas on PostgreSQL, each
polling one simulator, one webhook receiver. ``watcher silence add`` (the real CLI) stops the
deliveries of matching transitions on both replicas (recorded as silenced, none at the
receiver); ``watcher silence expire`` lets the next one through; an "until resolved" silence
ends with its job, and that end is delivered and audited."""

from __future__ import annotations

import os
import sys
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
    config,
    source,
    webhook,
    write,
)
from tests.waiting import wait_until
from watcher.app.coordination.advisory import current_owners
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator
from watcher.model import types
from watcher.record.silences import TTL
from watcher.stores import open_store

pytestmark = pytest.mark.e2e

SOURCES = ("ws-0", "ws-1")
RUNNING = "fine_tuning.job.running"


@dataclass
class Cluster:
    sims: dict[str, RunningSimulator]
    receiver: Receiver
    replicas: dict[str, WatcherProcess]
    url: str

    def got(self, type_: str, job_id: str | None = None) -> list[dict[str, object]]:
        return [
            r.data
            for r in self.receiver.received
            if r.type == type_ and (job_id is None or r.data["job"].get("id") == job_id)
        ]


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[Cluster]:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with AsyncExitStack() as stack:
        hook = await stack.enter_async_context(serve_app(receiver.app))
        sims = {name: await stack.enter_async_context(simulator()) for name in SOURCES}
        content = config(
            postgres_url,
            sources=[source(sim, name=name, **QUICK_SOURCE) for name, sim in sims.items()],
            sinks=[webhook(f"{hook}/hooks", secret, timeout="2s")],
            delivery=QUICK_DELIVERY,
            logging=JSON_LOGS,
        )
        replicas = {
            name: WatcherProcess(
                write(tmp_path / name / "config.yaml", content), env={"WATCHER_REPLICA": name}
            )
            for name in ("r1", "r2")
        }
        try:
            yield Cluster(sims, receiver, replicas, postgres_url)
        finally:
            for replica in replicas.values():
                if replica.alive():
                    replica.kill()


async def cli(cluster: Cluster, *args: str) -> str:
    """``watcher silence …`` as a user runs it; its stdout."""
    config = str(cluster.replicas["r1"].config)
    argv = [sys.executable, "-m", "watcher", "silence", args[0], "-c", config, *args[1:]]
    with anyio.fail_after(30):
        done = await anyio.run_process(argv, env=dict(os.environ), check=False)
    assert 0 == done.returncode, done.stderr.decode()
    return done.stdout.decode()


async def silenced_rows(url: str) -> dict[str, str | None]:
    """Job id -> ``last_error`` of the silenced deliveries of RUNNING changes."""
    store = open_store(url)
    try:
        rows = await store.list_deliveries(state="silenced", limit=100)
    finally:
        await store.aclose()
    return {str(r.job_id): r.last_error for r in rows if r.type == RUNNING}


async def test_silences_across_replicas(cluster: Cluster) -> None:
    for replica in cluster.replicas.values():
        replica.start()

    async def shared() -> bool:
        assert all(r.alive() for r in cluster.replicas.values()), "a replica exited"
        owners = await current_owners(cluster.url, list(SOURCES))
        return all(owners.values()) and len(set(owners.values())) == 2

    await wait_until(shared, within=30, what="one source per replica", every=0.2)
    await wait_until(
        lambda: all(s.sim.stats()["requests"]["list"] >= 2 for s in cluster.sims.values()),
        within=20,
        what="the baseline polls",
    )
    frozen = JobSpec(status="QUEUED", frozen=True)
    a, c = (cluster.sims["ws-0"].sim.create(frozen).id for _ in range(2))
    b, d = (cluster.sims["ws-1"].sim.create(frozen).id for _ in range(2))
    await wait_until(
        lambda: len(cluster.got("fine_tuning.job.queued")) == 4, within=10, what="4 new jobs"
    )

    # Silence every RUNNING change, and job c (ws-0) until it resolves.
    added_ids: dict[str, str] = {}

    async def add(name: str, *args: str) -> None:
        added_ids[name] = (await cli(cluster, "add", *args)).strip().splitlines()[-1]

    async with anyio.create_task_group() as tg:  # two users at once
        tg.start_soon(add, "running", "--match", f"type={RUNNING}", "--for", "1h", "--comment", "x")
        tg.start_soon(add, "bound", "--until-resolved", "ws-0", c, "--comment", "y", "--by", "ana")
    running_silence, bound = added_ids["running"], added_ids["bound"]
    await anyio.sleep(TTL)  # what every replica's cache may still hold
    for name, job in (("ws-0", a), ("ws-1", b), ("ws-0", c)):
        cluster.sims[name].sim.set_status(job, "RUNNING")
    # Recorded as silenced by both replicas within a poll interval (and a little slack).
    took = await wait_until(
        lambda: _have(cluster, {a, b, c}),
        within=3,
        what="the RUNNING changes recorded as silenced",
    )
    rows = await silenced_rows(cluster.url)
    assert {a, b, c} <= rows.keys()
    assert f"silenced by {running_silence}" == rows[a] == rows[b]
    for name, replica in cluster.replicas.items():
        assert '"event": "transition_silenced"' in replica.output(), name

    # Expire: the next RUNNING change goes through. Job c ends: its silence ends with it.
    out = await cli(cluster, "expire", running_silence, "--by", "bo")
    assert f"silence {running_silence} expired" in out
    await anyio.sleep(TTL)
    cluster.sims["ws-1"].sim.set_status(d, "RUNNING")
    cluster.sims["ws-0"].sim.set_status(c, "FAILED")

    def through() -> bool:
        return bool(cluster.got(RUNNING, d) and cluster.got("fine_tuning.job.failed", c)) and (
            len(cluster.got(types.ACTION_SILENCE_EXPIRED)) == 2
        )

    await wait_until(through, within=5, what="d's RUNNING, c's FAILED and two expiries")
    assert [] == [j for j in (a, b, c) if cluster.got(RUNNING, j)]  # never sent
    expiries = {
        e["silence"]["id"]: (e["by"], e.get("reason"))  # type: ignore[index]
        for e in cluster.got(types.ACTION_SILENCE_EXPIRED)
    }
    assert {running_silence: ("bo", "expired"), bound: ("watcher", "job ended")} == expiries
    added = {e["silence"]["id"]: e["by"] for e in cluster.got(types.ACTION_SILENCED)}  # type: ignore[index]
    assert ("ana", 2) == (added[bound], len(added))
    store = open_store(cluster.url)
    try:
        listed = {s.id: s.end_reason for s in await store.list_silences(include_ended=True)}
        assert [] == await store.list_silences(include_ended=False)
    finally:
        await store.aclose()
    assert {bound: "job ended", running_silence: "expired"} == listed
    print(f"\nsilenced on both replicas {took:.2f}s after the changes")
    for replica in cluster.replicas.values():
        assert 0 == replica.stop()


async def _have(cluster: Cluster, jobs: set[str]) -> bool:
    return jobs <= (await silenced_rows(cluster.url)).keys()
