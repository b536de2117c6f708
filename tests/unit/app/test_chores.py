"""The chores beside the polls: systemd's status line, and the heartbeat and digests
through the daemon's one recorder (digests chain)."""

from __future__ import annotations

import time
from pathlib import Path

from watcher.app.daemon import Watcher
from watcher.config import Config, validate_config
from watcher.model.transitions import rfc3339


def config(tmp_path: Path) -> Config:
    return validate_config(
        {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "k",
                }
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "console", "kind": "console"}],
            "routes": [{"match": {"type": ["watcher.heartbeat"]}, "sinks": ["console"]}],
            "heartbeat": {"interval": "1h"},
            "digest": {"cron": "0 9 * * MON-FRI", "period": "1h", "sinks": ["console"]},
        },
        env={},
    )


async def test_the_status_line_tells_what_the_store_last_said(tmp_path: Path) -> None:
    """Before any poll: the sources owned and, once the store was read, the outbox."""
    async with Watcher(config(tmp_path)) as watcher:
        before = watcher.chores.status_line()
        await watcher.chores.refresh_stats()
        after = watcher.chores.status_line()
    assert "polling 1 source, no poll yet" == before
    assert "polling 1 source, 0 pending deliveries, no poll yet" == after


async def test_the_heartbeat_is_routed_recorded_and_counted(tmp_path: Path) -> None:
    """A heartbeat goes to the sinks its routes name and counts as a transition."""
    async with Watcher(config(tmp_path)) as watcher:
        await watcher.send_heartbeat()
        rows = await watcher.store.list_deliveries(state=None, limit=10)
        counted = watcher.metrics.registry.get_sample_value(
            "watcher_transitions_total", {"type": "watcher.heartbeat"}
        )
    assert ([("watcher.heartbeat", "console")], 1.0) == (
        [(r.type, r.sink) for r in rows],
        counted,
    )


async def test_digests_cover_the_time_since_the_previous_one(tmp_path: Path) -> None:
    """The second digest starts where the first ended, whatever the configured period."""
    first, second = time.time() - 7200, time.time() - 60
    async with Watcher(config(tmp_path)) as watcher:
        await watcher.send_digest(first)
        await watcher.send_digest(second)
        found = await watcher.store.transitions_between(0, time.time() + 1)
    digests = [t.details["digest"] for t, _ in found if t.type == "watcher.digest"]
    assert rfc3339(first - 3600) == digests[0]["from"]
    assert (rfc3339(first), rfc3339(second)) == (digests[1]["from"], digests[1]["to"])


async def test_the_claims_of_a_replica_that_died_go_back_at_once(postgres_url: str) -> None:
    """Two replicas on one PostgreSQL database: the leader gives back the claims of one
    whose member lock is gone, keeps its own and a live replica's (issue 15, item 6)."""
    from tests.factories import transition
    from watcher.app.coordination.advisory import AdvisoryLocks
    from watcher.model.outbox import Routed
    from watcher.model.snapshot import Cursor

    raw = {
        "sources": [
            {"name": "ft", "kind": "mistral-fine-tuning", "base_url": "http://127.0.0.1:9",
             "api_key": "k"}
        ],
        "state": {"url": postgres_url},
        "sinks": [{"name": "console", "kind": "console"}],
    }  # fmt: skip
    long_name = "pod-" + "x" * 70  # longer than application_name keeps
    async with Watcher(validate_config(raw, env={})) as leader:
        await leader.ownership.take_free()  # first: it takes the leader's lock
        other = AdvisoryLocks(postgres_url, ["ft"], replica=long_name)
        await other.take_free()  # alive: its member lock is held
        try:
            store = leader.store
            routed = [Routed(transition(n, job_id=f"j{n}"), ["console"]) for n in range(3)]
            await store.commit("ft", Cursor(), [], routed, now=time.time())
            keys = [(p.seq, p.sink) for p in await store.pending(now=time.time(), limit=10)]
            until = time.time() + 600  # a long lease: only the release can free them
            now = time.time()
            await store.claim(keys[:1], owner=f"{leader.replica}#1", until=until, now=now)
            await store.claim(keys[1:2], owner=f"{long_name}#7", until=until, now=now)
            await store.claim(keys[2:], owner="dead-replica#9", until=until, now=now)
            assert leader.ownership.leader
            await leader.ownership._round(lambda s: None, lambda s: None)  # type: ignore[attr-defined]
            assert 1 == await leader.chores.release_dead_claims()
            assert {f"{leader.replica}#1", f"{long_name}#7"} == await store.claimants()
        finally:
            await other.aclose()


async def test_a_store_refusing_writes_still_gets_its_alert_out(tmp_path: Path) -> None:
    """The store cannot record the alert about itself (issue 15, item 1): after a minute of
    refused writes, ``watcher.store.unwritable`` goes straight to the routed sinks, once
    per spell, through the real wire."""
    from watcher.app.chores import STORE_ALERT_AFTER
    from watcher.app.httpserver import serve_app
    from watcher.devtools.receiver import Receiver, generate_secret

    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as hook:
        raw = {
            "sources": [
                {"name": "ft", "kind": "mistral-fine-tuning", "base_url": "http://127.0.0.1:9",
                 "api_key": "k"}
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "hooks", "kind": "webhook", "url": f"{hook}/h", "secret": secret}],
        }  # fmt: skip
        async with Watcher(validate_config(raw, env={})) as watcher:
            clock = [1000.0]
            watcher.chores.clock = lambda: clock[0]
            store = watcher.store
            store.write_error = "OperationalError: database or disk is full"  # type: ignore[misc]
            await watcher.chores.watch_store()
            clock[0] += STORE_ALERT_AFTER - 1
            await watcher.chores.watch_store()
            assert [] == receiver.accepted()  # not yet: a blip is no alert
            clock[0] += 2
            await watcher.chores.watch_store()
            clock[0] += 30
            await watcher.chores.watch_store()  # the same spell: said once
            store.write_error = None  # type: ignore[misc]
            await watcher.chores.watch_store()
            store.write_error = "OperationalError: disk I/O error"  # type: ignore[misc]
            await watcher.chores.watch_store()
            clock[0] += STORE_ALERT_AFTER + 1
            await watcher.chores.watch_store()  # a new spell: said again
    got = [r for r in receiver.accepted() if r.type == "watcher.store.unwritable"]
    assert 2 == len(got)
    assert "database or disk is full" in got[0].data["reason"]
    assert "disk I/O error" in got[1].data["reason"]
