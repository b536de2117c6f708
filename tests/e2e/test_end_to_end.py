"""End to end through the real wire: simulator and receiver on loopback, ``watcher run`` as a
separate process, SIGKILLed where it hurts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import (
    WatcherProcess,
    all_arrived,
    assert_exactly_the_applied_changes,
    assert_in_order_per_job,
    progress,
    settled,
    write_config,
)
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import (
    Fault,
    JobSpec,
    RunningSimulator,
    random_scenario,
    simulator,
)

pytestmark = pytest.mark.e2e


@dataclass
class Rig:
    sim: RunningSimulator
    receiver: Receiver
    watcher: WatcherProcess


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as receiver_url, simulator(speed=2.0) as sim:
        config = write_config(tmp_path / "config.yaml", sim, receiver_url, secret)
        watcher = WatcherProcess(config)
        try:
            yield Rig(sim, receiver, watcher)
        finally:
            if watcher.alive():
                watcher.stop()


async def test_every_status_change_arrives_once_in_order(rig: Rig) -> None:
    """Every status change the simulator applies arrives once per webhook-id, in order per
    job, with its previous status, signed; nothing spurious."""
    rig.watcher.start()
    await wait_until(
        lambda: rig.sim.sim.stats()["requests"]["list"] > 0, within=15, what="first poll"
    )
    jobs = random_scenario(7, 8, start_within=4, step_gap=(0.5, 2.0))
    rig.sim.sim.schedule(jobs)
    await wait_until(
        lambda: settled(rig.sim, 8) and all_arrived(rig.sim, rig.receiver),
        within=60,
        what="every change to arrive",
        diagnose=lambda: progress(rig.sim, rig.receiver),
    )
    assert 0 == rig.watcher.stop()
    assert_exactly_the_applied_changes(rig.sim, rig.receiver)
    assert_in_order_per_job(rig.receiver)
    assert all(1 == len(v) for v in rig.receiver.by_id().values())


async def test_sigkill_at_several_points_loses_nothing(rig: Rig) -> None:
    """Killed mid-poll, between commit and send, and mid-send, then restarted: no transition
    is lost, and a transition sent twice carries the same webhook-id."""
    sim, receiver, watcher = rig.sim, rig.receiver, rig.watcher
    watcher.start()
    await wait_until(lambda: sim.sim.stats()["requests"]["list"] > 0, within=15, what="first poll")
    sim.sim.schedule(random_scenario(11, 6, start_within=2, step_gap=(1.0, 3.0)))

    # 1. mid-poll: the API holds the answer, the watcher dies waiting for it.
    await wait_until(lambda: len(sim.sim.log) >= 4, within=20, what="some progress")
    sim.sim.add_fault(Fault(mode="slow", delay=5.0, count=None, route="all"))
    await wait_until(lambda: sim.sim.in_flight > 0, within=10, what="a request in flight")
    watcher.kill()
    sim.sim.faults.clear()

    # 2. between commit and send: the receiver refuses, so commits pile up unsent.
    receiver.set_down(True)
    watcher.start()
    await wait_until(
        lambda: any(r.status == 503 for r in receiver.received),
        within=20,
        what="a refused delivery",
    )
    watcher.kill()
    receiver.set_down(False)

    # 3. mid-send: the receiver holds the request; the watcher dies before the answer.
    receiver.set_delay(5.0)
    watcher.start()
    await wait_until(lambda: receiver.in_flight > 0, within=20, what="a delivery in flight")
    watcher.kill()
    receiver.set_delay(0.0)

    watcher.start()
    await wait_until(
        lambda: settled(sim, 6) and all_arrived(sim, receiver),
        within=60,
        what="every change to arrive after the kills",
    )
    assert 0 == watcher.stop()
    assert_exactly_the_applied_changes(sim, receiver)
    assert_in_order_per_job(receiver)


async def test_api_faults_report_nothing_false(rig: Rig) -> None:
    """With 429, 5xx, slow answers, malformed bodies and an unknown status injected, the
    watcher keeps running, reports nothing false, and delivers every real change."""
    sim, receiver, watcher = rig.sim, rig.receiver, rig.watcher
    watcher.start()
    await wait_until(lambda: sim.sim.stats()["requests"]["list"] > 0, within=15, what="first poll")
    sim.sim.schedule(random_scenario(5, 6, start_within=2, step_gap=(1.0, 3.0)))
    for fault in (
        Fault(mode="429", retry_after=1.0, count=3, route="all"),
        Fault(mode="500", count=3, route="list"),
        Fault(mode="503", count=2, route="detail"),
        Fault(mode="malformed", count=3, route="all"),
        Fault(mode="truncated", count=2, route="list"),
        Fault(mode="slow", delay=3.0, count=2, route="detail"),
    ):
        sim.sim.add_fault(fault)
    await wait_until(lambda: len(sim.sim.jobs) >= 6, within=20, what="jobs to exist")
    running = next(iter(sim.sim.jobs))
    sim.sim.set_status(running, "PAUSED")  # an unknown status is a real change too
    await wait_until(
        lambda: settled(sim, 6) or all_arrived(sim, receiver), within=60, what="progress"
    )
    sim.sim.set_status(running, "CANCELLED")
    await wait_until(
        lambda: settled(sim, 6) and all_arrived(sim, receiver),
        within=60,
        what="every change to arrive despite the faults",
    )
    assert watcher.alive()
    assert 0 == watcher.stop()
    assert_exactly_the_applied_changes(sim, receiver)
    types = {r.type for r in receiver.received}
    assert "fine_tuning.job.paused" in types


async def test_receiver_down_then_back(rig: Rig) -> None:
    """While the receiver is down deliveries wait and retry; a watcher restart meanwhile
    loses none; all arrive once it is back."""
    sim, receiver, watcher = rig.sim, rig.receiver, rig.watcher
    receiver.set_down(True)
    watcher.start()
    await wait_until(lambda: sim.sim.stats()["requests"]["list"] > 0, within=15, what="first poll")
    sim.sim.schedule(
        [
            JobSpec(name="a", steps=(("RUNNING", 1.0), ("FAILED", 2.0))),
            JobSpec(name="b", steps=(("VALIDATING", 1.0), ("FAILED_VALIDATION", 2.0))),
        ]
    )
    await wait_until(lambda: settled(sim, 2), within=20, what="the jobs to end")
    await wait_until(
        lambda: sum(r.status == 503 for r in receiver.received) >= 3,
        within=20,
        what="retries against the dead receiver",
    )
    assert 0 == watcher.stop()  # graceful restart while the receiver is still down
    watcher.start()
    receiver.set_down(False)
    await wait_until(
        lambda: all_arrived(sim, receiver), within=30, what="deliveries after recovery"
    )
    assert 0 == watcher.stop()
    assert_exactly_the_applied_changes(sim, receiver)
    assert_in_order_per_job(receiver)


async def test_retired_api_is_reported_once(rig: Rig) -> None:
    """A source answering 410 Gone is reported once as watcher.source.retired; the daemon
    keeps running."""
    sim, receiver, watcher = rig.sim, rig.receiver, rig.watcher
    sim.sim.retired = True
    watcher.start()
    await wait_until(
        lambda: any(r.type == "watcher.source.retired" for r in receiver.received),
        within=20,
        what="the retired transition",
    )
    watcher.stop()
    watcher.start()  # a restart must not report it again
    await wait_until(
        lambda: sim.sim.stats()["requests"]["total"] >= 2, within=10, what="a second try"
    )
    assert watcher.alive()
    assert 0 == watcher.stop()
    retired = [r for r in receiver.received if r.type == "watcher.source.retired"]
    assert 1 == len(retired)
    assert "410" in retired[0].data["reason"]


async def test_sigterm_during_a_delivery_exits_cleanly(rig: Rig) -> None:
    """SIGTERM while a delivery is in flight exits 0 within the grace period, and the
    delivery is either done or still pending: a restart sends it, under the same id."""
    sim, receiver, watcher = rig.sim, rig.receiver, rig.watcher
    watcher.start()
    await wait_until(lambda: sim.sim.stats()["requests"]["list"] > 0, within=15, what="first poll")
    job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
    receiver.set_delay(3.0)
    await wait_until(lambda: receiver.in_flight > 0, within=20, what="a delivery in flight")
    started = time.monotonic()
    assert 0 == watcher.stop()
    assert time.monotonic() - started < 10
    receiver.set_delay(0.0)
    watcher.start()
    await wait_until(
        lambda: any(r.accepted for r in receiver.received), within=20, what="the delivery"
    )
    assert 0 == watcher.stop()
    ids = {r.id for r in receiver.received}
    assert 1 == len(ids)  # a re-send carries the same webhook-id
    assert job.id == receiver.accepted()[0].data["job"]["id"]
