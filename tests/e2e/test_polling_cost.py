"""Polling cost does not grow with history: the simulator's own request counters say so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import CONSOLE, config, source
from watcher.app.daemon import Watcher
from watcher.config import validate_config
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e

ACTIVE = ("RUNNING", "QUEUED", "VALIDATING", "RUNNING", "VALIDATED")


async def steady_cycle_requests(tmp_path: Path, terminal: int) -> dict[str, int]:
    async with simulator() as sim:
        # History is old: these jobs ended long before the ones being followed began.
        last_week = int(time.time()) - 7 * 86400
        sim.sim.create_many(
            JobSpec(status="SUCCESS", checkpoints=3), terminal, created_at=last_week
        )
        for n in range(20):
            sim.sim.create(JobSpec(status=ACTIVE[n % len(ACTIVE)], frozen=True))
        raw = config(f"sqlite:///{tmp_path}/{terminal}.db", sources=[source(sim)], sinks=[CONSOLE])
        async with Watcher(validate_config(raw, env={})) as watcher:
            await watcher.once()  # the baseline: one full listing
            await watcher.once()
            sim.sim.reset_stats()
            await watcher.once()
        requests = sim.sim.stats()["requests"]
        return {k: requests[k] for k in ("list", "detail", "total")}


async def test_steady_cycle_cost_is_flat(tmp_path: Path) -> None:
    """5,000 terminal jobs cost the same requests per steady cycle (±1) as 50 do."""
    small = await steady_cycle_requests(tmp_path, 50)
    large = await steady_cycle_requests(tmp_path, 5000)
    print(f"requests per steady cycle: 50 terminal -> {small}, 5000 terminal -> {large}")
    assert abs(small["total"] - large["total"]) <= 1
    # 1 listing of new jobs + 1 per active status (4) + the 8 RUNNING jobs' details.
    assert {"list": 5, "detail": 8, "total": 13} == large
