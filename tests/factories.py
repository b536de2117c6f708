"""Builders for raw API payloads and parsed jobs used across the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from watcher.config import SinkConfig, validate_config
from watcher.model.jobs import Job
from watcher.model.outbox import Envelope
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


# -- what a sink receives ---------------------------------------------------------------------

SINK_JOB_ID = "3b9c1e7a-0000-4000-8000-000000000001"
SINK_NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def sink_job(**overrides: Any) -> dict[str, Any]:
    """A job as a sink sees it in ``Transition.job``: a failed fine-tuning job."""
    base: dict[str, Any] = {
        "id": SINK_JOB_ID,
        "status": "FAILED",
        "model": "open-mistral-7b",
        "job_type": "completion",
        "suffix": "support-bot",
        "fine_tuned_model": None,
        "created_at": 1_794_990_000,
        "modified_at": 1_794_999_000,
    }
    return base | overrides


def sink_envelope(*, detected_at: float = SINK_NOW, **overrides: Any) -> Envelope:
    """``sink_job()`` going RUNNING -> FAILED, as the dispatcher hands it to a sink; any
    field of the transition can be overridden."""
    fields: dict[str, Any] = {
        "id": "wt_0001",
        "type": "fine_tuning.job.failed",
        "source": "ft",
        "job_id": SINK_JOB_ID,
        "status": "FAILED",
        "previous_status": "RUNNING",
        "occurred_at": 1_794_999_000,
        "job": sink_job(),
    }
    return Envelope(transition=Transition(**(fields | overrides)), detected_at=detected_at)


def sink_config(
    tmp_path: Path, sink: dict[str, Any], *, env: dict[str, str] | None = None
) -> SinkConfig:
    """The validated config of one sink named ``out`` (``sink`` holds its other keys), in a
    config file that is otherwise minimal; ``*_file`` paths are relative to ``tmp_path``."""
    config = validate_config(
        {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": "http://127.0.0.1:1",
                    "api_key": "k",
                }
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "out", **sink}],
        },
        env=env or {},
        base=tmp_path,
    )
    return config.sinks[0]
