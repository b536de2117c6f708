"""The Workflows half of the simulator: executions created from specs, moved by their
scripts, by ``/cancel`` and ``/terminate`` or by the admin API, and the events they emit.

Every action is effective at once and emits what the worker SDK would (reference §6,
§7.6): no event for TERMINATED and TIMED_OUT; a workflow-level retry emits
WORKFLOW_EXECUTION_FAILED, then a new run (attempt + 1) starts under the same
``execution_id``; continue-as-new ends the run as CONTINUED_AS_NEW and starts a new one.
When an execution ends, its running children are terminated (Temporal's default parent
close policy). Broker sequences count from 1 and are never reused, even after
:meth:`WorkflowEngine.clear_workflows`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Collection

from watcher.devtools.simulator.timeline import Conflict, Due, JobNotFound, Timeline, log_entry
from watcher.devtools.simulator.workflows import (
    ACTIVITY_FAILURE,
    WORKFLOW_FAILURE,
    SimExecution,
    SimRun,
    WorkflowEvent,
    WorkflowSpec,
    WorkflowStep,
    draw_id,
    envelope,
    payload,
)
from watcher.devtools.simulator.workflows_streams import StreamFilter, WorkflowStreams
from watcher.model.statuses import WORKFLOW_TERMINAL

DEFAULT_RESULT = {"output": "simulated"}


class ExecutionNotFound(JobNotFound):
    """No workflow execution (or run) has this id."""


class NotRunning(Conflict):
    """The execution is not running, so it cannot be acted on."""

    def __init__(self, execution_id: str, status: str) -> None:
        super().__init__(f"Execution {execution_id} is {status}, not running.")
        self.status = status


class WorkflowEngine(WorkflowStreams, Timeline):
    """Executions by id and by scenario name, their runs, and the emitted events."""

    executions: dict[str, SimExecution]
    workflow_names: dict[str, str]
    workflow_events: list[WorkflowEvent]
    _runs: dict[str, tuple[SimExecution, SimRun]]
    _members: dict[str, list[str]]  # root or parent id -> ids under it (a root lists itself)
    _workflow_ids: dict[str, str]  # workflow_name -> its drawn workflow_id
    _broker_seq: int
    _wf_rng: random.Random
    _workflow_used: bool  # shows the workflow request counters in stats() (see .faults)

    def _start_workflows(self, seed: int | None) -> None:
        self._broker_seq = 0
        # Apart from the jobs' randomness: adding workflows leaves job ids alone.
        self._wf_rng = random.Random(None if seed is None else f"workflows-{seed}")
        self.clear_workflows()
        self._start_streams()

    def clear_workflows(self) -> None:
        """Forget every execution and event (broker sequences go on from where they are)."""
        self.executions = {}
        self.workflow_names = {}
        self.workflow_events = []
        self._runs = {}
        self._members = {}
        self._workflow_ids = {}

    def create_execution(self, spec: WorkflowSpec, *, at: float | None = None) -> SimExecution:
        """Start one execution now (or at ``at``): RUNNING, WORKFLOW_EXECUTION_STARTED, and
        its script scheduled from then."""
        at = self.clock() if at is None else at
        execution_id = spec.execution_id or draw_id(self._wf_rng)
        if execution_id in self.executions:
            raise Conflict(f"execution_id: {execution_id!r} already exists")
        parent = None
        if spec.parent is not None:
            parent_id = self.workflow_names.get(spec.parent, spec.parent)
            if parent_id not in self.executions:
                raise ValueError(f"parent: no execution {spec.parent!r}")
            parent = self.executions[parent_id]
        workflow_id = self._workflow_ids.setdefault(spec.workflow_name, draw_id(self._wf_rng))
        execution = SimExecution(
            execution_id=execution_id,
            name=spec.name,
            workflow_name=spec.workflow_name,
            workflow_id=workflow_id,
            deployment_name=spec.deployment_name,
            parent_execution_id=None if parent is None else parent.execution_id,
            root_execution_id=execution_id if parent is None else parent.root_execution_id,
            user_id=spec.user_id,
            input=dict(spec.input) if spec.input is not None else {},
            runs=[],
        )
        self.executions[execution_id] = execution
        if spec.name is not None:
            self.workflow_names[spec.name] = execution_id
        self._members.setdefault(execution.root_execution_id, []).append(execution_id)
        if parent is not None and parent.root_execution_id != parent.execution_id:
            self._members.setdefault(parent.execution_id, []).append(execution_id)
        self._workflow_used = True
        self._new_run(execution, at, attempt=1)
        for step in spec.steps:
            self._push(at + step.after / self.speed, Due(execution_id, 0, action=step))
        return execution

    def get_execution(self, execution_id: str) -> SimExecution:
        """The execution with this id, or :class:`ExecutionNotFound`."""
        try:
            return self.executions[execution_id]
        except KeyError:
            raise ExecutionNotFound(execution_id) from None

    def get_run(self, run_id: str) -> tuple[SimExecution, SimRun]:
        """The execution and run with this ``run_id``, or :class:`ExecutionNotFound`."""
        try:
            return self._runs[run_id]
        except KeyError:
            raise ExecutionNotFound(run_id) from None

    def list_executions(
        self,
        *,
        workflow_identifier: str | None = None,
        root_execution_id: str | None = None,
        statuses: Collection[str] | None = None,
        deployment_name: str | None = None,
        user_id: str | None = None,
        start_after: float | None = None,
        start_before: float | None = None,
        end_after: float | None = None,
        end_before: float | None = None,
    ) -> list[SimExecution]:
        """Executions (as their latest run) that match every filter given; time bounds are
        inclusive, and an end-time bound leaves running executions out."""
        if root_execution_id is not None:
            pool = [self.executions[i] for i in self._members.get(root_execution_id, ())]
            pool = [e for e in pool if e.root_execution_id == root_execution_id]
        else:
            pool = list(self.executions.values())

        def keep(e: SimExecution) -> bool:
            run = e.run
            end = run.end
            return (
                (workflow_identifier in (None, e.workflow_name, e.workflow_id))
                and (not statuses or run.status in statuses)
                and (deployment_name is None or e.deployment_name == deployment_name)
                and (user_id is None or e.user_id == user_id)
                and (start_after is None or run.start >= start_after)
                and (start_before is None or run.start <= start_before)
                and (end_after is None or (end is not None and end >= end_after))
                and (end_before is None or (end is not None and end <= end_before))
            )

        return [e for e in pool if keep(e)]

    def act(
        self, execution_id: str, step: WorkflowStep, *, at: float | None = None
    ) -> SimExecution:
        """Apply ``step`` now (its ``after`` is ignored); :class:`NotRunning` unless RUNNING."""
        execution = self.get_execution(execution_id)
        if execution.status != "RUNNING":
            raise NotRunning(execution_id, execution.status)
        self._act_on(execution, step, self.clock() if at is None else at)
        return execution

    def cancel_execution(self, execution_id: str) -> SimExecution:
        """``POST …/cancel``: CANCELED at once, with its event."""
        return self.act(execution_id, WorkflowStep(action="cancel"))

    def terminate_execution(self, execution_id: str) -> SimExecution:
        """``POST …/terminate``: TERMINATED at once, no event."""
        return self.act(execution_id, WorkflowStep(action="terminate"))

    def events_from(
        self, start_seq: int, keep: Callable[[WorkflowEvent], bool], limit: int | None = None
    ) -> list[WorkflowEvent]:
        """Events with a broker sequence of at least ``start_seq`` that ``keep`` accepts, in
        order, at most ``limit`` of them."""
        found: list[WorkflowEvent] = []
        index = bisect.bisect_left(self.workflow_events, start_seq, key=lambda e: e.seq)
        for event in self.workflow_events[index:]:
            if keep(event):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def tree_done(self, flt: StreamFilter) -> bool:
        """True once every execution the filter names and every one it matches has ended
        (CONTINUED_AS_NEW hands over, so it does not end anything)."""
        named = [
            i
            for i in (flt.workflow_exec_id, flt.root_workflow_exec_id, flt.parent_workflow_exec_id)
            if i is not None
        ]
        if not named:
            return False
        for execution_id in named:
            execution = self.executions.get(execution_id)
            if execution is None or execution.status not in WORKFLOW_TERMINAL:
                return False
        under = self._members.get(flt.root_workflow_exec_id or flt.parent_workflow_exec_id or "")
        for execution_id in under or ():
            execution = self.executions[execution_id]
            if (
                flt.parent_workflow_exec_id in (None, execution.parent_execution_id)
                and execution.status not in WORKFLOW_TERMINAL
            ):
                return False
        return True

    def _step_workflow(self, due: Due, at: float) -> bool:
        """Apply one scripted action; False when the execution is gone or not running."""
        execution = self.executions.get(due.job_id or "")
        if execution is None or due.action is None or execution.status != "RUNNING":
            return False
        self._act_on(execution, due.action, at)
        return True

    def _act_on(self, execution: SimExecution, step: WorkflowStep, at: float) -> None:
        run = execution.run
        match step.action:
            case action if action.startswith("activity_"):
                self._activity(execution, step, at)
            case "fail":
                failure = {"message": step.message or WORKFLOW_FAILURE}
                self._workflow_event(
                    execution, at, "WORKFLOW_EXECUTION_FAILED", failure=failure, attempt=run.attempt
                )
                self._end(execution, "FAILED", at, final=not step.retry)
                if step.retry:
                    self._new_run(execution, at, attempt=run.attempt + 1)
            case "complete":
                execution.result = DEFAULT_RESULT if step.result is None else step.result
                self._workflow_event(
                    execution,
                    at,
                    "WORKFLOW_EXECUTION_COMPLETED",
                    result=payload(execution.result),
                    attempt=run.attempt,
                )
                self._end(execution, "COMPLETED", at)
            case "cancel":
                canceled = "WORKFLOW_EXECUTION_CANCELED"
                self._workflow_event(
                    execution, at, canceled, reason=step.reason, attempt=run.attempt
                )
                self._end(execution, "CANCELED", at)
            case "terminate":
                self._end(execution, "TERMINATED", at)
            case "time_out":
                self._end(execution, "TIMED_OUT", at)
            case _:  # continue_as_new
                if step.input is not None:
                    execution.input = step.input
                new_run_id = draw_id(self._wf_rng)
                self._workflow_event(
                    execution,
                    at,
                    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
                    new_execution_run_id=new_run_id,
                    workflow_name=execution.workflow_name,
                    input=payload(execution.input),
                )
                self._end(execution, "CONTINUED_AS_NEW", at)
                self._new_run(execution, at, attempt=1, run_id=new_run_id, continued=run.run_id)

    def _activity(self, execution: SimExecution, step: WorkflowStep, at: float) -> None:
        """An activity's events: STARTED once (on its first attempt), then the step's own."""
        name = step.activity
        task_id, failures = execution.activities.get(name, ("", 0))
        if not task_id:
            task_id = execution.next_task_id()
            execution.activities[name] = (task_id, 0)
            started = payload(step.input if step.input is not None else {})
            self._emit(
                execution,
                at,
                "ACTIVITY_TASK_STARTED",
                {"task_id": task_id, "activity_name": name, "input": started},
            )
        ids = {"task_id": task_id, "activity_name": name}
        failure = {"message": step.message or ACTIVITY_FAILURE}
        match step.action:
            case "activity_retrying":
                execution.activities[name] = (task_id, failures + 1)
                attributes = {**ids, "attempt": failures + 1, "failure": failure}
                self._emit(execution, at, "ACTIVITY_TASK_RETRYING", attributes)
            case "activity_completed":
                del execution.activities[name]
                result = payload(DEFAULT_RESULT if step.result is None else step.result)
                self._emit(execution, at, "ACTIVITY_TASK_COMPLETED", {**ids, "result": result})
            case "activity_failed":
                del execution.activities[name]
                attributes = {**ids, "attempt": failures + 1, "failure": failure}
                self._emit(execution, at, "ACTIVITY_TASK_FAILED", attributes)

    def _new_run(
        self,
        execution: SimExecution,
        at: float,
        *,
        attempt: int,
        run_id: str | None = None,
        continued: str | None = None,
    ) -> None:
        """Start a run: RUNNING, logged, and its WORKFLOW_EXECUTION_STARTED."""
        previous = execution.runs[-1].status if execution.runs else None
        run = SimRun(
            run_id=run_id or draw_id(self._wf_rng),
            attempt=attempt,
            start=at,
            continued_run_id=continued,
        )
        execution.runs.append(run)
        execution.activities.clear()
        execution.result = None
        self._runs[run.run_id] = (execution, run)
        self._log(execution, previous, at)
        self._workflow_event(
            execution,
            at,
            "WORKFLOW_EXECUTION_STARTED",
            workflow_name=execution.workflow_name,
            display_name=None,
            input=payload(execution.input),
            attempt=attempt,
        )

    def _end(self, execution: SimExecution, status: str, at: float, *, final: bool = True) -> None:
        """End the latest run in ``status``; a final end terminates the running children."""
        run = execution.run
        previous = run.status
        run.status = status
        run.end = at
        self._log(execution, previous, at)
        if final and status in WORKFLOW_TERMINAL:
            for child in self.executions.values():
                parent = child.parent_execution_id
                if parent == execution.execution_id and child.status == "RUNNING":
                    self._end(child, "TERMINATED", at)
        self._notify()

    def _log(self, execution: SimExecution, previous: str | None, at: float) -> None:
        run = execution.run
        entry = log_entry("workflow", execution.execution_id, previous, run.status, at)
        self.log.append({**entry, "run_id": run.run_id})

    def _workflow_event(
        self, execution: SimExecution, at: float, event_type: str, **attributes: object
    ) -> None:
        self._emit(execution, at, event_type, {"task_id": execution.next_task_id(), **attributes})

    def _emit(
        self, execution: SimExecution, at: float, event_type: str, attributes: dict[str, object]
    ) -> None:
        self._broker_seq += 1
        run = execution.run
        data = envelope(
            execution,
            run,
            event_id=draw_id(self._wf_rng),
            at=at,
            event_type=event_type,
            attributes=attributes,
        )
        event = WorkflowEvent(
            seq=self._broker_seq,
            at=at,
            execution_id=execution.execution_id,
            root_execution_id=execution.root_execution_id,
            parent_execution_id=execution.parent_execution_id,
            workflow_name=execution.workflow_name,
            run_id=run.run_id,
            event_type=event_type,
            data=data,
        )
        self.workflow_events.append(event)
        self._notify()
