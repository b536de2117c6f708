"""Source health through the real wire: unreachable once, recovered once, retired once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import SkippingClock, config, on_clock, source, webhook
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
        raw = config(
            tmp_path,
            sources=[source(sim, max_retries=0, unreachable_after="1s")],
            sinks=[webhook(f"{url}/h", secret)],
        )
        settings = validate_config(raw, env={})
        clock = SkippingClock()  # the daemon's; both runs read it, as one host's clock
        async with Watcher(settings) as watcher:
            on_clock(watcher, clock)
            await watcher.once()  # baseline
            sim.sim.add_fault(Fault(mode="503", count=None, route="all"))
            await watcher.once()  # failing since now: not yet unreachable
            assert [] == receiver.received
            clock.skip(1.1)
            for _ in range(3):
                await watcher.once()
        async with Watcher(settings) as watcher:  # a restart while still failing
            on_clock(watcher, clock)
            await watcher.once()
            sim.sim.faults.clear()
            await watcher.once()
            await watcher.once()
        types = [r.type for r in receiver.accepted()]
        assert ["watcher.source.unreachable", "watcher.source.recovered"] == types
        unreachable = receiver.accepted()[0].data
        assert "503" in unreachable["reason"]
        assert receiver.accepted()[1].data["down_seconds"] >= 1
