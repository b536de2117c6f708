"""Simulated Workflows executions: what to create (:class:`WorkflowSpec` and its script of
:class:`WorkflowStep`), their state (:class:`SimExecution` and its :class:`SimRun`), the
events they emit (:class:`WorkflowEvent`) and the JSON the real ``/v1/workflows`` API sends
for them (workflows reference §3, §7.4 to §7.6).

An execution keeps its ``execution_id`` for life; each run (the first one, a workflow-level
retry, a continue-as-new) gets a new ``run_id``. The API shows an execution as its latest run.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from watcher.model.statuses import WORKFLOW_STATUSES as WORKFLOW_STATUSES  # the API's (§6)

# What a script step (or the admin API) can make an execution do.
ACTIONS = (
    "activity_started",  # ACTIVITY_TASK_STARTED (first attempt only)
    "activity_retrying",  # ACTIVITY_TASK_RETRYING: one more failed attempt
    "activity_completed",  # ACTIVITY_TASK_COMPLETED
    "activity_failed",  # ACTIVITY_TASK_FAILED: the final attempt failed
    "fail",  # WORKFLOW_EXECUTION_FAILED; with ``retry`` a new run (attempt + 1) follows
    "complete",  # WORKFLOW_EXECUTION_COMPLETED
    "cancel",  # WORKFLOW_EXECUTION_CANCELED
    "terminate",  # TERMINATED, no event
    "time_out",  # TIMED_OUT, no event
    "continue_as_new",  # WORKFLOW_EXECUTION_CONTINUED_AS_NEW, then a new run
)
STEP_PARAMS = frozenset({"activity", "message", "result", "reason", "retry", "input"})

DEFAULT_WORKFLOW = "sim-workflow"
DEFAULT_DEPLOYMENT = "sim-deployment"
DEFAULT_ACTIVITY = "sim_activity"
DEFAULT_USER = "sim-user"
NAMESPACE = "sim-namespace"  # workflow_context.namespace
STREAM = "__workflow__"  # the topic of lifecycle events (undocumented, reference §7.7)
ACTIVITY_FAILURE = "Activity failed (simulated)"
WORKFLOW_FAILURE = "Workflow failed (simulated)"

# The event types whose ``scope`` is ``activity`` (the stream's ``scope`` filter).
ACTIVITY_EVENTS = frozenset(
    {"ACTIVITY_TASK_STARTED", "ACTIVITY_TASK_RETRYING", "ACTIVITY_TASK_COMPLETED"}
    | {"ACTIVITY_TASK_FAILED"}
)


@dataclass(frozen=True, kw_only=True)
class WorkflowStep:
    """One scripted action, ``after`` seconds after the execution's creation.

    ``activity`` names the activity of the ``activity_*`` actions; ``message`` is the
    failure message of ``activity_retrying``, ``activity_failed`` and ``fail``; ``retry``
    makes a ``fail`` a workflow-level retry; ``result`` is what ``complete`` and
    ``activity_completed`` return; ``reason`` goes with ``cancel``; ``input`` is the new
    run's input on ``continue_as_new``.
    """

    action: str
    after: float = 0.0
    activity: str = DEFAULT_ACTIVITY
    message: str | None = None
    result: Any = field(default=None, hash=False)
    reason: str | None = None
    retry: bool = False
    input: Any = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action: must be one of {', '.join(ACTIONS)}")


@dataclass(frozen=True, kw_only=True)
class WorkflowSpec:
    """What to create: one execution (RUNNING from its creation) and its script.

    ``parent`` names the parent execution: a scenario name or an ``execution_id``; the
    child's root is the parent's root. ``execution_id`` None draws one. Step times are
    divided by the simulator's speed; ``create_after`` only matters for scheduled
    (scenario) executions.
    """

    name: str | None = None
    workflow_name: str = DEFAULT_WORKFLOW
    deployment_name: str | None = DEFAULT_DEPLOYMENT
    execution_id: str | None = None
    parent: str | None = None
    user_id: str | None = DEFAULT_USER
    input: Mapping[str, Any] | None = field(default=None, hash=False)
    create_after: float = 0.0
    steps: tuple[WorkflowStep, ...] = ()


@dataclass(eq=False, kw_only=True)
class SimRun:
    """One run of an execution."""

    run_id: str
    attempt: int
    start: float
    status: str = "RUNNING"
    end: float | None = None
    continued_run_id: str | None = None  # the run this one continued (continue-as-new)


@dataclass(eq=False, kw_only=True)
class SimExecution:
    """The state of one simulated execution; rendered by :func:`execution_json`."""

    execution_id: str
    name: str | None
    workflow_name: str
    workflow_id: str
    deployment_name: str | None
    parent_execution_id: str | None
    root_execution_id: str
    user_id: str | None
    input: Any
    runs: list[SimRun]
    result: Any = None
    task_seq: int = 0  # task ids handed out
    # Activities under way by name: (task id, failed attempts so far).
    activities: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def run(self) -> SimRun:
        """The latest run, which the API shows and the actions act on."""
        return self.runs[-1]

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def first_run_id(self) -> str:
        return self.runs[0].run_id

    def next_task_id(self) -> str:
        self.task_seq += 1
        return str(self.task_seq)


@dataclass(frozen=True)
class WorkflowEvent:
    """One emitted event: its broker sequence, whom it concerns and its envelope (§7.5)."""

    seq: int
    at: float
    execution_id: str
    root_execution_id: str
    parent_execution_id: str | None
    workflow_name: str
    run_id: str
    event_type: str
    data: dict[str, Any] = field(hash=False)

    @property
    def scope(self) -> str:
        return "activity" if self.event_type in ACTIVITY_EVENTS else "workflow"

    def payload(self) -> dict[str, Any]:
        """The ``StreamEventSsePayload`` of one SSE frame (§7.4)."""
        return {
            "stream": STREAM,
            "timestamp": iso(self.at),
            "broker_sequence": self.seq,
            "metadata": {},
            "workflow_context": {
                "namespace": NAMESPACE,
                "workflow_name": self.workflow_name,
                "workflow_exec_id": self.execution_id,
                "parent_workflow_exec_id": self.parent_execution_id,
                "root_workflow_exec_id": self.root_execution_id,
            },
            "data": self.data,
        }


def iso(at: float) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``, as the API writes times."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def draw_id(rng: random.Random) -> str:
    """A UUID drawn from ``rng`` (seeded simulators draw the same ones)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def execution_json(
    execution: SimExecution, run: SimRun | None = None, *, with_result: bool
) -> dict[str, Any]:
    """``WorkflowExecutionWithoutResultResponse`` (list items) or, ``with_result``,
    ``WorkflowExecutionResponse`` (§3): the execution as its latest run, or as ``run``."""
    run = execution.run if run is None else run
    duration = None if run.end is None else round((run.end - run.start) * 1000)
    shown: dict[str, Any] = {
        "workflow_name": execution.workflow_name,
        "workflow_id": execution.workflow_id,
        "deployment_name": execution.deployment_name,
        "execution_id": execution.execution_id,
        "parent_execution_id": execution.parent_execution_id,
        "root_execution_id": execution.root_execution_id,
        "run_id": run.run_id,
        "user_id": execution.user_id,
        "status": run.status,
        "start_time": iso(run.start),
        "end_time": None if run.end is None else iso(run.end),
        "total_duration_ms": duration,
    }
    if with_result:
        shown["result"] = execution.result if run.status == "COMPLETED" else None
    return shown


