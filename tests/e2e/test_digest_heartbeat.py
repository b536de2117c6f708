"""Digest and heartbeat through the real wire."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import config, source, webhook
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e


async def test_digest_lists_the_days_counts(tmp_path: Path) -> None:
    """A digest after a scripted day counts what happened, and goes to its own sinks only."""
    secret = generate_secret()
    digests, others = Receiver(secret), Receiver(secret)
    async with serve_app(digests.app) as digest_url, serve_app(others.app) as url, \
            simulator() as sim:  # fmt: skip
        raw = config(
            tmp_path,
            sources=[source(sim)],
            sinks=[
                webhook(f"{url}/h", secret, name="team"),
                webhook(f"{digest_url}/d", secret, name="digest"),
            ],
            routes=[{"sinks": ["team"]}],
            digest={"cron": "0 9 * * MON-FRI", "sinks": ["digest"]},
            heartbeat={"interval": "5m"},
        )
        async with Watcher(validate_config(raw, env={})) as watcher:
            await watcher.once()
            ids = {
                s: sim.sim.create(JobSpec(status="QUEUED", frozen=True)).id
                for s in ("ok", "bad", "stop", "live")
            }
            await watcher.once()
            for name, path in {
                "ok": ["RUNNING", "SUCCESS"],
                "bad": ["RUNNING", "FAILED"],
                "stop": ["CANCELLATION_REQUESTED", "CANCELLED"],
                "live": ["RUNNING"],
            }.items():
                for status in path:
                    sim.sim.set_status(ids[name], status)
                    await watcher.once()
            await watcher.send_digest(time.time() + 1)
            await watcher.send_heartbeat()
            await watcher.dispatcher.drain()
    (digest,) = [r for r in digests.accepted()]
    assert "watcher.digest" == digest.type
    counts = digest.data["digest"]["sources"]["ft"]
    assert (4, 3, 1, 1, 1, 1) == (
        counts["created"],
        counts["started"],
        counts["succeeded"],
        counts["failed"],
        counts["cancelled"],
        counts["running_now"],
    )
    assert "watcher.digest" not in {r.type for r in others.accepted()}
    beats = [r for r in others.accepted() if r.type == "watcher.heartbeat"]
    assert 1 == len(beats)
    assert beats[0].data["sources"]["ft"]["failing"] is False
