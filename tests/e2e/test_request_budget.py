"""max_requests_per_minute through the daemon, against the real simulator: its own counters
say the budget holds, and jobs are still followed."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tests.e2e.harness import CONSOLE, config, source
from watcher.app.daemon import Watcher
from watcher.config import validate_config
from watcher.devtools.simulator import JobSpec, simulator

pytestmark = pytest.mark.e2e

BUDGET = 5


async def test_the_simulator_never_sees_more_than_the_budget(tmp_path: Path) -> None:
    """Cycles back to back for a few seconds spend at most the budget (every /v1 request
    counted by the simulator), and a job created meanwhile is followed all the same."""
    async with simulator() as sim:
        last_week = int(time.time()) - 7 * 86400
        sim.sim.create_many(JobSpec(status="SUCCESS"), 30, created_at=last_week)
        budgeted = source(sim, page_size=100, max_requests_per_minute=BUDGET)
        raw = config(tmp_path, sources=[budgeted], sinks=[CONSOLE])
        async with Watcher(validate_config(raw, env={})) as watcher:
            await watcher.once()  # the baseline: one page of history
            sim.sim.create(JobSpec(status="QUEUED", frozen=True, name="fresh"))
            with anyio.fail_after(30):
                for _ in range(10):  # unbudgeted, 10 cycles would cost 20 requests or more
                    await watcher.once()
            status = await watcher.store.status()
        requests = sim.sim.stats()["requests"]["total"]
    assert {"QUEUED": 1} == {
        k: v for k, v in status.jobs_by_source.get("ft", {}).items() if k != "SUCCESS"
    }
    assert requests <= BUDGET
