"""``kind: mistral-fine-tuning``: ``/v1/fine_tuning/jobs`` (retired by Mistral in July 2026:
it answers 410 Gone, which watcher reports once as ``watcher.source.retired``).

The list never carries events or checkpoints, so a job is fetched whole when it is new,
when its status or ``modified_at`` moved, and, with checkpoint tracking on, every cycle
while RUNNING (``modified_at`` does not move when checkpoints are added).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Unpack

import httpx2 as httpx

from watcher.config import FineTuningSourceConfig
from watcher.model.jobs import (
    Checkpoint,
    Event,
    Job,
    MalformedItem,
    key,
    opt_int,
    opt_str,
    parse_checkpoint,
    parse_event,
    timestamp,
)
from watcher.model.snapshot import JobKind, Snapshot
from watcher.model.statuses import FINE_TUNING_ENDS, FINE_TUNING_STATUSES
from watcher.model.types import FINE_TUNING_JOB
from watcher.sources.listing import ListingSource, SourceOptions

KIND = JobKind(FINE_TUNING_JOB, FINE_TUNING_ENDS)
# Status changes that skip nothing: (before, after), None for a job first seen.
ONE_STEP = frozenset(
    {
        (None, "QUEUED"),
        ("QUEUED", "VALIDATING"),
        ("VALIDATING", "VALIDATED"),
        ("VALIDATED", "RUNNING"),
        ("VALIDATED", "QUEUED"),  # /start on a job that waited for it
        ("RUNNING", "CANCELLATION_REQUESTED"),
    }
)

_MODELED = frozenset(
    {
        "id", "status", "created_at", "modified_at", "model", "job_type", "suffix",
        "fine_tuned_model", "metadata", "events", "checkpoints",
    }
)  # fmt: skip


class FineTuningSource(ListingSource):
    path = "/v1/fine_tuning/jobs"
    statuses = frozenset(FINE_TUNING_STATUSES)
    kind = KIND
    # Seconds, before any is observed: validation takes minutes, a queue a few more, and
    # a RUNNING job without expected_duration_seconds an hour or so.
    typical_dwell: ClassVar[Mapping[str, float]] = {
        "QUEUED": 300.0,
        "STARTED": 120.0,
        "VALIDATING": 120.0,
        "VALIDATED": 60.0,
        "CANCELLATION_REQUESTED": 60.0,
        "RUNNING": 3600.0,
    }

    moves_on_to: ClassVar[Mapping[str, tuple[str, ...]]] = {
        # Not VALIDATING: VALIDATED lasts seconds with auto_start, and a move straight on to
        # RUNNING (VALIDATED in between) takes a detail anyway.
        "QUEUED": ("VALIDATING",),
        "VALIDATED": ("RUNNING", "QUEUED"),
    }

    def __init__(
        self,
        config: FineTuningSourceConfig,
        client: httpx.AsyncClient,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(config, client, **options)
        self.track_checkpoints = config.track_checkpoints

    def parse(self, raw: Any) -> Job:
        return parse_job(raw)

    def needs_detail(self, job: Job, previous: Snapshot | None, *, baseline: bool) -> bool:
        if previous is None:
            # A terminal job found by the silent baseline has no news to tell.
            return not (baseline and job.status.upper() in self.kind.terminal)
        if previous.status != job.status or previous.modified_at != job.modified_at:
            return True
        return self.track_checkpoints and job.status == "RUNNING"

    def needs_detail_budgeted(self, job: Job, previous: Snapshot | None) -> bool:
        """Under a request budget a change the listing fully explains is reported from it:
        one documented step (no status can have been skipped) into a non-terminal status.
        Its event comes with the job's next detail, as history (the diff knows a status
        taken from the job-level field). A RUNNING job's checkpoints come with the details
        the budget's policy chooses, not every cycle."""
        if previous is None:
            return (None, job.status) not in ONE_STEP
        if previous.status == job.status:
            return previous.modified_at != job.modified_at
        return (previous.status, job.status) not in ONE_STEP


def parse_job(raw: Any) -> Job:
    """A :class:`Job` from one raw JSON object of the list or the detail endpoint.

    Raises :class:`MalformedItem` only when ``id``, ``status`` or ``created_at`` is unusable.
    """
    if not isinstance(raw, Mapping):
        raise MalformedItem("job is not a JSON object")
    job_id = key(raw.get("id"), field="id", limit=255)
    status = key(raw.get("status"), field="status", limit=128)
    created_at = timestamp(raw.get("created_at"), field="created_at")
    try:
        modified_at = timestamp(raw.get("modified_at"), field="modified_at")
    except MalformedItem:
        modified_at = created_at
    metadata = raw.get("metadata")
    events_raw = raw.get("events")
    checkpoints_raw = raw.get("checkpoints")
    detailed = "events" in raw or "checkpoints" in raw
    events: tuple[Event, ...] | None = None
    checkpoints: tuple[Checkpoint, ...] | None = None
    if detailed:
        events = tuple(
            e
            for e in map(parse_event, events_raw if isinstance(events_raw, list) else [])
            if e is not None
        )
        checkpoints = tuple(
            c
            for c in map(
                parse_checkpoint, checkpoints_raw if isinstance(checkpoints_raw, list) else []
            )
            if c is not None
        )
    fine_tuned_model = opt_str(raw.get("fine_tuned_model")) or None
    return Job(
        id=job_id,
        status=status.strip(),
        created_at=created_at,
        modified_at=modified_at,
        view={
            "model": opt_str(raw.get("model")),
            "job_type": opt_str(raw.get("job_type")),
            "suffix": opt_str(raw.get("suffix")),
            "fine_tuned_model": fine_tuned_model,
            "metadata": dict(metadata) if isinstance(metadata, Mapping) else {},
            "trained_tokens": opt_int(raw.get("trained_tokens")),
        },
        fine_tuned_model=fine_tuned_model,
        events=events,
        checkpoints=checkpoints,
        extra={k: v for k, v in raw.items() if k not in _MODELED},
    )
