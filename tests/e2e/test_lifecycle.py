"""First start, downtime and restarts, through the real wire (in-process watcher)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import config, source, webhook
from watcher.app.daemon import Watcher
from watcher.app.httpserver import serve_app
from watcher.config import Config, validate_config
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import JobSpec, RunningSimulator, simulator

pytestmark = pytest.mark.e2e


@dataclass
class Peers:
    sim: RunningSimulator
    receiver: Receiver
    config: Config

    def steps(self) -> list[tuple[str, str | None, str]]:
        return [
            (r.data["job"]["id"], r.data["previous_status"], r.data["status"])
            for r in self.receiver.accepted()
            if isinstance(r.data, dict) and r.data.get("status")
        ]


@pytest.fixture
async def peers(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Peers]:
    on_start: str = getattr(request, "param", "baseline")
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator() as sim:
        raw = config(
            tmp_path,
            sources=[source(sim, on_start=on_start)],
            sinks=[webhook(f"{url}/h", secret)],
        )
        yield Peers(sim, receiver, validate_config(raw, env={}))


async def once(settings: Config) -> None:
    async with Watcher(settings) as watcher:
        await watcher.once()


async def test_first_start_is_silent_then_changes_are_reported(peers: Peers) -> None:
    """Existing jobs become the baseline without a message; a later change is reported."""
    sim = peers.sim.sim
    done = sim.create(JobSpec(status="SUCCESS", checkpoints=2))
    running = sim.create(JobSpec(status="RUNNING", frozen=True, checkpoints=1))
    await once(peers.config)
    assert [] == peers.receiver.received
    sim.set_status(running.id, "FAILED")
    await once(peers.config)
    assert [(running.id, "RUNNING", "FAILED")] == peers.steps()
    assert done.id not in {s[0] for s in peers.steps()}


@pytest.mark.parametrize("peers", ["notify"], indirect=True)
async def test_on_start_notify_reports_history(peers: Peers) -> None:
    """With on_start: notify, the first poll reports every job's statuses."""
    job = peers.sim.sim.create(JobSpec(status="VALIDATED", frozen=True))
    await once(peers.config)
    assert [
        (job.id, None, "QUEUED"),
        (job.id, "QUEUED", "VALIDATING"),
        (job.id, "VALIDATING", "VALIDATED"),
    ] == peers.steps()


async def test_changes_during_downtime_are_reported(peers: Peers) -> None:
    """What happened while watcher was down (several steps, a new job) is reported after
    the restart, in order."""
    sim = peers.sim.sim
    job = sim.create(JobSpec(status="QUEUED", frozen=True))
    await once(peers.config)
    for status in ("VALIDATING", "VALIDATED", "RUNNING", "SUCCESS"):
        sim.set_status(job.id, status)  # several steps between two polls
    newcomer = sim.create(JobSpec(status="RUNNING", frozen=True), created_at=int(time.time()))
    await once(peers.config)  # a new process on the same state file
    steps = peers.steps()
    assert [
        (job.id, "QUEUED", "VALIDATING"),
        (job.id, "VALIDATING", "VALIDATED"),
        (job.id, "VALIDATED", "RUNNING"),
        (job.id, "RUNNING", "SUCCESS"),
    ] == [s for s in steps if s[0] == job.id]
    assert [
        (newcomer.id, None, "QUEUED"),
        (newcomer.id, "QUEUED", "VALIDATING"),
        (newcomer.id, "VALIDATING", "VALIDATED"),
        (newcomer.id, "VALIDATED", "RUNNING"),
    ] == [s for s in steps if s[0] == newcomer.id]


async def test_terminal_jobs_are_not_fetched_again(peers: Peers) -> None:
    """After its final transition a job costs no detail request, even at a full resync."""
    sim = peers.sim.sim
    job = sim.create(JobSpec(status="RUNNING", frozen=True))
    await once(peers.config)
    sim.set_status(job.id, "SUCCESS")
    await once(peers.config)
    sim.reset_stats()
    await once(peers.config)
    assert 0 == sim.stats()["requests"]["detail"]


async def test_checkpoints_and_model_are_reported(peers: Peers) -> None:
    """New checkpoints of a RUNNING job (modified_at unchanged) and the model are reported."""
    sim = peers.sim.sim
    job = sim.create(JobSpec(status="RUNNING", frozen=True))
    await once(peers.config)
    sim.add_checkpoint(job.id)
    sim.add_checkpoint(job.id)
    await once(peers.config)
    sim.set_status(job.id, "SUCCESS")
    await once(peers.config)
    types = [r.type for r in peers.receiver.accepted()]
    assert [
        "fine_tuning.job.checkpoint",
        "fine_tuning.job.checkpoint",
        "fine_tuning.job.success",
        "fine_tuning.job.model_ready",
    ] == types
    model = peers.receiver.accepted()[-1].data["fine_tuned_model"]
    assert model == sim.jobs[job.id].fine_tuned_model
