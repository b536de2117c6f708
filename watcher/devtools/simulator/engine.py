"""The simulator's state: fine-tuning and batch jobs, their scripted lifecycles, request
counters, faults.

Nothing here runs in the background: :meth:`Simulator.advance` applies every scripted step
that is due, at the time it was due, so a request handler calls it first and sees the same
history whatever the polling rhythm; it also brings the counters of RUNNING batch jobs up to
date. The clock is injectable, so tests pass a fake one.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from watcher.devtools.simulator.batch import (
    BatchOrder,
    BatchSpec,
    SimBatch,
    batch_history_path,
    new_batch,
)
from watcher.devtools.simulator.jobs import JobSpec, SimJob, history_path, new_job
from watcher.model.statuses import BATCH_TERMINAL

Clock = Callable[[], float]
Route = Literal["list", "detail", "other", "batch_list", "batch_detail"]
FaultRoute = Literal["list", "detail", "batch_list", "batch_detail", "all"]

FAULT_MODES = frozenset({"429", "500", "502", "503", "slow", "malformed", "gone", "truncated"})
FAULT_ROUTES: tuple[FaultRoute, ...] = ("list", "detail", "batch_list", "batch_detail", "all")
_BATCH_ROUTES: tuple[Route, ...] = ("batch_list", "batch_detail")

CANCEL_DELAY = 3.0  # CANCELLATION_REQUESTED -> CANCELLED, before the speed factor
START_RUNNING_AFTER = 2.0  # /start: QUEUED -> RUNNING
CHECKPOINT_INTERVAL = 2.0  # when the RUNNING phase has no scripted end
HISTORY_GAP = 60  # seconds between the back-dated events of a job created mid-life


class JobNotFound(KeyError):
    """No job has this id."""


class BatchJobNotFound(JobNotFound):
    """No batch job has this id."""


class Conflict(ValueError):
    """The job is not in a status that allows the action (e.g. /start outside VALIDATED)."""


@dataclass(kw_only=True)
class Fault:
    """One queued fault; ``count`` None means until cleared.

    ``rate`` below 1 makes it hit only that share of the matching requests (a fault mix for
    endurance runs: ``rate=0.1`` is 10 % of them); see :meth:`Simulator.take_fault`.
    """

    mode: str
    count: int | None = 1
    retry_after: float | None = None
    delay: float = 1.0
    route: FaultRoute = "all"
    rate: float = 1.0

    def matches(self, route: Route) -> bool:
        return self.route == "all" or self.route == route

    def to_json(self) -> dict[str, Any]:
        shown = {
            "mode": self.mode,
            "count": self.count,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "route": self.route,
        }
        return shown if self.rate == 1.0 else {**shown, "rate": self.rate}


@dataclass(frozen=True)
class _Due:
    job_id: str | None
    generation: int
    status: str | None = None  # None: a checkpoint
    spec: JobSpec | BatchSpec | None = None  # set: create this job
    batch: bool = False  # job_id names a batch job
    until: float | None = None  # batch RUNNING: when the next step comes
    succeeds: bool = False  # batch RUNNING: whether that next step is SUCCESS


_ROUTES: tuple[Route, ...] = ("list", "detail", "other", "batch_list", "batch_detail")


def _log_entry(
    kind: str, job_id: str, previous: str | None, status: str, at: float
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "previous_status": previous,
        "status": status,
        "at": int(at),
        "kind": kind,
    }


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
        self.batch_jobs: dict[str, SimBatch] = {}
        self.batch_names: dict[str, str] = {}
        self.log: list[dict[str, Any]] = []
        self.requests: dict[Route, int] = dict.fromkeys(_ROUTES, 0)
        self.in_flight = 0
        self.faults: list[Fault] = []
        self._fault_draws = random.Random(seed)  # apart: a fault mix leaves job ids alone
        self.retired = False
        self._queue: list[tuple[float, int, _Due]] = []
        self._seq = itertools.count()
        self._progressing: set[str] = set()  # RUNNING batch jobs whose counters move
        # Jobs newest first (created_at never changes), rebuilt after a creation: a listing
        # of 100,000 jobs then costs a slice, not a sort per page.
        self._ordered: list[SimJob] | None = None
        self._ages: list[int] = []  # -created_at of _ordered, ascending, for bisect
        self._batch_used = False  # shows the batch request counters in stats()

    # -- time ---------------------------------------------------------------------------

    def schedule(self, specs: Iterable[JobSpec | BatchSpec], *, start: float | None = None) -> None:
        """Create each job (fine-tuning or batch) ``create_after`` (scaled) seconds after
        ``start`` (default: now)."""
        base = self.clock() if start is None else start
        for spec in specs:
            self._push(base + spec.create_after / self.speed, _Due(None, 0, spec=spec))

    def advance(self, now: float | None = None) -> int:
        """Apply every scripted step due by ``now``, in time order; returns how many.

        Then the counters of RUNNING batch jobs are brought up to ``now``.
        """
        now = self.clock() if now is None else now
        applied = 0
        while self._queue and self._queue[0][0] <= now:
            at, _, due = heapq.heappop(self._queue)
            if isinstance(due.spec, BatchSpec):
                self.create_batch(due.spec, at=at)
                applied += 1
                continue
            if due.spec is not None:
                self.create(due.spec, at=at)
                applied += 1
                continue
            if due.batch:
                batch = self.batch_jobs.get(due.job_id or "")
                if batch is None or batch.generation != due.generation or due.status is None:
                    continue
                self._apply_batch(batch, due.status, at, until=due.until, succeeds=due.succeeds)
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
        for batch_id in list(self._progressing):
            self.batch_jobs[batch_id].move_to(now)
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
        self._ordered = None
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
        """Forget every job (batch jobs too), scheduled step and log entry (faults and
        counters stay)."""
        self.jobs.clear()
        self._ordered = None
        self.names.clear()
        self.batch_jobs.clear()
        self.batch_names.clear()
        self._progressing.clear()
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
        ordered, ages = self._by_age()
        # Newest first, so each bound cuts the list at one point.
        start = 0 if created_before is None else bisect.bisect_right(ages, -created_before)
        end = len(ordered) if created_after is None else bisect.bisect_right(ages, -created_after)
        window = ordered[start:end]
        if status is not None:  # the common filter first, in one tight pass
            window = [job for job in window if job.status == status]
        if (model, suffix, wandb_project, wandb_name) == (None,) * 4 and not created_by_me:
            return window
        return [
            job
            for job in window
            if (model is None or job.model == model)
            and (not created_by_me or job.created_by_me)
            and (suffix is None or job.suffix == suffix)
            and (
                wandb_project is None
                or any(i.get("project") == wandb_project for i in job.integrations)
            )
            and (wandb_name is None or any(i.get("name") == wandb_name for i in job.integrations))
        ]

    def _by_age(self) -> tuple[list[SimJob], list[int]]:
        """Every job newest first (then by id), and their negated ``created_at``."""
        if self._ordered is None:
            self._ordered = sorted(self.jobs.values(), key=lambda job: (-job.created_at, job.id))
            self._ages = [-job.created_at for job in self._ordered]
        return self._ordered, self._ages

    # -- batch jobs -----------------------------------------------------------------------

    def create_batch(
        self,
        spec: BatchSpec,
        *,
        at: float | None = None,
        created_at: int | None = None,
        log: bool = True,
    ) -> SimBatch:
        """Create one batch job now (or at ``at``) in ``spec.status``.

        A job created past QUEUED went through the statuses before it, back-dated like a
        fine-tuning job's history (its ``started_at``/``completed_at`` follow); ``log``
        False keeps them out of the applied log (bulk creation).
        """
        at = self.clock() if at is None else at
        path = batch_history_path(spec.status)
        if created_at is None:
            created_at = int(at) - HISTORY_GAP * (len(path) - 1)
            times = [float(created_at + HISTORY_GAP * i) for i in range(len(path) - 1)] + [at]
        else:
            gap = min(max(0.0, int(at) - created_at) / max(1, len(path) - 1), HISTORY_GAP)
            times = [float(created_at + int(i * gap)) for i in range(len(path))]
        batch = new_batch(spec, self.rng, created_at=created_at)
        self.batch_jobs[batch.id] = batch
        if spec.name is not None:
            self.batch_names[spec.name] = batch.id
        self._batch_used = True
        end, succeeds = self._next_step(at, spec.steps)
        last = len(path) - 1
        for i, (status, when) in enumerate(zip(path, times, strict=True)):
            if i == last and status != "QUEUED":
                completed = batch.planned_share()
                batch.set_progress(completed, round(completed * spec.failure_rate), when)
            if i < last:
                self._apply_batch(batch, status, when, log=log)
            else:
                self._apply_batch(batch, status, when, until=end, succeeds=succeeds, log=log)
        if not spec.frozen:
            self._script_batch(batch, at, spec.steps)
        return batch

    def create_batches(
        self, spec: BatchSpec, count: int, *, created_at: int | None = None, log: bool = False
    ) -> list[str]:
        """Create ``count`` batch jobs alike (bulk: no applied-log entries unless ``log``)."""
        at = self.clock()
        return [
            self.create_batch(spec, at=at, created_at=created_at, log=log).id for _ in range(count)
        ]

    def get_batch(self, batch_id: str) -> SimBatch:
        """The batch job with this id, or :class:`BatchJobNotFound`."""
        try:
            return self.batch_jobs[batch_id]
        except KeyError:
            raise BatchJobNotFound(batch_id) from None

    def set_batch_status(
        self, batch_id: str, status: str, *, steps: Sequence[tuple[str, float]] = ()
    ) -> SimBatch:
        """Apply ``status`` now (any string); the job then follows ``steps`` only.

        Set to RUNNING, its counters move on to the total at the first step's time.
        """
        batch = self.get_batch(batch_id)
        now = self.clock()
        batch.generation += 1
        end, succeeds = self._next_step(now, steps)
        self._apply_batch(batch, status, now, until=end, succeeds=succeeds)
        self._script_batch(batch, now, steps)
        return batch

    def set_batch_progress(
        self, batch_id: str, completed: int, failed: int | None = None
    ) -> SimBatch:
        """Set the counters now (``failed`` None: unchanged); :class:`ValueError` unless
        ``0 <= failed <= completed <= total``. A RUNNING job moves on from there."""
        batch = self.get_batch(batch_id)
        now = self.clock()
        batch.move_to(now)
        batch.set_progress(completed, batch.failed_requests if failed is None else failed, now)
        return batch

    def cancel_batch(self, batch_id: str) -> SimBatch:
        """POST /cancel: CANCELLATION_REQUESTED now, CANCELLED a few (scaled) seconds later."""
        batch = self.get_batch(batch_id)
        if batch.status in BATCH_TERMINAL:
            raise Conflict(f"Batch job {batch_id} is {batch.status} and cannot be cancelled.")
        if batch.status == "CANCELLATION_REQUESTED":
            return batch
        now = self.clock()
        batch.generation += 1
        self._apply_batch(batch, "CANCELLATION_REQUESTED", now)
        if not batch.frozen:
            self._script_batch(batch, now, [("CANCELLED", CANCEL_DELAY)])
        return batch

    def delete_batch(self, batch_id: str) -> SimBatch:
        """DELETE: the job disappears (its scheduled steps are dropped)."""
        batch = self.get_batch(batch_id)
        del self.batch_jobs[batch_id]
        self._progressing.discard(batch_id)
        if batch.name is not None and self.batch_names.get(batch.name) == batch_id:
            del self.batch_names[batch.name]
        return batch

    def list_batches(
        self,
        *,
        model: str | None = None,
        agent_id: str | None = None,
        statuses: Collection[str] | None = None,
        created_after: float | None = None,
        created_by_me: bool = False,
        order_by: BatchOrder = "-created",
    ) -> list[SimBatch]:
        """Matching batch jobs by ``created_at`` (newest first for ``-created``), then by id.

        ``created_after`` is inclusive (unconfirmed in the real API); ``statuses`` empty or
        None means any.
        """
        found = [
            batch
            for batch in self.batch_jobs.values()
            if (model is None or batch.model == model)
            and (agent_id is None or batch.agent_id == agent_id)
            and (not statuses or batch.status in statuses)
            and (created_after is None or batch.created_at >= created_after)
            and (not created_by_me or batch.created_by_me)
        ]
        found.sort(key=lambda batch: batch.id)
        found.sort(key=lambda batch: batch.created_at, reverse=order_by == "-created")
        return found

    # -- requests and faults --------------------------------------------------------------

    def count_request(self, route: Route) -> None:
        self.requests[route] += 1
        if route in _BATCH_ROUTES:
            self._batch_used = True

    def stats(self) -> dict[str, Any]:
        """Request counters; ``total`` counts every ``/v1`` request.

        ``batch_list`` and ``batch_detail`` appear once the batch API is in use (a batch
        job was created or a batch route requested), so the fine-tuning-only shape stays.
        """
        shown = {
            route: count
            for route, count in self.requests.items()
            if self._batch_used or route not in _BATCH_ROUTES
        }
        return {
            "requests": {**shown, "total": sum(self.requests.values())},
            "in_flight": self.in_flight,
        }

    def reset_stats(self) -> None:
        self.requests = dict.fromkeys(_ROUTES, 0)

    def add_fault(self, fault: Fault) -> None:
        if fault.mode not in FAULT_MODES:
            raise ValueError(f"mode: unknown fault mode {fault.mode!r}")
        if not 0.0 < fault.rate <= 1.0:
            raise ValueError(f"rate: must be above 0 and at most 1, not {fault.rate!r}")
        self.faults.append(fault)

    def take_fault(self, route: Route) -> Fault | None:
        """Consume the first queued fault that applies to ``route``.

        The faults with a ``rate`` below 1 share one draw per request, each taking its own
        slice of it: rates 0.10 and 0.05 hit 10 % and 5 % of the requests, never the same
        one (independent draws would skew the mix).
        """
        draw = self._fault_draws.random()
        for index, fault in enumerate(self.faults):
            if fault.matches(route):
                if fault.rate < 1.0 and draw >= fault.rate:
                    draw -= fault.rate
                    continue
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
            self.log.append(_log_entry("fine_tuning", job.id, previous, status, at))

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

    def _apply_batch(
        self,
        batch: SimBatch,
        status: str,
        at: float,
        *,
        until: float | None = None,
        succeeds: bool = False,
        log: bool = True,
    ) -> None:
        previous = batch.apply_status(status, at, run_end=until, succeeds=succeeds)
        if batch.progressing:
            self._progressing.add(batch.id)
        else:
            self._progressing.discard(batch.id)
        if log:
            self.log.append(_log_entry("batch", batch.id, previous, status, at))

    def _script_batch(
        self, batch: SimBatch, base: float, steps: Sequence[tuple[str, float]]
    ) -> None:
        """Schedule ``steps`` (offsets from ``base``); a RUNNING step runs until the next."""
        for i, (status, after) in enumerate(steps):
            until, succeeds = self._next_step(base, steps[i + 1 :])
            due = _Due(
                batch.id,
                batch.generation,
                status=status,
                batch=True,
                until=until,
                succeeds=succeeds,
            )
            self._push(base + after / self.speed, due)

    def _next_step(
        self, base: float, steps: Sequence[tuple[str, float]]
    ) -> tuple[float | None, bool]:
        """When the first of ``steps`` comes (None: never), and whether it is SUCCESS."""
        if not steps:
            return None, False
        status, after = steps[0]
        return base + after / self.speed, status == "SUCCESS"
