"""The simulator's time: an injectable clock, a speed factor, the queue of scripted steps
waiting for their moment, and the log of every status applied.

Nothing runs in the background: :meth:`Simulator.advance` pops what is due (see
:mod:`.engine`), so a test that owns the clock owns the simulated history.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from watcher.devtools.simulator.batch import BatchSpec
from watcher.devtools.simulator.jobs import JobSpec
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

Clock = Callable[[], float]

CANCEL_DELAY = 3.0  # CANCELLATION_REQUESTED -> CANCELLED, before the speed factor
HISTORY_GAP = 60  # seconds between the back-dated events of a job created mid-life


class JobNotFound(KeyError):
    """No job has this id."""


class BatchJobNotFound(JobNotFound):
    """No batch job has this id."""


class Conflict(ValueError):
    """The job is not in a status that allows the action (e.g. /start outside VALIDATED)."""


@dataclass(frozen=True)
class Due:
    """One scheduled step: create a job (or an execution), or move one (a status, a
    checkpoint, a workflow action)."""

    job_id: str | None
    generation: int
    status: str | None = None  # None: a checkpoint
    spec: JobSpec | BatchSpec | WorkflowSpec | None = None  # set: create this job
    batch: bool = False  # job_id names a batch job
    until: float | None = None  # batch RUNNING: when the next step comes
    succeeds: bool = False  # batch RUNNING: whether that next step is SUCCESS
    action: WorkflowStep | None = None  # set: job_id names an execution; apply this


def log_entry(
    kind: str, job_id: str, previous: str | None, status: str, at: float
) -> dict[str, Any]:
    """One line of the applied log (``GET /_sim/log``)."""
    return {
        "job_id": job_id,
        "previous_status": previous,
        "status": status,
        "at": int(at),
        "kind": kind,
    }


def history_times(statuses: int, at: float, created_at: int | None) -> tuple[int, list[float]]:
    """When a job that is at its last of ``statuses`` statuses at ``at`` passed each of them.

    Without ``created_at`` they are back-dated :data:`HISTORY_GAP` apart; with it, spread
    from ``created_at`` on, at most :data:`HISTORY_GAP` apart.
    """
    if created_at is None:
        created_at = int(at) - HISTORY_GAP * (statuses - 1)
        times = [float(created_at + HISTORY_GAP * i) for i in range(statuses - 1)] + [at]
    else:
        gap = min(max(0.0, int(at) - created_at) / max(1, statuses - 1), HISTORY_GAP)
        times = [float(created_at + int(i * gap)) for i in range(statuses)]
    return created_at, times


class Timeline:
    """The clock, the speed factor, the seeded randomness, the schedule and the applied log
    that the fine-tuning and batch engines share."""

    clock: Clock
    speed: float
    rng: random.Random
    log: list[dict[str, Any]]
    _queue: list[tuple[float, int, Due]]
    _seq: Iterator[int]

    def _start_timeline(self, clock: Clock, speed: float, seed: int | None) -> None:
        self.clock = clock
        self.speed = speed
        self.rng = random.Random(seed)
        self.log = []
        self._queue = []
        self._seq = itertools.count()

    def schedule(
        self, specs: Iterable[JobSpec | BatchSpec | WorkflowSpec], *, start: float | None = None
    ) -> None:
        """Create each job (fine-tuning or batch) or workflow execution ``create_after``
        (scaled) seconds after ``start`` (default: now)."""
        base = self.clock() if start is None else start
        for spec in specs:
            self._push(base + spec.create_after / self.speed, Due(None, 0, spec=spec))

    def pending(self) -> int:
        """Scheduled steps not applied yet (stale ones included)."""
        return len(self._queue)

    def _push(self, at: float, due: Due) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), due))

    def _due_by(self, now: float) -> Iterator[tuple[float, Due]]:
        """Every scheduled step due by ``now``, in time order, taken off the queue."""
        while self._queue and self._queue[0][0] <= now:
            at, _, due = heapq.heappop(self._queue)
            yield at, due
