"""Kill storm: SIGKILLs at random moments (starting up, migrating, polling, committing,
sending) while a scenario plays; after the storm nothing is lost, and what arrived twice
arrived under the same webhook-id."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.waiting import wait_until

from .facts import all_arrived, missing, scenario, settled, tally
from .rig import Fleet, peers, watcher_config
from .scale import MINUTE, SPEED, Scale

pytestmark = pytest.mark.endurance

# Seconds a process lives before its kill: from mid-start-up (a start takes about 1 s on
# this machine kind) to a few poll cycles.
UPTIME = (0.2, 2.5)


@pytest.fixture
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/state.db"


# SQLite serves one process; on PostgreSQL three replicas share the source and the outbox
# while the kills hit one of them at a time.
@pytest.mark.parametrize(
    ("state_url", "replicas"),
    [("sqlite", 1), ("postgres", 3)],
    ids=["sqlite", "postgres-3-replicas"],
    indirect=["state_url"],
)
async def test_kill_storm_loses_nothing(
    tmp_path: Path,
    state_url: str,
    replicas: int,
    scale: Scale,
    figures: Callable[[dict[str, Any]], None],
) -> None:
    """SIGKILLed ``scale.kills`` times at random moments during a scenario of
    ``scale.transitions`` status changes: every fact arrives, no fact arrives under two
    webhook-ids, and every process stops cleanly at the end."""
    rng = random.Random(7)
    storm = scale.kills * (sum(UPTIME) / 2 + 0.3)  # real seconds the kills take, roughly
    jobs = scenario(
        11,
        scale.transitions,
        # Jobs appear over the first half of the storm and live a few seconds (several
        # steps between two polls, at times): the changes happen while the kills go on.
        within=0.5 * storm * SPEED,
        step_gap=(0.2 * MINUTE, 0.8 * MINUTE),
    )
    started = time.monotonic()
    async with peers(seed=5) as p:
        fleet = Fleet(tmp_path, watcher_config(p, state_url=state_url), replicas)
        fleet.start()
        try:
            # Jobs appear once the silent baseline is committed: else a kill before that
            # commit would make them part of the next start's baseline.
            await wait_until(
                fleet.baselined, within=30, what="the baseline poll", diagnose=fleet.raw_output
            )
            p.counting.schedule(jobs)
            p.receiver.set_delay(0.02)  # a send takes a while: kills land mid-send too
            for _ in range(scale.kills):
                await anyio.sleep(rng.uniform(*UPTIME))
                victim = rng.randrange(replicas)
                fleet.kill(victim)
                await anyio.sleep(rng.uniform(0.0, 0.3))
                fleet.start()
            killed_at = time.monotonic()
            await wait_until(
                lambda: settled(p.counting) and all_arrived(p.counting, p.receiver.received),
                within=60 + 0.2 * scale.transitions,
                what="every fact to arrive after the storm",
                diagnose=lambda: f"missing {missing(p.counting, p.receiver.received)[:10]}",
            )
        finally:
            codes = fleet.stop()
    t = tally(p.counting, p.receiver.received)
    figures(
        {
            "store": state_url.split(":", 1)[0],
            "replicas": replicas,
            "kills": fleet.kills,
            "starts": fleet.starts,
            "jobs": len(jobs),
            **t.figures(),
            "storm seconds": round(killed_at - started, 1),
            "total seconds": round(time.monotonic() - started, 1),
        }
    )
    assert [0] * replicas == codes
    assert scale.kills == fleet.kills
    assert scale.transitions <= t.status_changes
    assert [] == t.lost
    assert [] == t.spurious
    assert {} == t.other_ids
    assert 0 == t.invalid
    assert [] == t.out_of_order
    assert [] == fleet.crashes()
