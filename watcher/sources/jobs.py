"""What a cycle does to a job between the API's answer and the diff, whichever cycle it is
(whole or steady): times that never go back, DELETED after a 404, and the new-jobs filter
(a watermark of the newest ``created_at`` seen, minus an overlap)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watcher.model.jobs import Job
from watcher.model.snapshot import Snapshot
from watcher.model.statuses import DELETED

# Seconds re-listed before the watermark each cycle: the bound's inclusiveness is
# unconfirmed, and a job may become visible a little after a newer one.
WATERMARK_OVERLAP = 60


def iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created_since(watermark: int) -> dict[str, Any]:
    """The query parameters of the new-jobs listing for a ``watermark``."""
    return {"created_after": iso(max(0, watermark - WATERMARK_OVERLAP))}


def settle(job: Job, previous: Snapshot | None, now: float) -> Job:
    """``modified_at`` that never goes back, and moves when the status does: a batch job has
    no ``modified_at`` (its stand-in is the latest of its timestamps, which a change to
    CANCELLATION_REQUESTED does not move), and a status change needs its own time."""
    if previous is None:
        return job
    if job.status != previous.status and job.modified_at <= previous.modified_at:
        return job.model_copy(update={"modified_at": max(int(now), previous.modified_at + 1)})
    if job.modified_at < previous.modified_at:
        return job.model_copy(update={"modified_at": previous.modified_at})
    return job


def deleted(snapshot: Snapshot, now: float) -> Job:
    """The last state of a job that disappeared from the API, now DELETED."""
    view = {
        k: v
        for k, v in snapshot.job.items()
        if k not in ("id", "status", "created_at", "modified_at", "loss_curve")
    }
    return Job(
        id=snapshot.job_id,
        status=DELETED,
        created_at=snapshot.created_at,
        modified_at=max(int(now), snapshot.modified_at + 1),
        view=view,
        fine_tuned_model=snapshot.fine_tuned_model,
    )
