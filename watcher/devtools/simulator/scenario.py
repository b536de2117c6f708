"""Scenarios: fine-tuning, batch and workflow lifecycles from a YAML file (seeded random ones are
in :mod:`.random_scenarios`).

A scenario file::

    jobs:
      - name: support-bot              # optional, unique
        job_type: completion           # completion | classifier | any other string
        model: open-mistral-7b         # any string
        suffix: support-bot            # any string or null
        create_after: 2                # seconds after the simulator starts
        steps: [[VALIDATING, 2], [VALIDATED, 4], [RUNNING, 6], [SUCCESS, 14]]
        checkpoints: 3                 # spread over the RUNNING phase
        auto_start: true
        events_order: oldest_first     # or newest_first (as in 2024)
    batches:                           # optional; batch jobs (``jobs`` may then be left out)
      - name: nightly-eval             # optional, unique among batches
        endpoint: /v1/chat/completions # any string
        model: mistral-small-latest    # any string, or null (agent jobs)
        agent_id: null
        metadata: {team: ml}           # a mapping or null
        create_after: 1
        steps: [[RUNNING, 2], [SUCCESS, 12]]  # counters move linearly while RUNNING
        total_requests: 100
        failure_rate: 0.05             # fraction of the requests that fail
        errors: [Invalid request body] # messages of the job's errors once it ends with failures
        progress: 0.5                  # share done by a run that does not succeed
        total_while_queued: false      # total_requests is 0 while QUEUED unless true
        frozen: false
        created_by_me: true
    workflows:                         # optional; workflow executions (see .workflows_scenario)
      - name: nightly-etl
        workflow_name: etl-pipeline
        steps: [[activity_retrying, 2], [activity_failed, 4], [fail, 5]]

Step times are seconds after the job's creation. Errors are :class:`ValueError` naming the
field (``jobs[1].steps[2]: ...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

from watcher.config.yamlsafe import YamlLimitError, load_limited
from watcher.devtools.simulator.batch import (
    DEFAULT_BATCH_MODEL,
    DEFAULT_ENDPOINT,
    DEFAULT_PROGRESS,
    DEFAULT_TOTAL_REQUESTS,
    BatchSpec,
)
from watcher.devtools.simulator.jobs import EVENTS_ORDERS, EventsOrder, JobSpec
from watcher.devtools.simulator.workflows import WorkflowSpec
from watcher.devtools.simulator.workflows_scenario import check_parents, workflow_spec

JOB_FIELDS = frozenset(
    {
        "name", "job_type", "model", "suffix", "status", "create_after", "steps",
        "checkpoints", "auto_start", "events_order", "frozen", "created_by_me",
        "wandb_project", "wandb_name", "repository",
    }
)  # fmt: skip
BATCH_FIELDS = frozenset(
    {
        "name", "endpoint", "model", "agent_id", "metadata", "status", "create_after", "steps",
        "total_requests", "failure_rate", "errors", "progress", "total_while_queued", "frozen",
        "created_by_me",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """Everything a scenario file scripts: fine-tuning jobs, batch jobs, workflows."""

    jobs: tuple[JobSpec, ...] = ()
    batches: tuple[BatchSpec, ...] = ()
    workflows: tuple[WorkflowSpec, ...] = ()

    @property
    def specs(self) -> list[JobSpec | BatchSpec | WorkflowSpec]:
        """Everything to schedule."""
        return [*self.jobs, *self.batches, *self.workflows]


def load_scenario(path: Path | str) -> list[JobSpec]:
    """The job specs of a scenario file; :class:`ValueError` names the file and the field."""
    return list(load_full_scenario(path).jobs)


def load_full_scenario(path: Path | str) -> Scenario:
    """The fine-tuning, batch and workflow specs of a scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read scenario: {exc.strerror or exc}") from None
    return parse_full_scenario(text, source=str(path))


def load_demo() -> list[JobSpec]:
    """The fine-tuning jobs of the built-in demo scenario (``scenarios/demo.yaml``)."""
    return list(load_full_demo().jobs)


