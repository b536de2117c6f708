"""``kind: mistral-batch``: ``/v1/batch/jobs`` (live).

A listed batch job carries everything there is to know (counters, errors, timestamps), so
the detail endpoint is only asked about followed jobs that left their status listing. The
list's multi-valued ``status`` filter fetches every followed job in one listing. There is no
``modified_at``: the latest of created, started and completed stands in for it, and whole
views are compared.

Besides status changes (``batch.job.<status>``), two facts of this family:
``batch.job.progress`` once per milestone (share of processed requests), and
``batch.job.errors_rising`` once when the failed share of processed requests of a RUNNING
job reaches the threshold, with the job's ``errors`` summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Unpack

import httpx2 as httpx

from watcher.config import BatchSourceConfig
from watcher.model import types
from watcher.model.jobs import Job, MalformedItem, key, opt_int, opt_str, text, timestamp
from watcher.model.snapshot import Fact, JobKind, Snapshot
from watcher.model.statuses import BATCH_ENDS, BATCH_STATUSES
from watcher.sources.jobs import iso
from watcher.sources.listing import ListingSource, SourceOptions
from watcher.sources.policy import MIN_SPREAD

RESYNC_WINDOW = 168 * 3600 + 86400  # the longest timeout, and a day to spare
COUNTERS = ("total_requests", "completed_requests", "succeeded_requests", "failed_requests")

_MODELED = frozenset(
    {
        "id", "status", "created_at", "started_at", "completed_at", "model", "endpoint",
        "agent_id", "metadata", "errors", "output_file", "error_file", "outputs", "object",
        "input_files", *COUNTERS,
    }
)  # fmt: skip


def _optional_time(raw: Mapping[str, Any], field: str) -> int | None:
    if raw.get(field) is None:
        return None
    try:
        return timestamp(raw.get(field), field=field)
    except MalformedItem:
        return None


def _errors(value: Any) -> list[dict[str, Any]]:
    """The job-level error summary, tolerant: items without a message are kept as text."""
    out: list[dict[str, Any]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, Mapping):
            message = opt_str(item.get("message")) or ""
            count = opt_int(item.get("count"))
            out.append({"message": message[:1000], "count": count if count is not None else 1})
        elif isinstance(item, str):
            out.append({"message": text(item)[:1000], "count": 1})
    return out[:50]


def parse_batch_job(raw: Any) -> Job:
    """A :class:`Job` from one raw batch job; only ``id``, ``status`` and ``created_at`` are
    required, counters default to 0."""
    if not isinstance(raw, Mapping):
        raise MalformedItem("job is not a JSON object")
    job_id = key(raw.get("id"), field="id", limit=255)
    status = key(raw.get("status"), field="status", limit=128)
    created_at = timestamp(raw.get("created_at"), field="created_at")
    started_at = _optional_time(raw, "started_at")
    completed_at = _optional_time(raw, "completed_at")
    counters = {name: max(0, opt_int(raw.get(name)) or 0) for name in COUNTERS}
    metadata = raw.get("metadata")
    view: dict[str, Any] = {
        "model": opt_str(raw.get("model")),
        "endpoint": opt_str(raw.get("endpoint")),
        "agent_id": opt_str(raw.get("agent_id")),
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else {},
        "started_at": started_at,
        "completed_at": completed_at,
        **counters,
        "errors": _errors(raw.get("errors")),
        "output_file": opt_str(raw.get("output_file")),
        "error_file": opt_str(raw.get("error_file")),
    }
    return Job(
        id=job_id,
        status=status.strip(),
        created_at=created_at,
        modified_at=max(t for t in (created_at, started_at, completed_at) if t is not None),
        view=view,
        extra={k: v for k, v in raw.items() if k not in _MODELED},
    )


def _processed(view: Mapping[str, Any]) -> tuple[int, int, int]:
    """(succeeded + failed, failed, total) from a job view, tolerant of old snapshots."""
    succeeded = view.get("succeeded_requests") or 0
    failed = view.get("failed_requests") or 0
    return succeeded + failed, failed, view.get("total_requests") or 0


def batch_facts(
    milestones: Sequence[float], error_ratio: float, error_min_requests: int
) -> Callable[[Snapshot | None, Job], Sequence[Fact]]:
    """The ``facts`` of :class:`JobKind` for batch jobs, with the source's thresholds."""

    def percent(view: Mapping[str, Any]) -> float | None:
        done, _, total = _processed(view)
        return 100.0 * done / total if total > 0 else None  # 0 while validating: unknown

    def ratio(view: Mapping[str, Any]) -> float | None:
        done, failed, _ = _processed(view)
        return failed / done if done >= error_min_requests else None

    def facts(previous: Snapshot | None, current: Job) -> Sequence[Fact]:
        if current.status.upper() == "SUCCESS" and (current.view.get("failed_requests") or 0):
            # SUCCESS means "processing finished", not "every request succeeded".
            done, failed, total = _processed(current.view)
            return (
                Fact(
                    key=(),
                    type=types.COMPLETED_WITH_ERRORS,
                    occurred_at=None,
                    details={
                        "failed_requests": failed,
                        "processed_requests": done,
                        "total_requests": total,
                        "errors": current.view.get("errors", []),
                        "error_file": current.view.get("error_file"),
                    },
                ),
            )
        if current.status.upper() in BATCH_ENDS:
            return ()  # the final status says it; no progress news after the end
        out: list[Fact] = []
        view = current.view
        before = previous.job if previous is not None else {}
        done, failed, total = _processed(view)
        now, then = percent(view), percent(before)
        for milestone in sorted(milestones):
            if now is not None and now >= milestone and (then is None or then < milestone):
                out.append(
                    Fact(
                        key=(milestone,),
                        type=types.PROGRESS,
                        occurred_at=None,
                        details={
                            "progress": {
                                "milestone": milestone,
                                "percent": round(now, 1),
                                "processed": done,
                                "total": total,
                            }
                        },
                    )
                )
        rising, was = ratio(view), ratio(before)
        if (
            current.status == "RUNNING"
            and rising is not None
            and rising >= error_ratio
            and (was is None or was < error_ratio)
        ):
            out.append(
                Fact(
                    key=(),
                    type=types.ERRORS_RISING,
                    occurred_at=None,
                    details={
                        "failed_ratio": round(rising, 4),
                        "failed_requests": failed,
                        "processed_requests": done,
                        "errors": view.get("errors", []),
                    },
                )
            )
        return out

    return facts


