"""Tolerant models of the jobs the APIs send.

The API is a foreign system (see reference/mistral-fine-tuning-api.md §11): unknown
statuses, unknown ``job_type`` values, unknown fields, nulls, missing optional fields and
either event order are accepted and kept. Only ``id``, ``status`` and ``created_at`` are
required; an item without them raises :class:`MalformedItem` so that the caller can skip it
and keep the rest of the page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

# Inferred from names and observed runs (the API does not document it).
FINE_TUNING_TERMINAL = frozenset({"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"})
FINE_TUNING_STATUSES = (
    "QUEUED",
    "STARTED",
    "VALIDATING",
    "VALIDATED",
    "RUNNING",
    "FAILED_VALIDATION",
    "FAILED",
    "SUCCESS",
    "CANCELLED",
    "CANCELLATION_REQUESTED",
)

_MODELED = frozenset(
    {
        "id", "status", "created_at", "modified_at", "model", "job_type", "suffix",
        "fine_tuned_model", "auto_start", "trained_tokens", "metadata", "events",
        "checkpoints",
    }
)  # fmt: skip

# Timestamps beyond this are taken as milliseconds (year 5138 in seconds).
_MS_THRESHOLD = 100_000_000_000


class MalformedItem(ValueError):
    """One item of an API answer cannot be used; the rest of the answer still can."""


class Event(BaseModel):
    """One entry of a job's ``events`` array. ``data`` is kept as sent (object or null)."""

    model_config = ConfigDict(frozen=True)

    name: str
    created_at: int
    data: dict[str, Any] | None = None

    @property
    def status(self) -> str | None:
        """The status a ``status-updated`` event announces, when it says one."""
        if self.name != "status-updated" or not self.data:
            return None
        value = self.data.get("status")
        return value if isinstance(value, str) and value else None


class Checkpoint(BaseModel):
    """One checkpoint; ``step_number`` is its natural key (checkpoints have no id)."""

    model_config = ConfigDict(frozen=True)

    step_number: int
    created_at: int | None = None
    metrics: dict[str, float | None] = {}


class Job(BaseModel):
    """A job as watcher understands it, whatever the API's era or variant.

    ``events`` and ``checkpoints`` are ``None`` for a list item (the list never carries
    them) and a tuple, possibly empty, for a detailed job. ``extra`` keeps every field
    watcher does not model, as sent.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: str
    created_at: int
    modified_at: int
    model: str | None = None
    job_type: str | None = None
    suffix: str | None = None
    fine_tuned_model: str | None = None
    auto_start: bool | None = None
    trained_tokens: int | None = None
    metadata: dict[str, Any] = {}
    events: tuple[Event, ...] | None = None
    checkpoints: tuple[Checkpoint, ...] | None = None
    extra: dict[str, Any] = {}

    @property
    def detailed(self) -> bool:
        return self.events is not None

    def summary(self) -> dict[str, Any]:
        """The job fields a notification shows (``job`` in the webhook payload)."""
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "job_type": self.job_type,
            "suffix": self.suffix,
            "fine_tuned_model": self.fine_tuned_model,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
            "metadata": self.metadata,
        }


def _timestamp(value: Any, *, field: str) -> int:
    """Unix seconds from an int, a float, a numeric string or a millisecond-sized int."""
    if isinstance(value, bool):
        raise MalformedItem(f"{field} is a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise MalformedItem(f"{field} is not a number") from None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise MalformedItem(f"{field} is not finite")
        seconds = int(value)
        while seconds > _MS_THRESHOLD:  # milli-, micro- or nanoseconds
            seconds //= 1000
        if seconds < 0:
            raise MalformedItem(f"{field} is negative")
        return seconds
    raise MalformedItem(f"{field} is missing or not a number")


def _text(value: str) -> str:
    """``value`` with lone surrogates (valid JSON, invalid UTF-8) replaced."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _key(value: Any, *, field: str, limit: int) -> str:
    """An identifier used as a database key and in URLs: UTF-8, bounded, no controls."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedItem(f"job has no {field}")
    if len(value) > limit or _text(value) != value or any(ord(c) < 32 for c in value):
        raise MalformedItem(f"job has an unusable {field}")
    return value


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _metric(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "NaN" and "inf" are kept: a metric rule wants to see them
        except ValueError:
            return None
    return None


def parse_event(raw: Any) -> Event | None:
    """An event, or ``None`` when the item is unusable (no name or no time)."""
    if not isinstance(raw, Mapping):
        return None
    name = raw.get("name")
    if not isinstance(name, str):
        return None
    name = _text(name)
    try:
        created_at = _timestamp(raw.get("created_at"), field="created_at")
    except MalformedItem:
        return None
    data = raw.get("data")
    if data is not None and not isinstance(data, Mapping):
        data = {"value": data}
    return Event(name=name, created_at=created_at, data=dict(data) if data is not None else None)


def parse_checkpoint(raw: Any) -> Checkpoint | None:
    """A checkpoint, or ``None`` when it has no usable ``step_number``."""
    if not isinstance(raw, Mapping):
        return None
    step = _opt_int(raw.get("step_number"))
    if step is None:
        return None
    created: int | None
    try:
        created = _timestamp(raw.get("created_at"), field="created_at")
    except MalformedItem:
        created = None
    metrics_raw = raw.get("metrics")
    metrics = (
        {str(k): _metric(v) for k, v in metrics_raw.items()}
        if isinstance(metrics_raw, Mapping)
        else {}
    )
    return Checkpoint(step_number=step, created_at=created, metrics=metrics)


def parse_job(raw: Any) -> Job:
    """A :class:`Job` from one raw JSON object of the list or the detail endpoint.

    Raises :class:`MalformedItem` only when ``id``, ``status`` or ``created_at`` is unusable.
    """
    if not isinstance(raw, Mapping):
        raise MalformedItem("job is not a JSON object")
    job_id = _key(raw.get("id"), field="id", limit=255)
    status = _key(raw.get("status"), field="status", limit=128)
    created_at = _timestamp(raw.get("created_at"), field="created_at")
    try:
        modified_at = _timestamp(raw.get("modified_at"), field="modified_at")
    except MalformedItem:
        modified_at = created_at
    metadata = raw.get("metadata")
    events_raw = raw.get("events")
    checkpoints_raw = raw.get("checkpoints")
    detailed = "events" in raw or "checkpoints" in raw
    events: tuple[Event, ...] | None = None
    checkpoints: tuple[Checkpoint, ...] | None = None
    if detailed:
        events = tuple(
            e
            for e in map(parse_event, events_raw if isinstance(events_raw, list) else [])
            if e is not None
        )
        checkpoints = tuple(
            c
            for c in map(
                parse_checkpoint, checkpoints_raw if isinstance(checkpoints_raw, list) else []
            )
            if c is not None
        )
    auto_start = raw.get("auto_start")
    return Job(
        id=job_id,
        status=status.strip(),
        created_at=created_at,
        modified_at=modified_at,
        model=_opt_str(raw.get("model")),
        job_type=_opt_str(raw.get("job_type")),
        suffix=_opt_str(raw.get("suffix")),
        fine_tuned_model=_opt_str(raw.get("fine_tuned_model")) or None,
        auto_start=auto_start if isinstance(auto_start, bool) else None,
        trained_tokens=_opt_int(raw.get("trained_tokens")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        events=events,
        checkpoints=checkpoints,
        extra={k: v for k, v in raw.items() if k not in _MODELED},
    )
