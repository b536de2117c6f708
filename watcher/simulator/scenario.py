"""Scenarios: job lifecycles from a YAML file, or generated from a seed.

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

Step times are seconds after the job's creation. Errors are :class:`ValueError` naming the
field (``jobs[1].steps[2]: ...``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml

from watcher.simulator.jobs import EVENTS_ORDERS, EventsOrder, JobSpec

_FIELDS = frozenset(
    {
        "name", "job_type", "model", "suffix", "status", "create_after", "steps",
        "checkpoints", "auto_start", "events_order", "frozen", "created_by_me",
        "wandb_project", "wandb_name", "repository",
    }
)  # fmt: skip


def load_scenario(path: Path | str) -> list[JobSpec]:
    """The job specs of a scenario file; :class:`ValueError` names the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read scenario: {exc.strerror or exc}") from None
    return parse_scenario(text, source=str(path))


def load_demo() -> list[JobSpec]:
    """The built-in demo scenario (``scenarios/demo.yaml``)."""
    demo = resources.files("watcher.simulator").joinpath("scenarios", "demo.yaml")
    text = demo.read_text("utf-8")
    return parse_scenario(text, source="demo.yaml")


def parse_scenario(text: str, *, source: str = "scenario") -> list[JobSpec]:
    """The job specs of a scenario given as YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: a scenario is a mapping with a 'jobs' list")
    unknown = sorted(str(k) for k in data if k != "jobs")
    if unknown:
        raise ValueError(f"{source}: {unknown[0]}: unknown field")
    jobs = data.get("jobs")
    if not isinstance(jobs, list):
        raise ValueError(f"{source}: jobs: must be a list")
    specs = [job_spec(raw, where=f"{source}: jobs[{i}]") for i, raw in enumerate(jobs)]
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name is not None:
            if spec.name in seen:
                raise ValueError(f"{source}: jobs[{i}].name: duplicate name {spec.name!r}")
            seen.add(spec.name)
    return specs


def job_spec(raw: Any, *, where: str = "") -> JobSpec:
    """One :class:`JobSpec` from a mapping (scenario entry or admin request body).

    ``where`` prefixes the field names in errors (``jobs[0]`` gives ``jobs[0].steps``).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where or 'job'}: must be a mapping")
    for key in raw:
        if key not in _FIELDS:
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
        create_after=_seconds(raw.get("create_after", 0), f"{_prefix(where)}create_after"),
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
        seconds = _seconds(after, here)
        if steps and seconds < steps[-1][1]:
            raise ValueError(f"{here}: steps must be in time order ({seconds} < {steps[-1][1]})")
        steps.append((status, seconds))
    return tuple(steps)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a number of seconds")
    if value < 0:
        raise ValueError(f"{where}: must not be negative")
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


# -- seeded random scenarios ---------------------------------------------------------------

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
        at = 0.0
        steps: list[tuple[str, float]] = []
        for status in statuses:
            at += round(rng.uniform(*step_gap), 1)
            steps.append((status, at))
        suffix: str | None = rng.choice(_HOSTILE) if hostile else f"sim-{i}"
        model = rng.choice(_HOSTILE) if hostile and rng.random() < 0.5 else None
        specs.append(
            JobSpec(
                name=f"job-{i}",
                job_type=job_type,
                model=model,
                suffix=suffix,
                create_after=round(rng.uniform(0.0, start_within), 1),
                steps=tuple(steps),
                checkpoints=rng.randint(1, 4) if with_checkpoints else 0,
                auto_start=auto_start,
                events_order=cast(EventsOrder, order),
                wandb_project="sim-project" if rng.random() < 0.3 else None,
                repository="mistralai/sim-data" if rng.random() < 0.2 else None,
            )
        )
    return specs