class BatchSource(ListingSource):
    path = "/v1/batch/jobs"
    statuses = frozenset(BATCH_STATUSES)
    # Seconds, before any is observed (a batch waits in QUEUED until capacity frees up).
    typical_dwell: ClassVar[Mapping[str, float]] = {
        "QUEUED": 600.0,
        "CANCELLATION_REQUESTED": 60.0,
        "RUNNING": 3600.0,
    }

    moves_on_to: ClassVar[Mapping[str, tuple[str, ...]]] = {"QUEUED": ("RUNNING",)}

    def __init__(
        self, config: BatchSourceConfig, client: httpx.AsyncClient, **options: Unpack[SourceOptions]
    ) -> None:
        super().__init__(config, client, **options)
        self.kind = JobKind(
            types.BATCH_JOB,
            BATCH_ENDS,
            batch_facts(config.progress_milestones, config.error_ratio, config.error_min_requests),
        )

    def parse(self, raw: Any) -> Job:
        return parse_batch_job(raw)

    def list_params(self) -> dict[str, Any]:
        return {"order_by": "-created"}

    def full_listing(self, now: float) -> dict[str, Any]:
        # A batch job ends within 168 h (timeout_hours' maximum): older ones are terminal and
        # known, so the hourly resync need not read the whole history.
        return {"created_after": iso(max(0, int(now) - RESYNC_WINDOW))}

    def status_filters(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        # One listing for all of them: ``status=RUNNING&status=QUEUED``.
        return [{"status": list(statuses)}]

    def expected_end(
        self, snapshot: Snapshot, checked_at: float | None
    ) -> tuple[float, float] | None:
        """A user's ``metadata.expected_duration_seconds`` when there is one; else, for a
        RUNNING job, the pace of its processed requests since ``started_at`` carried on to
        the total (as of when the counters were last seen)."""
        known = super().expected_end(snapshot, checked_at)
        view = snapshot.job
        started = view.get("started_at")
        if snapshot.status != "RUNNING" or not isinstance(started, int):
            return known
        if known is not None:
            return started + (known[0] - snapshot.status_since), known[1]
        done, _, total = _processed(view)
        seen_at = checked_at if checked_at is not None else float(snapshot.modified_at)
        if total <= 0 or done <= 0 or done >= total or seen_at <= started:
            return None
        end = started + (seen_at - started) * total / done
        return end, max(0.25 * (end - seen_at), MIN_SPREAD)
