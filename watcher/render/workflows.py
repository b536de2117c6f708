"""What a Workflows transition says, read once for every sink: the execution and its
workflow, the run, the attempt, how long it took, why it failed, where it sits in a tree of
sub-workflows, the activity a fact is about, and its tone (failure, warning, …).

Every value comes from a foreign API: the view keeps raw values, and :func:`rows` gives them
as one clean, capped line each (:func:`watcher.render.text.clean`); a sink still escapes
each for its own medium (Slack mrkdwn, HTML). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from watcher.model import types
from watcher.model.statuses import CANCELLED, FAILED, SUCCEEDED
from watcher.model.transitions import Transition
from watcher.render.text import clean, duration, finite

EXECUTION = types.WORKFLOW_EXECUTION + "."
ACTIVITY = types.WORKFLOW_ACTIVITY + "."
CONTINUED_AS_NEW = "continued_as_new"
MAX_FAILURE = 500  # characters of a failure message shown in a message's body
MAX_ID = 120

Tone = Literal["failure", "warning", "success", "cancelled", "resolved", "info"]


def is_workflow(transition: Transition) -> bool:
    """Whether the transition is about a Workflows execution (or one of its activities)."""
    return transition.type.startswith((EXECUTION, ACTIVITY))


def _text(value: Any) -> str | None:
    """A scalar as a string, ``None`` for nothing (``""``, ``null``, a mapping or a list)."""
    if value is None or isinstance(value, Mapping | list | tuple) or value == "":
        return None
    return str(value)


def _int(value: Any) -> int | None:
    number = finite(value)
    return int(number) if number is not None and number == int(number) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _instant(value: Any) -> float | None:
    """Unix seconds of an ISO 8601 string as the API sends it (``…Z``), else ``None``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class WorkflowView:
    """The raw facts of one Workflows transition (``None`` when not known)."""

    kind: str  # what follows the prefix: failed, retrying, activity.failed, retry_storm, …
    activity_fact: bool  # a ``workflow.activity.*`` fact
    status_change: bool  # ``workflow.execution.<status>`` (not a fact carrying a status)
    status: str | None  # the status entered (continued_as_new: from the details)
    previous_status: str | None
    workflow: str | None
    deployment: str | None
    execution_id: str | None
    run_id: str | None
    new_run_id: str | None
    attempt: int | None
    seconds: float | None  # how long the execution took (or has run, when ``so_far``)
    so_far: bool
    failure: str | None
    parent: str | None
    root: str | None
    activity: str | None
    activity_attempt: int | None
    retries: int | None
    within_seconds: float | None
    rule: str | None

    @property
    def is_child(self) -> bool:
        return self.parent is not None


def read(transition: Transition, at: float | None = None) -> WorkflowView | None:
    """The view of ``transition``, or ``None`` when it is not a Workflows transition.

    ``at`` (when it was detected) bounds the "so far" duration of an execution without an
    end; the transition's own ``occurred_at`` is preferred."""
    if not is_workflow(transition):
        return None
    kind_full = transition.type
    activity_fact = kind_full.startswith(ACTIVITY)
    kind = kind_full.removeprefix(ACTIVITY if activity_fact else EXECUTION)
    job = _mapping(transition.job)
    details = _mapping(transition.details)
    activity = _mapping(details.get("activity"))
    status = transition.status or _text(details.get("status"))
    previous = transition.previous_status or _text(details.get("previous_status"))
    failure = _mapping(details.get("failure")).get("message")
    if failure is None:
        failure = _mapping(activity.get("failure")).get("message")
    attempt = _int(details.get("attempt"))
    if attempt is None:
        attempt = _int(job.get("attempt"))
    execution_id = _text(transition.job_id) or _text(job.get("id"))
    parent = _text(job.get("parent_execution_id"))
    root = _text(job.get("root_execution_id"))
    seconds, so_far = _seconds(
        job, transition.occurred_at if transition.occurred_at is not None else at
    )
    return WorkflowView(
        kind=("activity." if activity_fact else "") + kind,
        activity_fact=activity_fact,
        status_change=transition.status is not None,
        status=status,
        previous_status=previous,
        workflow=_text(job.get("workflow_name")),
        deployment=_text(job.get("deployment_name")),
        execution_id=execution_id,
        run_id=_text(details.get("run_id")) or _text(job.get("run_id")),
        new_run_id=_text(details.get("new_run_id")),
        attempt=attempt,
        seconds=seconds,
        so_far=so_far,
        failure=_text(failure),
        parent=parent if parent != execution_id else None,
        root=root if root not in (None, execution_id) else None,
        activity=_text(activity.get("name")),
        activity_attempt=_int(activity.get("attempt")),
        retries=_int(activity.get("retries")),
        within_seconds=finite(activity.get("within_seconds")),
        rule=_text(details.get("rule")) or _text(_mapping(details.get("alert")).get("rule")),
    )


