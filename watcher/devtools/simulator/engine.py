"""The simulator's state: fine-tuning and batch jobs, workflow executions, their scripted
lifecycles, request counters, faults.

Nothing here runs in the background: :meth:`Simulator.advance` applies every scripted step
that is due, at the time it was due, so a request handler calls it first and sees the same
history whatever the polling rhythm; it also brings the counters of RUNNING batch jobs up to
date. The clock is injectable, so tests pass a fake one.

One module per part: :mod:`.timeline` (clock, schedule, log), :mod:`.fine_tuning_engine`,
:mod:`.batch_engine`, :mod:`.workflows_engine` (with :mod:`.workflows_streams`), :mod:`.faults`
(request counters and faults); :class:`Simulator` joins them.
"""

from __future__ import annotations

import math
import time
from typing import Any

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
from watcher.devtools.simulator.workflows import WorkflowSpec
from watcher.devtools.simulator.workflows_engine import (
    ExecutionNotFound,
    NotRunning,
    WorkflowEngine,
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
    "ExecutionNotFound",
    "Fault",
    "FaultRoute",
    "JobNotFound",
    "NotRunning",
    "Route",
    "Simulator",
]


class Simulator(FineTuningEngine, BatchEngine, WorkflowEngine, Traffic):
    """All simulated jobs and everything the admin API can observe or change."""

    def __init__(
        self, *, clock: Clock = time.time, speed: float = 1.0, seed: int | None = None
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self._start_timeline(clock, speed, seed)
        self._start_fine_tuning()
        self._start_batches()
        self._start_workflows(seed)
        self._start_traffic(seed)

    def advance(self, now: float | None = None) -> int:
        """Apply every scripted step due by ``now``, in time order; returns how many.

        Then the counters of RUNNING batch jobs are brought up to ``now``.
        """
        now = self.clock() if now is None else now
        applied = sum(self._step(due, at) for at, due in self._due_by(now))
        self._move_counters(now)
        return applied

    def stats(self) -> dict[str, Any]:
        """The request counters; with ``workflow_streams`` once the Workflows API is in use."""
        shown = super().stats()
        if self._workflow_used:
            shown["workflow_streams"] = self.stream_stats(connections=False)
        return shown

    def reset_stats(self) -> None:
        """Zero the request and the stream counters."""
        super().reset_stats()
        self.reset_stream_stats()

    def clear(self) -> None:
        """Forget every job (batch jobs and workflow executions too), scheduled step and log
        entry (faults and counters stay)."""
        self.jobs.clear()
        self._ordered = None
        self.names.clear()
        self.batch_jobs.clear()
        self.batch_names.clear()
        self._progressing.clear()
        self.clear_workflows()
        self.log.clear()
        self._queue.clear()

    def _step(self, due: Due, at: float) -> bool:
        """Apply one scheduled step: a creation, or a job's next status or checkpoint."""
        if isinstance(due.spec, BatchSpec):
            self.create_batch(due.spec, at=at)
            return True
        if isinstance(due.spec, WorkflowSpec):
            self.create_execution(due.spec, at=at)
            return True
        if due.action is not None:
            return self._step_workflow(due, at)
        if due.spec is not None:
            self.create(due.spec, at=at)
            return True
        return self._step_batch(due, at) if due.batch else self._step_job(due, at)
