"""Builders for raw API payloads and parsed jobs used across the tests."""

from __future__ import annotations

from typing import Any

from watcher.model.jobs import Job
from watcher.model.transitions import Transition
from watcher.sources.fine_tuning import parse_job

T0 = 1_751_010_000


def raw_job(
    job_id: str = "job-1",
    status: str = "QUEUED",
    *,
    created_at: int = T0,
    modified_at: int | None = None,
    events: list[tuple[str, int]] | None = None,
    checkpoints: list[tuple[int, int, dict[str, Any]]] | None = None,
    fine_tuned_model: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A raw fine-tuning job; ``events``/``checkpoints`` make it a detailed one."""
    body: dict[str, Any] = {
        "id": job_id,
        "object": "job",
        "job_type": "completion",
        "auto_start": True,
        "model": "open-mistral-7b",
        "status": status,
        "created_at": created_at,
        "modified_at": modified_at if modified_at is not None else created_at,
        "training_files": [],
        "hyperparameters": {"training_steps": 10},
        "fine_tuned_model": fine_tuned_model,
        "suffix": "bot",
    }
    if events is not None:
        body["events"] = [
            {"name": "status-updated", "created_at": at, "data": {"status": s}} for s, at in events
        ]
        body["checkpoints"] = [
            {"step_number": step, "created_at": at, "metrics": metrics}
            for step, at, metrics in (checkpoints or [])
        ]
    body.update(extra)
    return body


def job(job_id: str = "job-1", status: str = "QUEUED", **kwargs: Any) -> Job:
    return parse_job(raw_job(job_id, status, **kwargs))


def history(*steps: str, start: int = T0, gap: int = 10) -> list[tuple[str, int]]:
    """``status-updated`` events for ``steps``, ``gap`` seconds apart."""
    return [(s, start + i * gap) for i, s in enumerate(steps)]


def transition(n: int, job_id: str = "j1") -> Transition:
    """A RUNNING status change numbered ``n``, for the store and outbox tests."""
    return Transition(
        id=f"t{n}",
        type="fine_tuning.job.running",
        source="ft",
        job_id=job_id,
        status="RUNNING",
        previous_status="QUEUED",
        occurred_at=T0 + n,
    )
