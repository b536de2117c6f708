"""Health: liveness and the watchdog from the daemon's signs of progress, readiness by
source, and what a replica reports of its own sources."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx

from tests.unit.record.fakes import Clock
from watcher.app.coordination import SoleOwnership
from watcher.app.health import Health, Limits, Progress
from watcher.app.metrics import Metrics
from watcher.config import Config, DeliveryConfig, validate_config
from watcher.deliver.dispatch import Dispatcher
from watcher.model.outbox import StoreStatus
from watcher.model.snapshot import Cursor
from watcher.stores.sql import SqlStore


def health_config(**source: Any) -> Config:
    return validate_config(
        {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "api_key": "k",
                    "interval": "10s",
                    "jitter": "1s",
                    "timeout": "5s",
                    "max_retries": 1,
                    **source,
                }
            ],
            "sinks": [{"name": "hooks", "kind": "webhook", "url": "https://h.test/x"}],
        },
        env={},
    )


def test_limits_leave_room_for_timeouts_and_retries() -> None:
    """A poll is stuck past 3 intervals plus every attempt and backoff; late past 3
    periods; not ready past 3 periods since its last good poll."""
    limits = Limits.from_config(health_config())
    assert (30 + 2 * 5 + 60, 34.0, 33.0) == (
        limits.poll_stuck["ft"],
        limits.poll_late["ft"],
        limits.ready["ft"],
    )
    assert limits.dispatcher >= 30


async def test_stalled_names_what_stopped(store: SqlStore) -> None:
    """The watchdog is withheld for a silent scheduler, a dispatcher making no progress, a
    stuck poll and a source whose polls stopped; healthz reports only the loops."""
    mono = Clock(100.0)
    config = health_config()
    dispatcher = Dispatcher(store, {}, DeliveryConfig())
    progress = Progress(clock=mono)
    health = Health(config, store, dispatcher, {}, Metrics(["ft"], process=False), progress)
    health.running = True
    dispatcher.last_progress = 100.0
    assert [] == health.stalled()

    mono.now = 105.0
    with progress.polling("ft"):
        mono.now = 105.0 + health.limits.poll_stuck["ft"] + 1
        await progress.tick()
        dispatcher.last_progress = mono.now
        assert ["source ft: poll running for 101s"] == health.stalled()
        assert {"event_loop": "ok", "scheduler": "ok", "dispatcher": "ok"} == health.alive()
    mono.now += health.limits.poll_late["ft"] + 1
    assert [
        "scheduler: no tick for 35.0s (limit 10s)",
        "dispatcher: no progress for 35.0s (limit 31s)",
        "source ft: no poll for 35s",
    ] == health.stalled()
    health.running = False
    assert [] == health.stalled()  # starting or stopping: nothing is overdue


async def test_readiness_by_source(store: SqlStore) -> None:
    """A source is ready when polled within its limit or known retired; the store and the
    running state are checked too."""
    wall = Clock(50_000.0)
    last_ok: dict[str, float] = {}
    config = health_config()
    health = Health(
        config,
        store,
        Dispatcher(store, {}, DeliveryConfig()),
        last_ok,
        Metrics(["ft"], process=False),
        Progress(),
        clock=wall,
    )
    checks = await health.ready()
    assert {
        "config": "not running (starting or stopping)",
        "store": "ok",
        "source:ft": "no successful poll yet",
    } == checks
    health.running = True
    last_ok["ft"] = wall.now - 10
    assert "ok" == (await health.ready())["source:ft"]
    wall.now += 30
    assert (await health.ready())["source:ft"].startswith("last successful poll 40.0s ago")
    await store.commit("ft", Cursor(retired=True), [], [], now=wall.now)
    assert {"config": "ok", "store": "ok", "source:ft": "ok"} == await health.ready()
    store.write_error = "OperationalError: attempt to write a readonly database"
    assert (
        "writes failing (OperationalError: attempt to write a readonly database)"
        == (await health.ready())["store"]
    )
    store.write_error = None
    store.standing_error = "database file deleted, cannot write it back: [Errno 30]"
    assert store.standing_error == (await health.ready())["store"]  # a write since: still
    store.standing_error = None
    health.store = BrokenStore()  # type: ignore[assignment]
    checks = await health.ready()
    assert ("unreachable (OSError)", "last") == (checks["store"], checks["source:ft"][:4])
    health.metrics.refreshed(StoreStatus(cursors={"ft": Cursor(retired=True)}))
    assert "ok" == (await health.ready())["source:ft"]  # retired, as last read


async def test_readiness_of_a_replica_covers_its_own_sources(store: SqlStore) -> None:
    """With several replicas, a source another replica polls is not this one's to report;
    /readyz names the replica, the leader flag and who polls what."""
    config = health_config()
    ownership = SoleOwnership(["ft"], replica="r2")
    health = Health(
        config,
        store,
        Dispatcher(store, {}, DeliveryConfig()),
        {},
        Metrics(["ft"], process=False),
        Progress(),
        ownership=ownership,
    )
    health.running = True
    assert "no successful poll yet" == (await health.ready())["source:ft"]
    ownership.owned.clear()  # another replica took it
    ownership.leader = False
    assert {"config": "ok", "store": "ok", "source:ft": "ok"} == await health.ready()
    assert {"replica": "r2", "leader": False, "owners": {}} == health.owners()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=health.app()), base_url="http://t"
    ) as client:
        body = (await client.get("/readyz")).json()
    assert ("ok", "r2", False) == (body["status"], body["replica"], body["leader"])


class BrokenStore:
    async def load_cursor(self, source: str) -> Cursor:
        raise OSError("disk gone")
