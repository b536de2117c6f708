"""The fine-tuning half of the simulator: jobs created from specs with a back-dated
history, moved by their scripts, by ``/cancel`` and ``/start``, or by the admin API."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from watcher.devtools.simulator.jobs import JobSpec, SimJob, history_path, new_job
from watcher.devtools.simulator.timeline import (
    CANCEL_DELAY,
    Conflict,
    Due,
    JobNotFound,
    Timeline,
    history_times,
    log_entry,
)

START_RUNNING_AFTER = 2.0  # /start: QUEUED -> RUNNING
CHECKPOINT_INTERVAL = 2.0  # when the RUNNING phase has no scripted end


class FineTuningEngine(Timeline):
    """Fine-tuning jobs by id and by scenario name, and what can happen to them."""

    jobs: dict[str, SimJob]
    names: dict[str, str]
    # Jobs newest first (created_at never changes), rebuilt after a creation: a listing
    # of 100,000 jobs then costs a slice, not a sort per page.
    _ordered: list[SimJob] | None
    _ages: list[int]  # -created_at of _ordered, ascending, for bisect

    def _start_fine_tuning(self) -> None:
        self.jobs = {}
        self.names = {}
        self._ordered = None
        self._ages = []

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
        created_at, back_dated = history_times(len(path), at, created_at)
        times = [int(when) for when in back_dated]
        job = new_job(spec, self.rng, created_at=created_at)
        self.jobs[job.id] = job
        self._ordered = None
        if spec.name is not None:
            self.names[spec.name] = job.id
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

    def _apply(self, job: SimJob, status: str, at: float, *, log: bool = True) -> None:
        previous = job.apply_status(status, int(at))
        if log:
            self.log.append(log_entry("fine_tuning", job.id, previous, status, at))

    def _script(
        self, job: SimJob, base: float, steps: Sequence[tuple[str, float]], checkpoints: int
    ) -> None:
        """Schedule ``steps`` (offsets from ``base``) and checkpoints over the RUNNING phase."""
        for status, after in steps:
            self._push(base + after / self.speed, Due(job.id, job.generation, status=status))
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
            self._push(base + offset / self.speed, Due(job.id, job.generation))

    def _step_job(self, due: Due, at: float) -> bool:
        """Apply one scheduled step of a job; False when its script was replaced since."""
        job = self.jobs.get(due.job_id or "")
        if job is None or job.generation != due.generation:
            return False  # the script was replaced (cancel, start, admin status)
        if due.status is not None:
            self._apply(job, due.status, at)
        elif job.status == "RUNNING":
            job.add_checkpoint(int(at))
        return True
