"""API fault mix: for ``scale.fault_minutes`` simulated minutes the API answers 10 % 5xx,
5 % 429 with Retry-After, 2 % too late (timeouts), 1 % malformed JSON, while 1 % of the
status changes go to statuses the API does not document. The daemon never crashes,
reports nothing false, and delivers every real change."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.waiting import wait_until
from watcher.devtools.simulator import Fault, JobSpec, Simulator

from .facts import (
    UNKNOWN_STATUSES,
    all_arrived,
    expected_facts,
    missing,
    scenario,
    settled,
    tally,
)
from .rig import Fleet, peers, watcher_config
from .scale import MINUTE, SPEED, Scale, real

pytestmark = pytest.mark.endurance

TIMEOUT = 1.0  # the source's timeout, real seconds
# The mix, per API request. 5xx is split over the three a proxy or the API sends.
MIX = (
    Fault(mode="500", rate=0.04, count=None),
    Fault(mode="502", rate=0.03, count=None),
    Fault(mode="503", rate=0.03, count=None),
    Fault(mode="429", rate=0.05, retry_after=real(MINUTE), count=None),
    Fault(mode="slow", rate=0.02, delay=1.5 * TIMEOUT, count=None),  # answered too late
    Fault(mode="malformed", rate=0.01, count=None),
)
MODES = {fault.mode for fault in MIX}
UNKNOWN_SHARE = 0.01
# Long training runs that stay RUNNING all along: part of the silent baseline, fetched whole
# every cycle (checkpoint tracking), so the mix meets enough requests in a short run; any
# fact about them would be false.
BACKGROUND = JobSpec(status="RUNNING", frozen=True, suffix="long-run")
BACKGROUND_JOBS = 15
EXTRA_WINDOW = 30.0  # real seconds the faults may stay on until each kind was served once


def test_the_mix_keeps_its_proportions() -> None:
    """The simulator's rate faults share one draw per request: each hits its own share."""
    sim = Simulator(seed=3)
    for fault in MIX:
        sim.add_fault(replace(fault))
    n = 20_000
    served = Counter(f.mode if f else "none" for f in (sim.take_fault("list") for _ in range(n)))
    for fault in MIX:
        assert abs(served[fault.mode] / n - fault.rate) < 0.006, (fault.mode, served)
    assert abs(served["none"] / n - 0.82) < 0.01


async def test_fault_mix_reports_nothing_false(
    tmp_path: Path, scale: Scale, figures: Callable[[dict[str, Any]], None]
) -> None:
    """Under the fault mix the daemon keeps running (no restart, no crash logged), sends no
    fact the API did not make true, and delivers every one it did, unknown statuses too."""
    window = scale.fault_minutes * MINUTE  # simulated seconds
    jobs = scenario(
        23,
        round(8 * scale.fault_minutes),
        within=0.6 * window,
        step_gap=(window / 40, window / 10),
        unknown_share=UNKNOWN_SHARE,
    )
    async with peers(seed=9) as p:
        p.counting.create_many(BACKGROUND, BACKGROUND_JOBS)
        config = watcher_config(
            p, state_url=f"sqlite:///{tmp_path}/state.db", timeout=TIMEOUT, max_retries=2
        )
        fleet = Fleet(tmp_path, config)
        fleet.start()
        try:
            await wait_until(
                fleet.baselined, within=30, what="the baseline poll", diagnose=fleet.raw_output
            )
            requests_before = p.counting.stats()["requests"]["total"]
            for fault in MIX:
                p.counting.add_fault(replace(fault))
            started = time.monotonic()
            p.counting.schedule(jobs)
            await anyio.sleep(window / SPEED)
            # The short run is few requests: it goes on until each kind was served once.
            # (Bounded but not fatal here: an assertion below names the modes never served.)
            with contextlib.suppress(AssertionError):
                await wait_until(
                    lambda: set(p.counting.faults_served) >= MODES,
                    within=EXTRA_WINDOW,
                    what="every fault mode served once",
                    every=0.2,
                )
            under_faults = time.monotonic() - started
            requests = p.counting.stats()["requests"]["total"] - requests_before
            p.counting.faults.clear()
            await wait_until(
                lambda: settled(p.counting) and all_arrived(p.counting, p.receiver.received),
                within=60,
                what="every fact to arrive once the faults stop",
                diagnose=lambda: f"missing {missing(p.counting, p.receiver.received)[:10]}",
            )
            alive = fleet.alive()
        finally:
            codes = fleet.stop()
    t = tally(p.counting, p.receiver.received)
    events = fleet.events()
    served = dict(p.counting.faults_served)
    unknown = [
        f for f in expected_facts(p.counting) if f[0] == "status" and f[3] in UNKNOWN_STATUSES
    ]
    figures(
        {
            "simulated minutes under faults": round(under_faults * SPEED / MINUTE, 1),
            "API requests under faults": requests,
            "faults served": served,
            "fault share of requests": round(sum(served.values()) / max(1, requests), 3),
            "failed poll cycles": sum(e.get("event") == "poll_failed" for e in events),
            "unknown-status changes": len(unknown),
            **t.figures(),
        }
    )
    assert alive
    assert [0] == codes
    assert 1 == fleet.starts
    assert MODES == set(served)
    assert [] == fleet.crashes()
    assert [] == fleet.tracebacks()
    assert [] == t.spurious
    assert [] == [r.type for r in p.receiver.received if (r.type or "").startswith("watcher.")]
    assert [] == t.lost
    assert {} == t.other_ids
    assert 0 == t.invalid
    assert [] == t.out_of_order
    assert len(unknown) >= 1