def load_full_demo() -> Scenario:
    """The built-in demo scenario (``scenarios/demo.yaml``): its jobs and workflows."""
    demo = resources.files("watcher.devtools.simulator").joinpath("scenarios", "demo.yaml")
    text = demo.read_text("utf-8")
    return parse_full_scenario(text, source="demo.yaml")


def parse_scenario(text: str, *, source: str = "scenario") -> list[JobSpec]:
    """The job specs of a scenario given as YAML text (its batches are checked, not kept)."""
    return list(parse_full_scenario(text, source=source).jobs)


def parse_full_scenario(text: str, *, source: str = "scenario") -> Scenario:
    """The fine-tuning, batch and workflow specs of a scenario given as YAML text.

    ``jobs`` is required unless ``batches`` or ``workflows`` is given.
    """
    try:
        data = load_limited(text)
    except YamlLimitError as exc:
        raise ValueError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: a scenario is a mapping with a 'jobs' list")
    unknown = sorted(str(k) for k in data if k not in ("jobs", "batches", "workflows"))
    if unknown:
        raise ValueError(f"{source}: {unknown[0]}: unknown field")
    jobs = data.get("jobs", [] if "batches" in data or "workflows" in data else None)
    if not isinstance(jobs, list):
        raise ValueError(f"{source}: jobs: must be a list")
    batches = data.get("batches", [])
    if not isinstance(batches, list):
        raise ValueError(f"{source}: batches: must be a list")
    workflows = data.get("workflows", [])
    if not isinstance(workflows, list):
        raise ValueError(f"{source}: workflows: must be a list")
    specs = [job_spec(raw, where=f"{source}: jobs[{i}]") for i, raw in enumerate(jobs)]
    batch_specs = [
        batch_spec(raw, where=f"{source}: batches[{i}]") for i, raw in enumerate(batches)
    ]
    _unique_names([spec.name for spec in specs], f"{source}: jobs")
    _unique_names([spec.name for spec in batch_specs], f"{source}: batches")
    workflow_specs = [
        workflow_spec(raw, where=f"{source}: workflows[{i}]") for i, raw in enumerate(workflows)
    ]
    check_parents(workflow_specs, f"{source}: workflows")
    return Scenario(jobs=tuple(specs), batches=tuple(batch_specs), workflows=tuple(workflow_specs))


