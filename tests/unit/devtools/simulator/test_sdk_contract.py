"""The official SDK (mistralai 1.12.4, the last 1.x with fine-tuning jobs) against the simulator.

If the SDK parses every list page and every job the simulator serves, the simulator speaks
the real API's shapes. SDK 1.x rejects unknown statuses and the legacy ``"FT"`` job type
(reference §11), so these tests use standard jobs only; the watcher's own tolerant parsing
is tested elsewhere against the non-standard ones.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from mistralai import Mistral, models

from watcher.devtools.simulator import (
    STATUSES,
    JobSpec,
    RunningSimulator,
    Simulator,
    random_scenario,
    simulator,
)

KEY = "contract-key"
OLD = 1_700_000_000
SUMMARY_TYPES = (models.CompletionJobOut, models.ClassifierJobOut)
DETAILED_TYPES = (models.CompletionDetailedJobOut, models.ClassifierDetailedJobOut)


@pytest.fixture
async def running() -> AsyncIterator[RunningSimulator]:
    # Jobs that move while the test runs (some with hostile suffixes and models), on top
    # of a static mix in every status.
    in_flight = [
        *random_scenario(5, 12, start_within=0.0, step_gap=(0.5, 2.0)),
        *random_scenario(6, 6, start_within=0.0, step_gap=(0.5, 2.0), hostile=True),
    ]
    async with simulator(jobs=in_flight, speed=4, seed=11, api_key=KEY) as served:
        _create_mix(served.sim)
        yield served


@pytest.fixture
async def client(running: RunningSimulator) -> AsyncIterator[Mistral]:
    async with Mistral(api_key=KEY, server_url=running.base_url, timeout_ms=10_000) as sdk:
        yield sdk


def _create_mix(sim: Simulator) -> None:
    """Completion and classifier jobs in every known status, with events and checkpoints.

    Created in-process: the admin API has its own tests, and this keeps the test fast.
    """
    extras: itertools.cycle[dict[str, Any]] = itertools.cycle(
        [
            {"wandb_project": "proj", "wandb_name": "run"},
            {"events_order": "newest_first"},
            {"repository": "acme/train-data"},
            {},
        ]
    )
    for job_type, status in itertools.product(("completion", "classifier"), STATUSES):
        extra = next(extras)
        spec = JobSpec(
            job_type=job_type,
            status=status,
            checkpoints=3,
            suffix=f"{job_type[:4]}-{status.lower()}",
            auto_start=not (job_type == "classifier" and status == "VALIDATED"),
            **extra,
        )
        sim.create(spec, created_at=None if extra else OLD)
    sim.create_many(JobSpec(status="SUCCESS"), 30)


def _check_detailed(job: Any) -> None:
    assert isinstance(job, DETAILED_TYPES)
    assert job.events
    assert all(isinstance(event, models.EventOut) for event in job.events)
    assert job.checkpoints is not None
    for checkpoint in job.checkpoints:
        assert isinstance(checkpoint, models.CheckpointOut)
        assert isinstance(checkpoint.metrics, models.MetricOut)
    if isinstance(job, models.ClassifierDetailedJobOut):
        assert all(isinstance(t, models.ClassifierTargetOut) for t in job.classifier_targets)
    else:
        assert all(isinstance(r, models.GithubRepositoryOut) for r in job.repositories or [])
    assert all(isinstance(i, models.WandbIntegrationOut) for i in job.integrations or [])
    assert job.metadata is None or isinstance(job.metadata, models.JobMetadataOut)


async def test_every_page_and_every_job_parses(running: RunningSimulator, client: Mistral) -> None:
    """Every list page and every detailed job of a realistic mix parses with the SDK."""
    listed: list[Any] = []
    with anyio.fail_after(30):
        first = await client.fine_tuning.jobs.list_async(page=0, page_size=7)
        assert isinstance(first, models.JobsOut)
        pages = -(-first.total // 7)
        for page in range(pages):
            result = await client.fine_tuning.jobs.list_async(page=page, page_size=7)
            assert isinstance(result, models.JobsOut)
            assert first.total == result.total
            listed.extend(result.data or [])
        for job in listed:
            assert isinstance(job, SUMMARY_TYPES)
            _check_detailed(await client.fine_tuning.jobs.get_async(job_id=job.id))
    assert first.total == len(listed) == len({job.id for job in listed})
    assert set(running.sim.jobs) == {job.id for job in listed}
    assert {"completion", "classifier"} == {job.job_type for job in listed}
    assert set(STATUSES) <= {job.status for job in listed}


async def test_filters_through_the_sdk(running: RunningSimulator, client: Mistral) -> None:
    """The SDK's encoding of status, created_after and suffix is understood."""
    with anyio.fail_after(10):
        success = await client.fine_tuning.jobs.list_async(status="SUCCESS", page_size=1000)
        expected = {job.id for job in running.sim.list_jobs(status="SUCCESS")}
        assert expected == {job.id for job in success.data or []}
        recent = await client.fine_tuning.jobs.list_async(
            created_after=datetime.fromtimestamp(OLD + 1, UTC), page_size=1000
        )
        old = {job.id for job in running.sim.jobs.values() if job.created_at == OLD}
        assert old
        assert not old & {job.id for job in recent.data or []}
        by_suffix = await client.fine_tuning.jobs.list_async(suffix="clas-running")
        assert [("classifier", "RUNNING")] == [(j.job_type, j.status) for j in by_suffix.data or []]


async def test_cancel_start_and_errors_through_the_sdk(
    running: RunningSimulator, client: Mistral
) -> None:
    """cancel and start answers parse; a 404 is the SDK's generic SDKError."""
    jobs = running.sim.jobs.values()
    running_job = next(j for j in jobs if j.status == "RUNNING" and j.suffix)
    parked = next(j for j in jobs if j.status == "VALIDATED" and j.suffix == "clas-validated")
    with anyio.fail_after(10):
        cancelled = await client.fine_tuning.jobs.cancel_async(job_id=running_job.id)
        assert "CANCELLATION_REQUESTED" == cancelled.status
        _check_detailed(cancelled)
        started = await client.fine_tuning.jobs.start_async(job_id=parked.id)
        assert ("QUEUED", "classifier") == (started.status, started.job_type)
        _check_detailed(started)
        with pytest.raises(models.SDKError) as raised:
            await client.fine_tuning.jobs.get_async(job_id="00000000-0000-4000-8000-000000000000")
    assert 404 == raised.value.status_code
