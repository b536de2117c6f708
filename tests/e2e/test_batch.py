"""Batch jobs end to end: simulator, ``watcher run`` as a process, a verifying receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import (
    WatcherProcess,
    all_arrived,
    assert_exactly_the_applied_changes,
    assert_in_order_per_job,
    config,
    progress,
    source,
    webhook,
    write,
)
from tests.waiting import wait_until
from watcher.app.httpserver import serve_app
from watcher.devtools.receiver import Receiver, generate_secret
from watcher.devtools.simulator import BatchSpec, simulator

pytestmark = pytest.mark.e2e

BATCH_TERMINAL = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}


async def test_batch_lifecycles_arrive_once_with_milestones(tmp_path: Path) -> None:
    """QUEUED -> RUNNING -> TIMEOUT_EXCEEDED and CANCELLATION_REQUESTED -> CANCELLED arrive
    once each, in order; progress milestones fire once each; errors_rising fires once."""
    secret = generate_secret()
    receiver = Receiver(secret)
    async with serve_app(receiver.app) as url, simulator(speed=2.0) as sim:
        batches = source(
            sim,
            name="batch",
            kind="mistral-batch",
            interval="300ms",
            jitter="30ms",
            progress_milestones=[50, 90],
            error_ratio=0.2,
            error_min_requests=10,
        )
        path = write(
            tmp_path / "config.yaml",
            config(
                tmp_path,
                sources=[batches],
                sinks=[webhook(f"{url}/h", secret)],
                delivery={"initial_backoff": "200ms"},
            ),
        )
        watcher = WatcherProcess(path)
        watcher.start()
        try:
            await wait_until(
                lambda: sim.sim.stats()["requests"].get("batch_list", 0) > 0,
                within=15,
                what="first poll",
            )
            slow = sim.sim.create_batch(
                BatchSpec(
                    name="slow",
                    total_requests=200,
                    failure_rate=0.3,
                    progress=0.95,
                    errors=("context too long",),
                    steps=(("RUNNING", 1.0), ("TIMEOUT_EXCEEDED", 16.0)),
                )
            )
            doomed = sim.sim.create_batch(
                BatchSpec(
                    name="doomed",
                    total_requests=50,
                    steps=(("RUNNING", 1.0), ("CANCELLATION_REQUESTED", 4.0), ("CANCELLED", 6.0)),
                )
            )

            def done() -> bool:
                jobs = [sim.sim.batch_jobs[slow.id], sim.sim.batch_jobs[doomed.id]]
                return all(j.status in BATCH_TERMINAL for j in jobs) and all_arrived(
                    sim, receiver, "batch"
                )

            await wait_until(
                done,
                within=40,
                what="both batch jobs to end and be reported",
                diagnose=lambda: progress(sim, receiver),
            )
            assert 0 == watcher.stop()
        finally:
            if watcher.alive():
                watcher.stop()
    assert_exactly_the_applied_changes(sim, receiver, "batch")
    assert_in_order_per_job(receiver)
    by_job = {}
    for r in receiver.accepted():
        by_job.setdefault(r.data["job"]["id"], []).append(r)
    slow_types = [r.type for r in by_job[slow.id]]
    assert ["batch.job.queued", "batch.job.running", "batch.job.timeout_exceeded"] == [
        t for t in slow_types if t.split(".")[-1] in ("queued", "running", "timeout_exceeded")
    ]
    milestones = [
        r.data["progress"]["milestone"] for r in by_job[slow.id] if r.type == "batch.job.progress"
    ]
    assert [50.0, 90.0] == milestones
    rising = [r for r in by_job[slow.id] if r.type == "batch.job.errors_rising"]
    assert 1 == len(rising)
    assert rising[0].data["failed_ratio"] >= 0.2
    assert rising[0].data["processed_requests"] >= 10
    assert isinstance(rising[0].data["errors"], list)  # the job's summary as it stood then
    assert [
        "batch.job.queued",
        "batch.job.running",
        "batch.job.cancellation_requested",
        "batch.job.cancelled",
    ] == [r.type for r in by_job[doomed.id] if r.data.get("status")]
    assert all(1 == len(v) for v in receiver.by_id().values())
