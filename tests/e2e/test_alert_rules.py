"""Alert rules through the real wire, with limits of seconds that the daemon's clock skips
over instead of the test sleeping through them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import SkippingClock, config, on_clock, source, webhook
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import Config, validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import Fault, JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e


def config_for(
    sim: RunningSimulator, url: str, secret: str, tmp_path: Path, **options: Any
) -> Config:
    raw = config(
        tmp_path,
        sources=[source(sim, max_retries=0, **options)],
        sinks=[webhook(f"{url}/h", secret)],
        routes=[{"match": {"type": ["*.stalled", "*.stalled.*", "watcher.*"]}, "sinks": ["hooks"]}],
        # API times are whole seconds (up to 1 s of rounding) and a cycle takes a fraction of
        # a second: a 3 s limit is not reached before the test means it to be.
        rules=[{"kind": "stalled", "after": {"QUEUED": "3s"}, "repeat_interval": "1s"}],
    )
    return validate_config(raw, env={})


async def once(settings: Config, clock: SkippingClock) -> None:
    async with Watcher(settings) as watcher:  # a new process each time: restarts are free
        await on_clock(watcher, clock).once()


async def test_stalled_fires_repeats_and_resolves_across_restarts(tmp_path: Path) -> None:
    """A job stuck in QUEUED fires stalled once, repeats per repeat_interval, and resolves
    when it moves; restarts in between neither lose nor duplicate (by id) these alerts."""
    secret = generate_secret()
    receiver = Receiver(secret)
    clock = SkippingClock()
    async with serve_app(receiver.app) as url, simulator() as sim:
        settings = config_for(sim, url, secret, tmp_path)
        await once(settings, clock)  # baseline (empty)
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        await once(settings, clock)  # the job is new and has been queued for about a second
        assert [] == receiver.received
        clock.skip(3.3)
        await once(settings, clock)  # stalled
        await once(settings, clock)  # restart at once: nothing new
        clock.skip(1.1)
        await once(settings, clock)  # first repeat
        sim.sim.set_status(job.id, "RUNNING")
        await once(settings, clock)  # resolved
        await once(settings, clock)
    alerts = receiver.accepted()
    assert [
        "fine_tuning.job.stalled",
        "fine_tuning.job.stalled",
        "fine_tuning.job.stalled.resolved",
    ] == [a.type for a in alerts]
    assert [None, 1] == [a.data["alert"].get("repeat") for a in alerts[:2]]
    assert 3 == len({a.id for a in alerts})
    assert all(job.id == a.data["job"]["id"] for a in alerts)
    assert "QUEUED" == alerts[0].data["alert"]["status"]


async def test_no_stall_alerts_while_the_source_is_down(tmp_path: Path) -> None:
    """While the source cannot be polled its jobs' stall alerts are held back."""
    secret = generate_secret()
    receiver = Receiver(secret)
    clock = SkippingClock()
    async with serve_app(receiver.app) as url, simulator() as sim:
        settings = config_for(sim, url, secret, tmp_path, unreachable_after="30s")
        await once(settings, clock)  # baseline (empty)
        sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        await once(settings, clock)
        sim.sim.add_fault(Fault(mode="503", count=None, route="all"))
        await once(settings, clock)  # the source starts failing
        clock.skip(3.3)
        await once(settings, clock)
        assert [] == receiver.received
        sim.sim.faults.clear()
        await once(settings, clock)  # back: the stall is real and now reported
    assert ["fine_tuning.job.stalled"] == [a.type for a in receiver.accepted()]


async def test_metric_rule_fires_once_through_the_wire(tmp_path: Path) -> None:
    """A checkpoint sequence with a validation-loss rise fires once; 0.0 placeholder steps
    never fire it; overrun fires for a job past its expected duration."""
    secret = generate_secret()
    receiver = Receiver(secret)
    clock = SkippingClock()
    async with serve_app(receiver.app) as url, simulator() as sim:
        raw = config(
            tmp_path,
            sources=[source(sim)],
            sinks=[webhook(f"{url}/h", secret)],
            routes=[{"match": {"type": ["*.metric_regressed", "*.overrun"]}, "sinks": ["hooks"]}],
            rules=[
                {"kind": "metric", "valid_loss_rise": 10},
                {"kind": "overrun", "factor": 1.5},
            ],
        )
        settings = validate_config(raw, env={})
        await once(settings, clock)  # the silent baseline, before the job exists
        job = sim.sim.create(JobSpec(status="RUNNING", frozen=True))
        sim.sim.jobs[job.id].metadata = {"expected_duration_seconds": 1}
        await once(settings, clock)
        for loss in (1.0, 0.0, 0.9, 0.0, 1.05, 1.2, 0.0):
            checkpoint = sim.sim.add_checkpoint(job.id).checkpoints[-1]
            checkpoint["metrics"]["valid_loss"] = loss
            await once(settings, clock)
        clock.skip(1.6)  # running for longer than 1 s x 1.5
        await once(settings, clock)
        await once(settings, clock)
    types = [r.type for r in receiver.accepted()]
    assert 1 == types.count("fine_tuning.job.metric_regressed")
    assert 1 == types.count("fine_tuning.job.overrun")
    (regressed,) = [r for r in receiver.accepted() if r.type.endswith("metric_regressed")]
    assert (1.05, 0.9) == (
        regressed.data["alert"]["valid_loss"],
        regressed.data["alert"]["best_valid_loss"],
    )


async def test_first_start_raises_no_alert_storm(tmp_path: Path) -> None:
    """Jobs already stuck when watcher first starts are part of the silent baseline: no
    stalled alert, now or later, and no resolved either."""
    secret = generate_secret()
    receiver = Receiver(secret)
    clock = SkippingClock()
    async with serve_app(receiver.app) as url, simulator() as sim:
        old = int(time.time()) - 3600  # queued for an hour already
        job = sim.sim.create(JobSpec(status="QUEUED", frozen=True), created_at=old)
        settings = config_for(sim, url, secret, tmp_path)
        await once(settings, clock)
        await once(settings, clock)
        sim.sim.set_status(job.id, "RUNNING")
        await once(settings, clock)
    assert [] == receiver.received


async def test_a_retired_source_raises_no_alerts(tmp_path: Path) -> None:
    """Jobs of a source answering 410 are frozen, not stuck: no stalled alert for them."""
    secret = generate_secret()
    receiver = Receiver(secret)
    clock = SkippingClock()
    async with serve_app(receiver.app) as url, simulator() as sim:
        settings = config_for(sim, url, secret, tmp_path)
        await once(settings, clock)  # baseline (empty)
        sim.sim.create(JobSpec(status="QUEUED", frozen=True))
        await once(settings, clock)  # the new job is followed
        sim.sim.retired = True
        await once(settings, clock)  # 410: reported once
        clock.skip(3.3)
        await once(settings, clock)
    # (The route sends only alerts and watcher.* facts to this receiver.)
    assert ["watcher.source.retired"] == [r.type for r in receiver.received]
