"""The simulator's state: jobs, their scripted lifecycles, request counters, faults.

Nothing here runs in the background: :meth:`Simulator.advance` applies every scripted step
that is due, at the time it was due, so a request handler calls it first and sees the same
history whatever the polling rhythm. The clock is injectable, so tests pass a fake one.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from watcher.simulator.jobs import JobSpec, SimJob, history_path, new_job

Clock = Callable[[], float]
Route = Literal["list", "detail", "other"]
FaultRoute = Literal["list", "detail", "all"]

FAULT_MODES = frozenset({"429", "500", "502", "503", "slow", "malformed", "gone", "truncated"})
FAULT_ROUTES: tuple[FaultRoute, ...] = ("list", "detail", "all")

CANCEL_DELAY = 3.0  # CANCELLATION_REQUESTED -> CANCELLED, before the speed factor
START_RUNNING_AFTER = 2.0  # /start: QUEUED -> RUNNING
CHECKPOINT_INTERVAL = 2.0  # when the RUNNING phase has no scripted end
HISTORY_GAP = 60  # seconds between the back-dated events of a job created mid-life


class JobNotFound(KeyError):
    """No job has this id."""


class Conflict(ValueError):
    """The job is not in a status that allows the action (e.g. /start outside VALIDATED)."""


@dataclass(kw_only=True)
class Fault:
    """One queued fault; ``count`` None means until cleared."""

    mode: str
    count: int | None = 1
    retry_after: float | None = None
    delay: float = 1.0
    route: FaultRoute = "all"

    def matches(self, route: Route) -> bool:
        return self.route == "all" or self.route == route

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.count,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "route": self.route,
        }


@dataclass(frozen=True)
class _Due:
    job_id: str | None
    generation: int
    status: str | None = None  # None: a checkpoint
    spec: JobSpec | None = None  # set: create this job


class Simulator:
    """All simulated jobs and everything the admin API can observe or change."""

    def __init__(
        self, *, clock: Clock = time.time, speed: float = 1.0, seed: int | None = None
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self.clock = clock
        self.speed = speed
        self.rng = random.Random(seed)
        self.jobs: dict[str, SimJob] = {}
        self.names: dict[str, str] = {}
        self.log: list[dict[str, Any]] = []
        self.requests: dict[Route, int] = {"list": 0, "detail": 0, "other": 0}
        self.in_flight = 0
        self.faults: list[Fault] = []
        self.retired = False
        self._queue: list[tuple[float, int, _Due]] = []
        self._seq = itertools.count()

    # -- time ---------------------------------------------------------------------------

    def schedule(self, specs: Iterable[JobSpec], *, start: float | None = None) -> None:
        """Create each job ``create_after`` (scaled) seconds after ``start`` (default: now)."""
        base = self.clock() if start is None else start
        for spec in specs:
            self._push(base + spec.create_after / self.speed, _Due(None, 0, spec=spec))

    def advance(self, now: float | None = None) -> int:
        """Apply every scripted step due by ``now``, in time order; returns how many."""
        now = self.clock() if now is None else now
        applied = 0
        while self._queue and self._queue[0][0] <= now:
            at, _, due = heapq.heappop(self._queue)
            if due.spec is not None:
                self.create(due.spec, at=at)
                applied += 1
                continue
            job = self.jobs.get(due.job_id or "")
            if job is None or job.generation != due.generation:
                continue  # the script was replaced (cancel, start, admin status)
            if due.status is not None:
                self._apply(job, due.status, at)
            elif job.status == "RUNNING":
                job.add_checkpoint(int(at))
            applied += 1
        return applied

    def pending(self) -> int:
        """Scheduled steps not applied yet (stale ones included)."""
        return len(self._queue)

    # -- jobs ---------------------------------------------------------------------------

    def create(
        self,
        spec: JobSpec,
        *,
        at: float | None = None,
        created_at: int | None = None,
        log: bool = True,
    ) -> SimJob:
        """Create one job now (or at ``at``) in ``spec.status``, with its event history.

        A job created past QUEUED gets back-dated events for the statuses before it (and,
        once it has run, ``spec.checkpoints`` checkpoints). ``log`` False keeps the history
        out of the applied log (bulk creation).
        """
        at = self.clock() if at is None else at
        path = history_path(spec.status)
        if created_at is None:
            created_at = int(at) - HISTORY_GAP * (len(path) - 1)
            gap = float(HISTORY_GAP)
        else:
            gap = max(0.0, int(at) - created_at) / max(1, len(path) - 1)
            gap = min(gap, HISTORY_GAP)
        job = new_job(spec, self.rng, created_at=created_at)
        self.jobs[job.id] = job
        if spec.name is not None:
            self.names[spec.name] = job.id
        times = [created_at + int(i * gap) for i in range(len(path))]
        for status, when in zip(path, times, strict=True):
            self._apply(job, status, when, log=log)
        ran = "RUNNING" in path
        if ran and (spec.status != "RUNNING" or not spec.steps):
            start = times[path.index("RUNNING")]
            end = times[path.index("RUNNING") + 1] if path[-1] != "RUNNING" else int(at)
            for i in range(1, spec.checkpoints + 1):
                job.add_checkpoint(start + (end - start) * i // (spec.checkpoints + 1))
        if not spec.frozen:
            self._script(job, at, spec.steps, spec.checkpoints if not ran or spec.steps else 0)
        return job

    def create_many(
        self, spec: JobSpec, count: int, *, created_at: int | None = None, log: bool = False
    ) -> list[str]:
        """Create ``count`` jobs alike (bulk: no applied-log entries unless ``log``)."""
        at = self.clock()
        return [self.create(spec, at=at, created_at=created_at, log=log).id for _ in range(count)]

    def get(self, job_id: str) -> SimJob:
        """The job with this id, or :class:`JobNotFound`."""
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFound(job_id) from None

    def set_status(
        self,
        job_id: str,
        status: str,
        *,
        steps: Sequence[tuple[str, float]] = (),
        checkpoints: int = 0,
    ) -> SimJob:
        """Apply ``status`` now (any string); the job then follows ``steps`` only."""
        job = self.get(job_id)
        now = self.clock()
        job.generation += 1
        self._apply(job, status, now)
        self._script(job, now, steps, checkpoints)
        return job

    def add_checkpoint(self, job_id: str) -> SimJob:
        """Add the job's next checkpoint now, whatever its status."""
        job = self.get(job_id)
        job.add_checkpoint(int(self.clock()))
        return job

    def cancel(self, job_id: str) -> SimJob:
        """POST /cancel: CANCELLATION_REQUESTED now, CANCELLED a few (scaled) seconds later."""
        job = self.get(job_id)
        if job.status in ("SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"):
            raise Conflict(f"Job {job_id} is {job.status} and cannot be cancelled.")
        if job.status == "CANCELLATION_REQUESTED":
            return job
        now = self.clock()
        job.generation += 1
        self._apply(job, "CANCELLATION_REQUESTED", now)
        if not job.frozen:
            self._script(job, now, [("CANCELLED", CANCEL_DELAY)], 0)
        return job

    def start(self, job_id: str) -> SimJob:
        """POST /start on a VALIDATED job: back to QUEUED, then RUNNING, then SUCCESS."""
        job = self.get(job_id)
        if job.status != "VALIDATED":
            raise Conflict(f"Job {job_id} is {job.status}, not VALIDATED: it cannot be started.")
        now = self.clock()
        job.generation += 1
        self._apply(job, "QUEUED", now)
        if not job.frozen:
            n = job.planned_checkpoints
            end = START_RUNNING_AFTER + CHECKPOINT_INTERVAL * (n + 1)
            self._script(job, now, [("RUNNING", START_RUNNING_AFTER), ("SUCCESS", end)], n)
        return job

    def clear(self) -> None:
        """Forget every job, scheduled step and log entry (faults and counters stay)."""
        self.jobs.clear()
        self.names.clear()
        self.log.clear()
        self._queue.clear()

    def list_jobs(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        created_by_me: bool = False,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        suffix: str | None = None,
    ) -> list[SimJob]:
        """Matching jobs, newest first by ``created_at`` then by id.

        ``created_after`` is inclusive and ``created_before`` exclusive (both unconfirmed in
        the real API).
        """
        found = [
            job
            for job in self.jobs.values()
            if (model is None or job.model == model)
            and (status is None or job.status == status)
            and (created_after is None or job.created_at >= created_after)
            and (created_before is None or job.created_at < created_before)
            and (not created_by_me or job.created_by_me)
            and (suffix is None or job.suffix == suffix)
            and (
                wandb_project is None
                or any(i.get("project") == wandb_project for i in job.integrations)
            )
            and (wandb_name is None or any(i.get("name") == wandb_name for i in job.integrations))
        ]
        found.sort(key=lambda job: job.id)
        found.sort(key=lambda job: job.created_at, reverse=True)
        return found

    # -- requests and faults --------------------------------------------------------------

    def count_request(self, route: Route) -> None:
        self.requests[route] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "requests": {**self.requests, "total": sum(self.requests.values())},
            "in_flight": self.in_flight,
        }

    def reset_stats(self) -> None:
        self.requests = {"list": 0, "detail": 0, "other": 0}

    def add_fault(self, fault: Fault) -> None:
        if fault.mode not in FAULT_MODES:
            raise ValueError(f"mode: unknown fault mode {fault.mode!r}")
        self.faults.append(fault)

    def take_fault(self, route: Route) -> Fault | None:
        """Consume the first queued fault that applies to ``route``."""
        for index, fault in enumerate(self.faults):
            if fault.matches(route):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        del self.faults[index]
                return fault
        return None

    # -- internals ------------------------------------------------------------------------

    def _push(self, at: float, due: _Due) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), due))

    def _apply(self, job: SimJob, status: str, at: float, *, log: bool = True) -> None:
        previous = job.apply_status(status, int(at))
        if log:
            self.log.append(
                {"job_id": job.id, "previous_status": previous, "status": status, "at": int(at)}
            )

    def _script(
        self, job: SimJob, base: float, steps: Sequence[tuple[str, float]], checkpoints: int
    ) -> None:
        """Schedule ``steps`` (offsets from ``base``) and checkpoints over the RUNNING phase."""
        for status, after in steps:
            self._push(base + after / self.speed, _Due(job.id, job.generation, status=status))
        if checkpoints <= 0:
            return
        offsets = [after for _, after in steps]
        statuses = [status for status, _ in steps]
        if "RUNNING" in statuses:
            index = statuses.index("RUNNING")
            start = offsets[index]
            end = offsets[index + 1] if index + 1 < len(offsets) else None
        elif job.status == "RUNNING":
            start, end = 0.0, offsets[0] if offsets else None
        else:
            return
        if end is None or end <= start:
            end = start + CHECKPOINT_INTERVAL * (checkpoints + 1)
        for i in range(1, checkpoints + 1):
            offset = start + (end - start) * i / (checkpoints + 1)
            self._push(base + offset / self.speed, _Due(job.id, job.generation))
