"""The simulator's state: fine-tuning and batch jobs, their scripted lifecycles, request
counters, faults.

Nothing here runs in the background: :meth:`Simulator.advance` applies every scripted step
that is due, at the time it was due, so a request handler calls it first and sees the same
history whatever the polling rhythm; it also brings the counters of RUNNING batch jobs up to
date. The clock is injectable, so tests pass a fake one.

One module per part: :mod:`.timeline` (clock, schedule, log), :mod:`.fine_tuning_engine`,
:mod:`.batch_engine`, :mod:`.faults` (request counters and faults); :class:`Simulator`
joins them.
"""

from __future__ import annotations

import math
import time

from watcher.devtools.simulator.batch import BatchSpec
from watcher.devtools.simulator.batch_engine import BatchEngine
from watcher.devtools.simulator.faults import (
    FAULT_MODES,
    FAULT_ROUTES,
    Fault,
    FaultRoute,
    Route,
    Traffic,
)
from watcher.devtools.simulator.fine_tuning_engine import (
    CHECKPOINT_INTERVAL,
    START_RUNNING_AFTER,
    FineTuningEngine,
)
from watcher.devtools.simulator.timeline import (
    CANCEL_DELAY,
    HISTORY_GAP,
    BatchJobNotFound,
    Clock,
    Conflict,
    Due,
    JobNotFound,
)

__all__ = [
    "CANCEL_DELAY",
    "CHECKPOINT_INTERVAL",
    "FAULT_MODES",
    "FAULT_ROUTES",
    "HISTORY_GAP",
    "START_RUNNING_AFTER",
    "BatchJobNotFound",
    "Clock",
    "Conflict",
    "Fault",
    "FaultRoute",
    "JobNotFound",
    "Route",
    "Simulator",
]


class Simulator(FineTuningEngine, BatchEngine, Traffic):
    """All simulated jobs and everything the admin API can observe or change."""

    def __init__(
        self, *, clock: Clock = time.time, speed: float = 1.0, seed: int | None = None
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self._start_timeline(clock, speed, seed)
        self._start_fine_tuning()
        self._start_batches()
        self._start_traffic(seed)

    def advance(self, now: float | None = None) -> int:
        """Apply every scripted step due by ``now``, in time order; returns how many.

        Then the counters of RUNNING batch jobs are brought up to ``now``.
        """
        now = self.clock() if now is None else now
        applied = sum(self._step(due, at) for at, due in self._due_by(now))
        self._move_counters(now)
        return applied

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

    def _step(self, due: Due, at: float) -> bool:
        """Apply one scheduled step: a creation, or a job's next status or checkpoint."""
        if isinstance(due.spec, BatchSpec):
            self.create_batch(due.spec, at=at)
            return True
        if due.spec is not None:
            self.create(due.spec, at=at)
            return True
        return self._step_batch(due, at) if due.batch else self._step_job(due, at)
