"""Sample transitions of the Workflows family (``watcher render --sample``, the events
schema's examples, user templates' checks): one per kind of news an execution gives."""

from __future__ import annotations

from typing import Any

from watcher.model.transitions import Transition

SOURCE = "wf"
EXECUTION_ID = "019b2bd7-96e7-7219-8c0b-45a73da50088"
ROOT_ID = "019b2bd7-1c40-7e21-a3f0-9d2e5b7c8a11"
PARENT_ID = "019b2bd7-5a10-7c33-b6d2-0e4f1a2b3c44"
RUN_ID = "7d0c2b8e-0b7e-4b8e-9a59-2b1f0c9d3e44"
NEW_RUN_ID = "0c5e8f21-3b6a-4d7e-8f90-1a2b3c4d5e6f"
_FAILURE = {"message": "KeyError: 'customer'"}

JOB: dict[str, Any] = {
    "id": EXECUTION_ID,
    "status": "FAILED",
    "run_id": RUN_ID,
    "workflow_name": "support-workflow",
    "deployment_name": "prod",
    "start_time": "2026-08-01T10:25:07.818693Z",
    "end_time": "2026-08-01T10:26:10.001Z",
    "parent_execution_id": PARENT_ID,
    "root_execution_id": ROOT_ID,
    "attempt": 2,
    "total_duration_ms": 62183,
    "user_id": "u_123",
    "created_at": 1785579907,
    "modified_at": 1785579970,
    "metadata": {"expected_duration_seconds": 600},
}


def _sample(
    name: str,
    type_: str,
    previous: str | None = None,
    status: str | None = None,
    job: dict[str, Any] | None = None,
    /,
    **details: Any,
) -> Transition:
    return Transition(
        id=f"wt_sample_{name}",
        type=type_,
        source=SOURCE,
        job_id=EXECUTION_ID,
        status=status,
        previous_status=previous,
        occurred_at=1785579970,
        job={**JOB, **(job or {})},
        details=details,
    )


_RUNNING: dict[str, Any] = {"status": "RUNNING", "end_time": None, "total_duration_ms": None}
_ACTIVITY = {"name": "charge_card", "attempt": 3, "failure": _FAILURE, "task_id": "t7"}

SAMPLES: dict[str, Transition] = {
    "workflow_running": _sample(
        "workflow_running", "workflow.execution.running", None, "RUNNING",
        {**_RUNNING, "attempt": 1},
    ),
    "workflow_failed": _sample(
        "workflow_failed", "workflow.execution.failed", "RUNNING", "FAILED",
        failure=_FAILURE, attempt=2,
    ),
    "workflow_completed": _sample(
        "workflow_completed", "workflow.execution.completed", "RUNNING", "COMPLETED",
        {"status": "COMPLETED", "parent_execution_id": None, "root_execution_id": EXECUTION_ID},
    ),
    "workflow_timed_out": _sample(
        "workflow_timed_out", "workflow.execution.timed_out", "RUNNING", "TIMED_OUT",
        {"status": "TIMED_OUT", "attempt": None},
    ),
    "workflow_retrying": _sample(
        "workflow_retrying", "workflow.execution.retrying", None, None, _RUNNING,
        attempt=1, failure=_FAILURE, run_id=RUN_ID,
    ),
    "continued_as_new": _sample(
        "continued_as_new", "workflow.execution.continued_as_new", None, None, _RUNNING,
        status="CONTINUED_AS_NEW", previous_status="RUNNING", run_id=RUN_ID,
        new_run_id=NEW_RUN_ID,
    ),
    "activity_retrying": _sample(
        "activity_retrying", "workflow.activity.retrying", None, None, _RUNNING,
        activity={**_ACTIVITY, "attempt": 2}, run_id=RUN_ID,
    ),
    "activity_failed": _sample(
        "activity_failed", "workflow.activity.failed", None, None, _RUNNING,
        activity=_ACTIVITY, run_id=RUN_ID,
    ),
    "retry_storm": _sample(
        "retry_storm", "workflow.execution.retry_storm", None, None, _RUNNING,
        activity={"name": "charge_card", "retries": 12, "within_seconds": 300},
        rule="retry_storm",
    ),
}  # fmt: skip