def admin_json(execution: SimExecution) -> dict[str, Any]:
    """What the admin API shows: the detail, the scenario name and every run."""
    return {
        **execution_json(execution, with_result=True),
        "name": execution.name,
        "runs": [
            {
                "run_id": run.run_id,
                "attempt": run.attempt,
                "status": run.status,
                "start_time": iso(run.start),
                "end_time": None if run.end is None else iso(run.end),
                "continued_run_id": run.continued_run_id,
            }
            for run in execution.runs
        ],
    }


def payload(value: Any) -> dict[str, Any]:
    """A ``JSONPayloadResponse`` (§7.6)."""
    return {"type": "json", "value": value, "encoding_options": None}


def envelope(
    execution: SimExecution,
    run: SimRun,
    *,
    event_id: str,
    at: float,
    event_type: str,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    """The event envelope every event schema shares (§7.5), around ``attributes``."""
    return {
        "event_id": event_id,
        "event_timestamp": round(at * 1_000_000) * 1000,
        "root_workflow_exec_id": execution.root_execution_id,
        "parent_workflow_exec_id": execution.parent_execution_id,
        "continued_run_id": run.continued_run_id,
        "first_execution_run_id": execution.first_run_id,
        "schedule_id": None,
        "workflow_exec_id": execution.execution_id,
        "workflow_run_id": run.run_id,
        "workflow_name": execution.workflow_name,
        "event_type": event_type,
        "attributes": attributes,
    }