def _unique_names(names: list[str | None], where: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name is not None:
            if name in seen:
                raise ValueError(f"{where}[{i}].name: duplicate name {name!r}")
            seen.add(name)


def job_spec(raw: Any, *, where: str = "") -> JobSpec:
    """One :class:`JobSpec` from a mapping (scenario entry or admin request body).

    ``where`` prefixes the field names in errors (``jobs[0]`` gives ``jobs[0].steps``).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where or 'job'}: must be a mapping")
    for key in raw:
        if key not in JOB_FIELDS:
            raise ValueError(f"{_prefix(where)}{key}: unknown field")
    status = _string(raw, "status", where, default="QUEUED")
    steps = _steps(raw.get("steps"), f"{_prefix(where)}steps")
    events_order = raw.get("events_order", "oldest_first")
    if events_order not in EVENTS_ORDERS:
        raise ValueError(f"{_prefix(where)}events_order: must be one of {', '.join(EVENTS_ORDERS)}")
    return JobSpec(
        name=_optional_string(raw, "name", where),
        job_type=_string(raw, "job_type", where, default="completion"),
        model=_optional_string(raw, "model", where),
        suffix=_optional_string(raw, "suffix", where),
        status=status or "QUEUED",
        create_after=seconds_from(raw.get("create_after", 0), f"{_prefix(where)}create_after"),
        steps=steps,
        checkpoints=_count(raw.get("checkpoints", 0), f"{_prefix(where)}checkpoints"),
        auto_start=_bool(raw, "auto_start", where, default=True),
        events_order=cast(EventsOrder, events_order),
        frozen=_bool(raw, "frozen", where, default=False),
        created_by_me=_bool(raw, "created_by_me", where, default=True),
        wandb_project=_optional_string(raw, "wandb_project", where),
        wandb_name=_optional_string(raw, "wandb_name", where),
        repository=_optional_string(raw, "repository", where),
    )


def batch_spec(raw: Any, *, where: str = "") -> BatchSpec:
    """One :class:`BatchSpec` from a mapping (scenario entry or admin request body).

    A missing ``model`` is the default model; ``model: null`` sends null.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where or 'batch'}: must be a mapping")
    for key in raw:
        if key not in BATCH_FIELDS:
            raise ValueError(f"{_prefix(where)}{key}: unknown field")
    metadata = raw.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata)
    ):
        raise ValueError(f"{_prefix(where)}metadata: must be a mapping with string keys, or null")
    errors = raw.get("errors", [])
    if not isinstance(errors, list) or not all(isinstance(e, str) and e for e in errors):
        raise ValueError(f"{_prefix(where)}errors: must be a list of non-empty strings")
    return BatchSpec(
        name=_optional_string(raw, "name", where),
        endpoint=_string(raw, "endpoint", where, default=DEFAULT_ENDPOINT),
        model=_optional_string(raw, "model", where) if "model" in raw else DEFAULT_BATCH_MODEL,
        agent_id=_optional_string(raw, "agent_id", where),
        metadata=dict(metadata) if metadata is not None else None,
        status=_string(raw, "status", where, default="QUEUED"),
        create_after=seconds_from(raw.get("create_after", 0), f"{_prefix(where)}create_after"),
        steps=_steps(raw.get("steps"), f"{_prefix(where)}steps"),
        total_requests=_count(
            raw.get("total_requests", DEFAULT_TOTAL_REQUESTS), f"{_prefix(where)}total_requests"
        ),
        failure_rate=_fraction(raw.get("failure_rate", 0.0), f"{_prefix(where)}failure_rate"),
        errors=tuple(errors),
        progress=_fraction(raw.get("progress", DEFAULT_PROGRESS), f"{_prefix(where)}progress"),
        total_while_queued=_bool(raw, "total_while_queued", where, default=False),
        frozen=_bool(raw, "frozen", where, default=False),
        created_by_me=_bool(raw, "created_by_me", where, default=True),
    )


def steps_from(raw: Any, *, where: str = "steps") -> tuple[tuple[str, float], ...]:
    """``[[STATUS, seconds], ...]`` validated: statuses non-empty, times non-decreasing."""
    return _steps(raw, where)


def _prefix(where: str) -> str:
    return f"{where}." if where else ""


def _steps(raw: Any, where: str) -> tuple[tuple[str, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of [STATUS, seconds] pairs")
    steps: list[tuple[str, float]] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise ValueError(f"{here}: must be a [STATUS, seconds] pair")
        status, after = item
        if not isinstance(status, str) or not status:
            raise ValueError(f"{here}: the status must be a non-empty string")
        seconds = seconds_from(after, here)
        if steps and seconds < steps[-1][1]:
            raise ValueError(f"{here}: steps must be in time order ({seconds} < {steps[-1][1]})")
        steps.append((status, seconds))
    return tuple(steps)


def seconds_from(value: Any, where: str) -> float:
    """A finite, non-negative number of seconds; :class:`ValueError` names ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a number of seconds")
    if value < 0:
        raise ValueError(f"{where}: must not be negative")
    return float(value)


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{where}: must be a number between 0 and 1")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: must be a non-negative integer")
    return value


def _bool(raw: Mapping[str, Any], key: str, where: str, *, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{_prefix(where)}{key}: must be true or false")
    return value


def _string(raw: Mapping[str, Any], key: str, where: str, *, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{_prefix(where)}{key}: must be a non-empty string")
    return value


def _optional_string(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{_prefix(where)}{key}: must be a string or null")
    return value
