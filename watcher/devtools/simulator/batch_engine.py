"""The batch half of the simulator: batch jobs created from specs, their counters moving
while RUNNING, moved by their scripts, by ``/cancel``, ``DELETE`` or the admin API."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from watcher.devtools.simulator.batch import (
    BatchOrder,
    BatchSpec,
    SimBatch,
    batch_history_path,
    new_batch,
)
from watcher.devtools.simulator.timeline import (
    CANCEL_DELAY,
    BatchJobNotFound,
    Conflict,
    Due,
    Timeline,
    history_times,
    log_entry,
)
from watcher.model.statuses import BATCH_TERMINAL


class BatchEngine(Timeline):
    """Batch jobs by id and by scenario name, and what can happen to them."""

    batch_jobs: dict[str, SimBatch]
    batch_names: dict[str, str]
    _progressing: set[str]  # RUNNING batch jobs whose counters move
    _batch_used: bool  # shows the batch request counters in stats() (see .faults)

    def _start_batches(self) -> None:
        self.batch_jobs = {}
        self.batch_names = {}
        self._progressing = set()

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
        created_at, times = history_times(len(path), at, created_at)
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
            self.log.append(log_entry("batch", batch.id, previous, status, at))

    def _script_batch(
        self, batch: SimBatch, base: float, steps: Sequence[tuple[str, float]]
    ) -> None:
        """Schedule ``steps`` (offsets from ``base``); a RUNNING step runs until the next."""
        for i, (status, after) in enumerate(steps):
            until, succeeds = self._next_step(base, steps[i + 1 :])
            due = Due(
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

    def _step_batch(self, due: Due, at: float) -> bool:
        """Apply one scheduled step of a batch job; False when its script was replaced."""
        batch = self.batch_jobs.get(due.job_id or "")
        if batch is None or batch.generation != due.generation or due.status is None:
            return False
        self._apply_batch(batch, due.status, at, until=due.until, succeeds=due.succeeds)
        return True

    def _move_counters(self, now: float) -> None:
        """Bring the counters of every RUNNING batch job up to ``now``."""
        for batch_id in list(self._progressing):
            self.batch_jobs[batch_id].move_to(now)
