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


async def test_one_listing_reaching_back_sees_the_young_jobs_move(tmp_path: Path) -> None:
    """Three young jobs followed in QUEUED, two move on to VALIDATING: the next steady
    cycle sees both moves with one listing (the new-jobs listing reaching back over the
    followed jobs, newest first) and no detail."""
    async with simulator() as sim:
        now = int(time.time())
        ids = [
            sim.sim.create(JobSpec(status="QUEUED", frozen=True), created_at=now - age).id
            for age in (600, 500, 400)
        ]
        budgeted = source(sim, page_size=100, interval=5, max_requests_per_minute=60)
        raw = config(tmp_path, sources=[budgeted], sinks=[CONSOLE])
        async with Watcher(validate_config(raw, env={})) as watcher:
            await watcher.once()  # the baseline: the listing and the three details
            for job_id in ids[:2]:
                sim.sim.set_status(job_id, "VALIDATING")
            sim.sim.reset_stats()
            await anyio.sleep(3)  # the budget's credit refills
            await watcher.once()
            status = await watcher.store.status()
        requests = sim.sim.stats()["requests"]
    assert {"QUEUED": 1, "VALIDATING": 2} == status.jobs_by_source["ft"]
    assert (1, 0) == (requests["list"], requests["detail"])
