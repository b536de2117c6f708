"""Seeded random scenarios: varied fine-tuning, batch and workflow lifecycles, the same for the same
seed (``watcher simulate --seed``, property and endurance tests)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any, cast

from watcher.devtools.simulator.batch import BatchSpec
from watcher.devtools.simulator.jobs import EventsOrder, JobSpec
from watcher.devtools.simulator.workflows import WorkflowSpec, WorkflowStep

_V = ("VALIDATING", "VALIDATED")
_CANCEL = ("CANCELLATION_REQUESTED", "CANCELLED")
# (job_type, auto_start, statuses after QUEUED, checkpoints wanted, events order)
_LIFECYCLES: tuple[tuple[str, bool, tuple[str, ...], bool, str], ...] = (
    ("completion", True, (*_V, "RUNNING", "SUCCESS"), True, "oldest_first"),
    ("completion", True, ("RUNNING", "SUCCESS"), True, "newest_first"),  # 2024 style
    ("completion", True, (*_V, "RUNNING", "FAILED"), True, "oldest_first"),
    ("completion", True, ("VALIDATING", "FAILED_VALIDATION"), False, "oldest_first"),
    ("completion", True, (*_V, "RUNNING", *_CANCEL), True, "oldest_first"),
    ("classifier", False, (*_V, "QUEUED", "RUNNING", "SUCCESS"), True, "oldest_first"),
    ("classifier", False, _V, False, "oldest_first"),  # parked until someone calls /start
    ("classifier", True, (*_V, "RUNNING", "FAILED"), True, "oldest_first"),
    ("completion", True, _CANCEL, False, "oldest_first"),  # cancelled while QUEUED
)
_HOSTILE = (
    "<script>alert(1)</script>",
    "*bold* _it_ `code` <!channel>",
    "line\nbreak",
    "ünïcödé-🚀",
    "'; DROP TABLE jobs; --",
    "x" * 300,
    "{{ 7*7 }}",
    "",
)


def random_scenario(
    seed: int,
    jobs: int = 8,
    *,
    start_within: float = 10.0,
    step_gap: tuple[float, float] = (2.0, 5.0),
    hostile: bool = False,
) -> list[JobSpec]:
    """``jobs`` varied lifecycles, the same for the same arguments.

    Jobs appear within ``start_within`` seconds, their steps ``step_gap`` seconds apart.
    ``hostile`` gives them suffixes and models a watcher must escape.
    """
    rng = random.Random(seed)
    specs: list[JobSpec] = []
    for i in range(jobs):
        job_type, auto_start, statuses, with_checkpoints, order = rng.choice(_LIFECYCLES)
        steps = _random_steps(rng, statuses, step_gap)
        suffix: str | None = rng.choice(_HOSTILE) if hostile else f"sim-{i}"
        model = rng.choice(_HOSTILE) if hostile and rng.random() < 0.5 else None
        specs.append(
            JobSpec(
                name=f"job-{i}",
                job_type=job_type,
                model=model,
                suffix=suffix,
                create_after=round(rng.uniform(0.0, start_within), 1),
                steps=steps,
                checkpoints=rng.randint(1, 4) if with_checkpoints else 0,
                auto_start=auto_start,
                events_order=cast(EventsOrder, order),
                wandb_project="sim-project" if rng.random() < 0.3 else None,
                repository="mistralai/sim-data" if rng.random() < 0.2 else None,
            )
        )
    return specs


_BATCH_CANCEL = ("CANCELLATION_REQUESTED", "CANCELLED")
# (statuses after QUEUED, with failed requests): every ending the reference §5 describes.
_BATCH_LIFECYCLES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("RUNNING", "SUCCESS"), False),
    (("RUNNING", "SUCCESS"), True),  # SUCCESS with failed requests, even all of them
    (("RUNNING", "TIMEOUT_EXCEEDED"), True),
    (("RUNNING", *_BATCH_CANCEL), False),
    (("RUNNING", "FAILED"), True),
    (("SUCCESS",), False),  # a fast job skips RUNNING between two polls
    (_BATCH_CANCEL, False),  # cancelled while QUEUED
)
# (endpoint, model): agent jobs have no model.
_BATCH_TARGETS: tuple[tuple[str, str | None], ...] = (
    ("/v1/chat/completions", "mistral-small-latest"),
    ("/v1/embeddings", "mistral-embed"),
    ("/v1/ocr", "mistral-ocr-latest"),
    ("/v1/fim/completions", "codestral-latest"),
    ("/v1/moderations", "mistral-moderation-latest"),
    ("/v1/agents/completions", None),
)
_BATCH_ERRORS = (
    "Request body is not valid JSON",
    "The maximum context length was exceeded",
    "Document exceeds the maximum size",
)


def random_batch_scenario(
    seed: int,
    jobs: int = 8,
    *,
    start_within: float = 10.0,
    step_gap: tuple[float, float] = (2.0, 5.0),
) -> list[BatchSpec]:
    """``jobs`` batch jobs with varied lifecycles, the same for the same arguments.

    Jobs appear within ``start_within`` seconds, their steps ``step_gap`` seconds apart.
    """
    rng = random.Random(seed)
    specs: list[BatchSpec] = []
    for i in range(jobs):
        statuses, with_failures = rng.choice(_BATCH_LIFECYCLES)
        steps = _random_steps(rng, statuses, step_gap)
        endpoint, model = rng.choice(_BATCH_TARGETS)
        failure_rate = rng.choice((0.01, 0.1, 0.5, 1.0)) if with_failures else 0.0
        progress = round(rng.uniform(0.1, 0.9), 2)
        specs.append(
            BatchSpec(
                name=f"batch-{i}",
                endpoint=endpoint,
                model=model,
                agent_id=f"ag_sim_{i}" if model is None else None,
                metadata={"pipeline": "sim", "run": str(i)} if rng.random() < 0.5 else None,
                create_after=round(rng.uniform(0.0, start_within), 1),
                steps=steps,
                total_requests=rng.choice((1, 10, 100, 500, 20_000)),
                failure_rate=failure_rate,
                progress=progress,
                errors=tuple(rng.sample(_BATCH_ERRORS, rng.randint(1, 2))) if with_failures else (),
                total_while_queued=rng.random() < 0.5,
            )
        )
    return specs


def _random_steps(
    rng: random.Random, statuses: Sequence[str], step_gap: tuple[float, float]
) -> tuple[tuple[str, float], ...]:
    """``statuses`` one after the other, each a random ``step_gap`` after the one before."""
    at = 0.0
    steps: list[tuple[str, float]] = []
    for status in statuses:
        at += round(rng.uniform(*step_gap), 1)
        steps.append((status, at))
    return tuple(steps)


_Script = tuple[tuple[str, dict[str, Any]], ...]
_FETCH = {"activity": "fetch"}
_RETRY = ("activity_retrying", {**_FETCH, "message": "TimeoutError: upstream did not answer"})
_GAVE_UP = ("activity_failed", {**_FETCH, "message": "TimeoutError: upstream did not answer"})
# Every ending the reference §6 describes, as scripts of (action, params).
_WORKFLOW_LIFECYCLES: dict[str, _Script] = {
    "completed": (
        ("activity_started", _FETCH),
        ("activity_completed", {**_FETCH, "result": {"rows": 12}}),
        ("complete", {"result": {"ok": True}}),
    ),
    "failed_after_activity_retries": (_RETRY, _RETRY, _GAVE_UP, ("fail", {})),
    "retried_then_completed": (
        _RETRY,
        _GAVE_UP,
        ("fail", {"retry": True, "message": "ActivityError: fetch failed"}),
        ("activity_completed", _FETCH),
        ("complete", {}),
    ),
    "canceled": (("activity_started", _FETCH), ("cancel", {"reason": "Stopped by an operator"})),
    "terminated": (("activity_started", _FETCH), ("terminate", {})),
    "timed_out": (_RETRY, _RETRY, ("time_out", {})),
    "continued_as_new": (),  # built per execution: one to three hand-overs, then complete
    "child_failed": (),  # a root and a child that fails under it
}
WORKFLOW_LIFECYCLES = tuple(_WORKFLOW_LIFECYCLES)


def random_workflow_scenario(
    seed: int,
    executions: int = 8,
    *,
    start_within: float = 10.0,
    step_gap: tuple[float, float] = (2.0, 5.0),
    hostile: bool = False,
) -> list[WorkflowSpec]:
    """``executions`` top-level workflow executions, the same for the same arguments.

    The lifecycles are dealt in a shuffled cycle, so 8 or more executions cover all of
    :data:`WORKFLOW_LIFECYCLES`; a ``child_failed`` one adds a child execution under its
    root. ``hostile`` gives workflow names and failure messages a watcher must escape.
    """
    rng = random.Random(seed)
    order = list(WORKFLOW_LIFECYCLES)
    rng.shuffle(order)
    specs: list[WorkflowSpec] = []
    for i in range(executions):
        lifecycle = order[i % len(order)]
        name = (rng.choice(_HOSTILE) or "empty") if hostile else f"sim-{lifecycle}"
        spec = partial(
            WorkflowSpec,
            name=f"workflow-{i}",
            workflow_name=name,
            deployment_name=rng.choice(("prod", "staging", None)),
            create_after=round(rng.uniform(0.0, start_within), 1),
            input={"run": i},
        )
        script = _WORKFLOW_LIFECYCLES[lifecycle]
        if lifecycle == "continued_as_new":
            hand_over: _Script = (("activity_completed", _FETCH), ("continue_as_new", {}))
            script = (*hand_over * rng.randint(1, 3), ("complete", {}))
        elif lifecycle == "child_failed":
            child_steps = _workflow_steps(rng, (_RETRY, _GAVE_UP, ("fail", {})), step_gap, hostile)
            root_end = round(child_steps[-1].after + rng.uniform(*step_gap), 1)
            specs.append(
                spec(
                    steps=(
                        WorkflowStep(action="activity_started", after=1.0, activity="prepare"),
                        WorkflowStep(action="fail", after=root_end, message="ChildWorkflowError"),
                    )
                )
            )
            child = spec(steps=child_steps, parent=f"workflow-{i}")
            specs.append(replace(child, name=f"workflow-{i}-child", workflow_name=f"{name}-child"))
            continue
        specs.append(spec(steps=_workflow_steps(rng, script, step_gap, hostile)))
    return specs


def _workflow_steps(
    rng: random.Random, script: _Script, step_gap: tuple[float, float], hostile: bool
) -> tuple[WorkflowStep, ...]:
    at = 0.0
    steps: list[WorkflowStep] = []
    for action, params in script:
        at += round(rng.uniform(*step_gap), 1)
        message = params.get("message")
        if hostile and action in ("fail", "activity_failed", "activity_retrying"):
            message = rng.choice(_HOSTILE) or None
        step = WorkflowStep(action=action, after=round(at, 1), **params)
        steps.append(replace(step, message=message))
    return tuple(steps)
