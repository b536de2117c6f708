"""Simulated batch jobs: what to create (:class:`BatchSpec`), their state (:class:`SimBatch`)
and the JSON the real ``/v1/batch/jobs`` API sends for them (batch reference §4 to §6).

Batch jobs have no events and no ``modified_at``: a watcher only sees snapshots. While a job
is RUNNING its counters move linearly, at request time, from the last point they were set at
(entering RUNNING, or an admin ``progress``) to where they stand at the next scripted step:
every request done if that step is SUCCESS, the spec's ``progress`` share otherwise (a run
cut short by a timeout, a cancellation or a failure).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from watcher.model.statuses import BATCH_STATUSES as BATCH_STATUSES  # the API's (§5)
from watcher.model.statuses import BATCH_TERMINAL

BatchOrder = Literal["created", "-created"]
BATCH_ORDERS: tuple[BatchOrder, ...] = ("created", "-created")

DEFAULT_ENDPOINT = "/v1/chat/completions"
DEFAULT_BATCH_MODEL = "mistral-small-latest"
DEFAULT_TOTAL_REQUESTS = 100
DEFAULT_PROGRESS = 0.5
# The real API's wording for a failed job is unconfirmed (reference §5).
FAILED_MESSAGE = "The batch job failed (simulated)."

# The statuses a batch has passed through when it is first seen in a given status.
_HISTORY: dict[str, tuple[str, ...]] = {
    "QUEUED": ("QUEUED",),
    "RUNNING": ("QUEUED", "RUNNING"),
    "SUCCESS": ("QUEUED", "RUNNING", "SUCCESS"),
    "FAILED": ("QUEUED", "RUNNING", "FAILED"),
    "TIMEOUT_EXCEEDED": ("QUEUED", "RUNNING", "TIMEOUT_EXCEEDED"),
    "CANCELLATION_REQUESTED": ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED"),
    "CANCELLED": ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED", "CANCELLED"),
}


def batch_history_path(status: str) -> tuple[str, ...]:
    """The statuses a batch created directly in ``status`` has gone through, oldest first."""
    return _HISTORY.get(status, ("QUEUED", status))


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """What to create: one batch job and its script.

    ``steps`` are ``(status, seconds after creation)`` pairs, non-decreasing in time;
    ``status`` is the status the job is created in. ``failure_rate`` is the fraction of the
    completed requests that fail; ``errors`` are the messages of the job's ``errors`` list
    once it ends with failed requests (a FAILED job always gets one). ``progress`` is how
    far a run gets when it does not succeed: the fraction of requests completed when RUNNING
    gives way to anything but SUCCESS, and when the job is created past QUEUED (SUCCESS
    completes them all). ``total_requests`` stays 0 while QUEUED unless
    ``total_while_queued``. ``model`` None sends ``null``. All delays are divided by the
    simulator's speed; ``create_after`` only matters for scheduled (scenario) jobs.
    """

    name: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    model: str | None = DEFAULT_BATCH_MODEL
    agent_id: str | None = None
    metadata: Mapping[str, Any] | None = field(default=None, hash=False)
    status: str = "QUEUED"
    create_after: float = 0.0
    steps: tuple[tuple[str, float], ...] = ()
    total_requests: int = DEFAULT_TOTAL_REQUESTS
    failure_rate: float = 0.0
    errors: tuple[str, ...] = ()
    progress: float = DEFAULT_PROGRESS
    total_while_queued: bool = False
    frozen: bool = False
    created_by_me: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.total_requests, bool) or self.total_requests < 0:
            raise ValueError("total_requests: must be a non-negative integer")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate: must be between 0 and 1")
        if not 0.0 <= self.progress <= 1.0:
            raise ValueError("progress: must be between 0 and 1")


@dataclass(eq=False, kw_only=True)
class SimBatch:
    """The state of one simulated batch job; rendered to API JSON by :meth:`to_json`."""

    id: str
    name: str | None
    endpoint: str
    model: str | None
    agent_id: str | None
    metadata: dict[str, Any] | None
    input_files: list[str]
    frozen: bool
    created_by_me: bool
    planned_total: int
    planned_progress: float
    failure_rate: float
    error_messages: tuple[str, ...]
    created_at: int
    status: str = ""
    started_at: int | None = None
    completed_at: int | None = None
    total_requests: int = 0
    completed_requests: int = 0
    failed_requests: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file: str | None = None
    error_file: str | None = None
    generation: int = 0  # bumped when the script is replaced; stale scheduled steps are dropped
    # The RUNNING window: counters move linearly from the anchor to ``run_target`` completed
    # requests at ``run_end``; None means they stay where they are.
    anchor_at: float = 0.0
    anchor_completed: int = 0
    anchor_failed: int = 0
    run_end: float | None = None
    run_target: int = 0
    # Drawn at creation, shown once the job is done.
    output_file_id: str = ""
    error_file_id: str = ""

    @property
    def succeeded_requests(self) -> int:
        return self.completed_requests - self.failed_requests

    @property
    def progressing(self) -> bool:
        """True while the counters move with time on their own."""
        return self.status == "RUNNING" and self.run_end is not None and not self.frozen

    def apply_status(
        self, status: str, at: float, *, run_end: float | None = None, succeeds: bool = False
    ) -> str | None:
        """Enter ``status`` at ``at``; returns the previous status or None.

        For RUNNING, ``run_end`` is when the next step comes; ``succeeds`` says whether it
        is SUCCESS (every request done by then) or not (the ``progress`` share done).
        """
        self.move_to(at)
        previous = self.status or None
        self.status = status
        if status != "QUEUED":
            self.total_requests = self.planned_total
        if status in ("RUNNING", "SUCCESS") and self.started_at is None:
            self.started_at = int(at)
        self._anchor(at)
        self.run_end = run_end if status == "RUNNING" and not self.frozen else None
        share = self.total_requests if succeeds else self.planned_share()
        self.run_target = max(self.completed_requests, share)
        if status == "SUCCESS":
            self.completed_requests = self.total_requests
            self.failed_requests = self._failed_at(self.total_requests)
        if status in BATCH_TERMINAL:
            self.completed_at = int(at)
            self.errors = self._terminal_errors()
            done = status == "SUCCESS" or self.succeeded_requests > 0
            self.output_file = self.output_file_id if done else None
            self.error_file = self.error_file_id if self.failed_requests > 0 else None
        else:
            self.completed_at = None
            self.errors = []
            self.output_file = self.error_file = None
        return previous

    def move_to(self, at: float) -> None:
        """Advance the counters of a RUNNING job to time ``at`` (never backwards)."""
        if not self.progressing or self.run_end is None:
            return
        span = self.run_end - self.anchor_at
        fraction = 1.0 if span <= 0 else min(1.0, max(0.0, (at - self.anchor_at) / span))
        remaining = self.run_target - self.anchor_completed
        completed = self.anchor_completed + math.floor(remaining * fraction)
        if completed > self.completed_requests:
            self.completed_requests = completed
            self.failed_requests = self._failed_at(completed)

    def planned_share(self) -> int:
        """The requests a run cut short completes (``progress`` of the total)."""
        return math.floor(self.planned_total * self.planned_progress)

    def set_progress(self, completed: int, failed: int, at: float) -> None:
        """Set the counters directly; a RUNNING job then moves on from them."""
        total = self.planned_total
        if not 0 <= completed <= total:
            raise ValueError(f"completed: must be between 0 and total_requests ({total})")
        if not 0 <= failed <= completed:
            raise ValueError(f"failed: must be between 0 and completed ({completed})")
        self.total_requests = total
        self.completed_requests = completed
        self.failed_requests = failed
        self._anchor(at)
        self.run_target = max(self.run_target, completed)

    def to_json(self) -> dict[str, Any]:
        """The job as both the list and the single-job GET send it (no ``outputs``)."""
        return {
            "id": self.id,
            "object": "batch",
            "input_files": list(self.input_files),
            "endpoint": self.endpoint,
            "model": self.model,
            "agent_id": self.agent_id,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "errors": [dict(error) for error in self.errors],
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "total_requests": self.total_requests,
            "completed_requests": self.completed_requests,
            "succeeded_requests": self.succeeded_requests,
            "failed_requests": self.failed_requests,
            "output_file": self.output_file,
            "error_file": self.error_file,
        }

    def _anchor(self, at: float) -> None:
        self.anchor_at = at
        self.anchor_completed = self.completed_requests
        self.anchor_failed = self.failed_requests

    def _failed_at(self, completed: int) -> int:
        """Failed requests once ``completed`` are done: the anchor's plus the rate's share."""
        failed = self.anchor_failed + round((completed - self.anchor_completed) * self.failure_rate)
        return min(max(failed, self.anchor_failed), completed)

    def _terminal_errors(self) -> list[dict[str, Any]]:
        failed = self.failed_requests
        messages = self.error_messages
        if failed > 0 and messages:
            used = messages[: min(len(messages), failed)]
            share, extra = divmod(failed, len(used))
            return [
                {"message": message, "count": share + (1 if i < extra else 0)}
                for i, message in enumerate(used)
            ]
        if self.status == "FAILED":
            return [
                {"message": messages[0] if messages else FAILED_MESSAGE, "count": max(1, failed)}
            ]
        return []


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_batch(spec: BatchSpec, rng: random.Random, *, created_at: int) -> SimBatch:
    """A batch in no status yet, with the fields the real API fills at creation."""
    return SimBatch(
        id=_uuid(rng),
        name=spec.name,
        endpoint=spec.endpoint,
        model=spec.model,
        agent_id=spec.agent_id,
        metadata=dict(spec.metadata) if spec.metadata is not None else None,
        input_files=[_uuid(rng)],
        frozen=spec.frozen,
        created_by_me=spec.created_by_me,
        planned_total=spec.total_requests,
        planned_progress=spec.progress,
        failure_rate=spec.failure_rate,
        error_messages=spec.errors,
        created_at=created_at,
        total_requests=spec.total_requests if spec.total_while_queued else 0,
        output_file_id=_uuid(rng),
        error_file_id=_uuid(rng),
    )