def _seconds(job: Mapping[str, Any], now: float | None) -> tuple[float | None, bool]:
    """The execution's duration: ``total_duration_ms``, else end - start; without an end,
    how long it has run until ``now`` (``so_far``)."""
    total = finite(job.get("total_duration_ms"))
    if total is not None and total >= 0:
        return total / 1000, False
    start = _instant(job.get("start_time"))
    if start is None:
        return None, False
    end = _instant(job.get("end_time"))
    if end is not None:
        return (end - start, False) if end >= start else (None, False)
    if now is not None and now >= start:
        return now - start, True
    return None, False


def is_time_alert(view: WorkflowView) -> bool:
    """A stalled or overrun alert (or its end), rendered as the other families' are."""
    return view.kind.split(".", 1)[0] in types.TIME_ALERTS


def tone(view: WorkflowView) -> Tone:
    """Failure (failed, timed out, terminated, a retry storm, an activity failed for good),
    warning (a retry, a stall or an overrun), success, cancelled, resolved or info."""
    kind = view.kind
    if kind.endswith("." + types.RESOLVED):
        return "resolved"
    if kind in (types.RETRY_STORM, f"activity.{types.ACTIVITY_FAILED}"):
        return "failure"
    if kind.endswith(types.RETRYING) or kind in types.TIME_ALERTS:
        return "warning"
    status = (view.status or "").upper() if view.status_change else ""
    if status in FAILED:
        return "failure"
    if status in SUCCEEDED:
        return "success"
    if status in CANCELLED:
        return "cancelled"
    return "info"


def what(view: WorkflowView) -> str:
    """What happened, in a few words: ``FAILED``, ``retrying (attempt 2 failed)``,
    ``activity charge_card failed``, ``retry storm``, ``continued as new``, ``stalled``."""
    kind = view.kind
    if kind == CONTINUED_AS_NEW:
        return "continued as new"
    if kind == types.RETRYING:
        return "retrying" + (f" (attempt {view.attempt} failed)" if view.attempt else "")
    if view.activity_fact:
        name = clean(view.activity, 60) if view.activity else "an activity"
        verb = kind.removeprefix("activity.").replace("_", " ")
        attempt = f" (attempt {view.activity_attempt})" if view.activity_attempt else ""
        return f"activity {name} {verb}{attempt}"
    if kind == types.RETRY_STORM:
        return "retry storm"
    if view.status_change and view.status is not None:
        return clean(view.status, 40).upper()
    return clean(kind.replace(".", " ").replace("_", " "), 60)


def title(view: WorkflowView) -> str:
    """``support-workflow FAILED``: the workflow's name and what happened (plain text)."""
    name = clean(view.workflow, 80) if view.workflow else "workflow"
    return f"{name} {what(view)}"


def lineage(view: WorkflowView) -> str | None:
    """``child of <parent> in root <root>`` for a sub-workflow, else ``None``."""
    if view.parent is None and view.root is None:
        return None
    parts = []
    if view.parent is not None:
        parts.append(f"child of {clean(view.parent, MAX_ID)}")
    if view.root is not None and view.root != view.parent:
        parts.append(f"in root {clean(view.root, MAX_ID)}")
    return " ".join(parts)


def shown_duration(view: WorkflowView) -> str | None:
    if view.seconds is None:
        return None
    return duration(view.seconds) + (" so far" if view.so_far else "")


@dataclass(frozen=True)
class Row:
    """One field of a message: its name, its value as one clean line, and whether the value
    is an identifier (a sink may show it as code)."""

    name: str
    value: str
    ident: bool = False


def rows(view: WorkflowView, *, failure_limit: int = MAX_FAILURE) -> list[Row]:
    """The fields of a Workflows message, in order, the unknown ones left out."""
    found: list[Row] = []

    def add(name: str, value: object, limit: int = 120, *, ident: bool = False) -> None:
        if value is None or value == "":
            return
        found.append(Row(name, clean(value, limit), ident))

    add("Workflow", view.workflow, 120)
    add("Deployment", view.deployment, 80)
    add("Execution", view.execution_id, MAX_ID, ident=True)
    add("Run", view.run_id, MAX_ID, ident=True)
    add("New run", view.new_run_id, MAX_ID, ident=True)
    add("Sub-workflow", lineage(view), 2 * MAX_ID + 20)
    if view.status is not None:
        before = clean(view.previous_status, 40) if view.previous_status else "new"
        add("Status", f"{before} \u2192 {clean(view.status, 40)}")
    add("Duration", shown_duration(view))
    add("Attempt", view.attempt)
    if view.activity is not None:
        add("Activity", view.activity, 120)
    add("Activity attempt", view.activity_attempt)
    if view.retries is not None:
        within = (
            f" within {duration(view.within_seconds)}" if view.within_seconds is not None else ""
        )
        add("Retries", f"{view.retries}{within}")
    add("Rule", view.rule, 60)
    add("Failure", view.failure, failure_limit)
    return found
