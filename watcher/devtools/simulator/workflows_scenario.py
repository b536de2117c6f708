"""The ``workflows:`` section of a scenario file, and the admin API's creation body: one
:class:`~watcher.devtools.simulator.workflows.WorkflowSpec` per entry::

    workflows:
      - name: nightly-etl              # optional, unique among workflows
        workflow_name: etl-pipeline    # any string
        deployment_name: prod          # any string or null
        execution_id: etl-2026-08-01   # optional: drawn when absent
        parent: null                   # the name of an earlier entry: a sub-workflow
        user_id: u_123
        input: {day: "2026-08-01"}     # any mapping
        create_after: 1                # seconds after the simulator starts
        steps:                         # seconds after the creation, in time order
          - [activity_started, 1]
          - [activity_retrying, 2, {activity: fetch, message: "Timeout"}]
          - [activity_failed, 4, {activity: fetch}]
          - {action: fail, at: 5, retry: true}   # a workflow-level retry: a new run
          - [complete, 8, {result: {rows: 12}}]

A step is ``[ACTION, seconds]``, ``[ACTION, seconds, {params}]`` or ``{action, at,
params...}``; the actions and their params are those of
:class:`~watcher.devtools.simulator.workflows.WorkflowStep`. Errors are
:class:`ValueError` naming the field (``workflows[1].steps[2]: ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.devtools.simulator.workflows import (
    ACTIONS,
    DEFAULT_ACTIVITY,
    DEFAULT_DEPLOYMENT,
    DEFAULT_USER,
    DEFAULT_WORKFLOW,
    STEP_PARAMS,
    WorkflowSpec,
    WorkflowStep,
)

WORKFLOW_FIELDS = frozenset(
    {
        "name", "workflow_name", "deployment_name", "execution_id", "parent", "user_id",
        "input", "create_after", "steps",
    }
)  # fmt: skip


def workflow_spec(raw: Any, *, where: str = "") -> WorkflowSpec:
    """One :class:`WorkflowSpec` from a mapping (scenario entry or admin request body)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where or 'workflow'}: must be a mapping")
    here = f"{where}." if where else ""
    for key in raw:
        if key not in WORKFLOW_FIELDS:
            raise ValueError(f"{here}{key}: unknown field")
    data = raw.get("input")
    if data is not None and (
        not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data)
    ):
        raise ValueError(f"{here}input: must be a mapping with string keys, or null")
    return WorkflowSpec(
        name=_text(raw, "name", here, optional=True),
        workflow_name=_text(raw, "workflow_name", here) or DEFAULT_WORKFLOW,
        deployment_name=_text(raw, "deployment_name", here, optional=True)
        if "deployment_name" in raw
        else DEFAULT_DEPLOYMENT,
        execution_id=_text(raw, "execution_id", here, optional=True),
        parent=_text(raw, "parent", here, optional=True),
        user_id=_text(raw, "user_id", here, optional=True) if "user_id" in raw else DEFAULT_USER,
        input=dict(data) if data is not None else None,
        create_after=_seconds(raw.get("create_after", 0), f"{here}create_after"),
        steps=workflow_steps(raw.get("steps"), where=f"{here}steps"),
    )


def workflow_steps(raw: Any, *, where: str = "steps") -> tuple[WorkflowStep, ...]:
    """A script: steps validated and in time order."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of steps")
    steps: list[WorkflowStep] = []
    for i, item in enumerate(raw):
        step = workflow_step(item, where=f"{where}[{i}]")
        if steps and step.after < steps[-1].after:
            raise ValueError(
                f"{where}[{i}]: steps must be in time order ({step.after} < {steps[-1].after})"
            )
        steps.append(step)
    return tuple(steps)


def workflow_step(raw: Any, *, where: str = "step", at: float | None = None) -> WorkflowStep:
    """One step from ``[ACTION, seconds]``, ``[ACTION, seconds, {params}]`` or a mapping.

    With ``at`` given (the admin API acting now), a mapping needs no ``at`` of its own.
    """
    if isinstance(raw, list | tuple) and len(raw) in (2, 3):
        params = raw[2] if len(raw) == 3 else {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}: the third element must be a mapping of params")
        action, after = raw[0], raw[1]
    elif isinstance(raw, Mapping):
        params = {k: v for k, v in raw.items() if k not in ("action", "at")}
        action, after = raw.get("action"), raw.get("at", at)
    else:
        raise ValueError(
            f"{where}: must be [ACTION, seconds], [ACTION, seconds, {{params}}] or a mapping"
        )
    if action not in ACTIONS:
        raise ValueError(f"{where}: the action must be one of {', '.join(ACTIONS)}")
    return step_with(str(action), params, where=where, after=_seconds(after, where))


def step_with(
    action: str, params: Mapping[str, Any], *, where: str, after: float = 0.0
) -> WorkflowStep:
    """``action`` with its params checked (unknown ones refused, types enforced)."""
    here = f"{where}." if where else ""
    for key in params:
        if key not in STEP_PARAMS:
            raise ValueError(f"{here}{key}: unknown field")
    retry = params.get("retry", False)
    if not isinstance(retry, bool):
        raise ValueError(f"{here}retry: must be true or false")
    return WorkflowStep(
        action=action,
        after=after,
        activity=_text(params, "activity", here) or DEFAULT_ACTIVITY,
        message=_text(params, "message", here, optional=True),
        result=params.get("result"),
        reason=_text(params, "reason", here, optional=True),
        retry=retry,
        input=params.get("input"),
    )


def check_parents(specs: Sequence[WorkflowSpec], where: str) -> None:
    """Names unique; each ``parent`` names an earlier entry created no later than it (so
    the parent exists by then)."""
    seen: dict[str, float] = {}
    for i, spec in enumerate(specs):
        if spec.parent is not None:
            if spec.parent not in seen:
                raise ValueError(f"{where}[{i}].parent: {spec.parent!r} names no earlier workflow")
            if spec.create_after < seen[spec.parent]:
                raise ValueError(f"{where}[{i}].create_after: before its parent's")
        if spec.name is not None:
            if spec.name in seen:
                raise ValueError(f"{where}[{i}].name: duplicate name {spec.name!r}")
            seen[spec.name] = spec.create_after


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a number of seconds")
    if value < 0:
        raise ValueError(f"{where}: must not be negative")
    return float(value)


def _text(raw: Mapping[str, Any], key: str, here: str, *, optional: bool = False) -> str | None:
    """A non-empty string; null (or absent) allowed when ``optional``."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (not optional and not value):
        kind = "a string or null" if optional else "a non-empty string"
        raise ValueError(f"{here}{key}: must be {kind}")
    return value
