"""Source health through the real wire: unreachable once, recovered once, retired once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import Fault, JobSpec, simulator

pytestmark = pytest.mark.e2e


async def test_unreachable_then_recovered_exactly_once(tmp_path: Path) -> None:
    """With the API answering 503 for longer than the threshold, exactly one unreachable and
    one recovered arrive, however many cycles fail; a restart in between changes nothing."""
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator() as sim:
        sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        raw: dict[str, Any] = {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": sim.base_url,
                    "api_key": sim.api_key,
                    "max_retries": 0,
                    "unreachable_after": "1s",
                }
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "hooks", "kind": "webhook", "url": f"{url}/h", "secret": secret}],
        }
        config = validate_config(raw, env={})
        async with Watcher(config) as watcher:
            await watcher.once()  # baseline
            sim.sim.add_fault(Fault(mode="503", count=None, route="all"))
            await watcher.once()  # failing since now: not yet unreachable
            assert [] == receiver.received
            await anyio.sleep(1.1)
            for _ in range(3):
                await watcher.once()
        async with Watcher(config) as watcher:  # a restart while still failing
            await watcher.once()
            sim.sim.faults.clear()
            await watcher.once()
            await watcher.once()
        types = [r.type for r in receiver.accepted()]
        assert ["watcher.source.unreachable", "watcher.source.recovered"] == types
        unreachable = receiver.accepted()[0].data
        assert "503" in unreachable["reason"]
        assert receiver.accepted()[1].data["down_seconds"] >= 1
