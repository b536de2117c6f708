"""Sink outage: the receiver answers 503 to everything for ``scale.outage_minutes``
simulated minutes, then comes back. Everything is delivered or dead-lettered, dead letters
are exactly the deliveries that failed past ``delivery.max_age``, and order per job holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.waiting import wait_until
from watcher.model.outbox import DeliveryRow
from watcher.stores import open_store

from .facts import Fact, expected_facts, fact_of, scenario, settled, tally
from .rig import Fleet, Peers, peers, watcher_config
from .scale import MINUTE, SPEED, Scale, real

pytestmark = pytest.mark.endurance

BEFORE = 1.5 * MINUTE  # simulated seconds of normal delivery before the outage
MAX_BACKOFF = 0.5 * MINUTE
SLACK = 1.0  # real seconds: a pass in flight at a boundary, the poll that detects a change


async def deliveries(url: str) -> list[DeliveryRow]:
    """Every outbox row, read from the daemon's own database (WAL: beside its writes)."""
    store = open_store(url)
    try:
        return await store.list_deliveries(state=None, limit=100_000)
    finally:
        await store.aclose()


def facts_by_id(p: Peers) -> dict[str, Fact]:
    """What each transition id was about, from every attempt the receiver saw."""
    out: dict[str, Fact] = {}
    for r in p.receiver.received:
        fact = fact_of(r)
        if r.id and fact is not None:
            out[r.id] = fact
    return out


async def test_sink_outage_delivers_or_dead_letters_by_max_age(
    tmp_path: Path, scale: Scale, figures: Callable[[dict[str, Any]], None]
) -> None:
    """After an outage longer than ``max_age``: nothing pending, nothing lost; a delivery
    is dead only if it failed at an age past ``max_age`` while the receiver was down, and
    every one younger than that when the receiver came back is delivered; per job, the
    status changes arrive in the order they happened."""
    outage = scale.outage_minutes * MINUTE
    max_age = outage / 2
    url = f"sqlite:///{tmp_path}/state.db"
    jobs = scenario(
        31,
        round(6 * (BEFORE + outage) / MINUTE),
        within=BEFORE + outage,
        step_gap=(outage / 12, outage / 4),
    )
    async with peers(seed=13) as p:
        delivery = {
            "initial_backoff": f"{real(0.2 * MINUTE) * 1000:g}ms",
            "max_backoff": f"{real(MAX_BACKOFF) * 1000:g}ms",
            "max_age": f"{real(max_age) * 1000:g}ms",
        }
        fleet = Fleet(tmp_path, watcher_config(p, state_url=url, delivery=delivery))
        fleet.start()
        rows: list[DeliveryRow] = []

        async def done() -> bool:
            nonlocal rows
            if not settled(p.counting):
                return False
            rows = await deliveries(url)
            if any(row.state == "pending" for row in rows):
                return False
            dead = {facts_by_id(p).get(row.transition_id) for row in rows if row.state == "dead"}
            got = {fact_of(r) for r in p.receiver.received if r.accepted}
            return all(f in got or f in dead for f in expected_facts(p.counting))

        try:
            await wait_until(
                fleet.baselined, within=30, what="the baseline poll", diagnose=fleet.raw_output
            )
            p.counting.schedule(jobs)
            await anyio.sleep(real(BEFORE))
            p.receiver.set_down(True)
            down_at = time.time()
            await anyio.sleep(real(outage))
            p.receiver.set_down(False)
            up_at = time.time()
            # A database read per look: twice a second is enough.
            await wait_until(
                done,
                within=60 + real(outage),
                what="every fact delivered or dead, nothing pending",
                every=0.5,
            )
        finally:
            codes = fleet.stop()
    rows = await deliveries(url)
    by_id = facts_by_id(p)
    dead = [row for row in rows if row.state == "dead"]
    t = tally(
        p.counting, p.receiver.received, allowed_missing=[by_id[r.transition_id] for r in dead]
    )
    accepted = {r.id for r in p.receiver.received if r.accepted}
    limit = real(max_age)
    # Younger than max_age when the receiver came back: must have been delivered.
    too_young_to_die = [r for r in dead if r.created_at > up_at - limit + SLACK]
    # Died at an age below max_age, or after the receiver was back.
    died_early = [r for r in dead if r.updated_at - r.created_at < limit]
    died_late = [r for r in dead if r.updated_at > up_at + SLACK]
    # Pending past max_age + a backoff while the receiver was down: must be dead.
    overdue = limit + real(MAX_BACKOFF) + SLACK
    kept_past_max_age = [
        r
        for r in rows
        if r.state == "delivered" and r.updated_at > up_at and r.created_at < up_at - overdue
    ]
    waited_out = [r for r in rows if r.state == "delivered" and down_at < r.created_at < up_at]
    figures(
        {
            "simulated minutes down": round((up_at - down_at) * SPEED / MINUTE, 1),
            "max age (simulated minutes)": max_age / MINUTE,
            "deliveries": len(rows),
            "dead letters": len(dead),
            "detected while down, delivered after": len(waited_out),
            "503 answers": sum(r.status == 503 for r in p.receiver.received),
            **t.figures(),
        }
    )
    assert [0] == codes
    assert [] == [r for r in rows if r.state not in ("delivered", "dead")]
    assert all(r.transition_id in accepted for r in rows if r.state == "delivered")
    assert [] == t.lost
    assert [] == t.spurious
    assert {} == t.other_ids
    assert [] == t.out_of_order
    assert [] == too_young_to_die
    assert [] == died_early
    assert [] == died_late
    assert [] == kept_past_max_age
    assert dead, "the outage outlasted max_age: some deliveries must be dead"
    assert waited_out, "deliveries younger than max_age must wait out the outage"
    assert [] == fleet.crashes()
