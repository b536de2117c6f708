"""Tolerant models of the jobs the APIs send, and the parsing primitives sources share.

The APIs are foreign systems (see the references' "forward compatibility" sections):
unknown statuses, unknown fields, nulls, missing optional fields and either event order are
accepted and kept. Only ``id``, ``status`` and ``created_at`` are required; an item without
them raises :class:`MalformedItem` so that the caller can skip it and keep the rest of the
page. Each source module turns its raw JSON into a :class:`Job` with these helpers.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

# Timestamps beyond this are taken as milliseconds (year 5138 in seconds).
_MS_THRESHOLD = 100_000_000_000
_CONTROL = re.compile(r"[\x00-\x1f]")  # what a key must not hold


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


class StreamEvent(BaseModel):
    """One event an event stream announced about a job (workflows reference §7): a hint
    the source confirms with a GET, carrying what only the stream knows (a failure's
    message, an activity's retries). ``type`` and ``attributes`` are kept as sent."""

    model_config = ConfigDict(frozen=True)

    id: str  # event_id: unique per event instance
    type: str  # event_type, e.g. ACTIVITY_TASK_RETRYING (unknown ones kept raw)
    at: int  # Unix seconds
    sequence: int  # broker_sequence
    job_id: str  # workflow_exec_id
    run_id: str | None = None  # workflow_run_id
    attributes: dict[str, Any] = {}


class Job(BaseModel):
    """A job as watcher understands it, whatever the source, era or variant.

    ``view`` holds the source-specific fields a notification shows (model, suffix,
    counters…). ``events`` and ``checkpoints`` are ``None`` when the answer did not carry
    them (a list item) and a tuple, possibly empty, when it did. ``extra`` keeps every field
    watcher does not model, as sent.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: str
    created_at: int
    modified_at: int
    view: dict[str, Any] = {}
    fine_tuned_model: str | None = None
    events: tuple[Event, ...] | None = None
    checkpoints: tuple[Checkpoint, ...] | None = None
    stream: tuple[StreamEvent, ...] = ()  # events a stream announced since the last commit
    extra: dict[str, Any] = {}

    @property
    def detailed(self) -> bool:
        return self.events is not None

    def summary(self) -> dict[str, Any]:
        """The job as a notification shows it (``job`` in the webhook payload)."""
        return {
            "id": self.id,
            "status": self.status,
            **self.view,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
        }


def timestamp(value: Any, *, field: str) -> int:
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


def moment(value: Any, *, field: str) -> int:
    """Unix seconds from an ISO 8601 string (``2026-08-01T10:25:07.818693Z``; no zone is
    UTC) or from anything :func:`timestamp` reads."""
    if isinstance(value, str) and not value.strip().lstrip("-").replace(".", "", 1).isdigit():
        try:
            parsed = datetime.fromisoformat(value.strip()[:64].replace("z", "Z"))
        except ValueError:
            raise MalformedItem(f"{field} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
        if seconds < 0:
            raise MalformedItem(f"{field} is before 1970")
        return int(seconds)
    return timestamp(value, field=field)


def text(value: str) -> str:
    """``value`` with lone surrogates (valid JSON, invalid UTF-8) replaced."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def key(value: Any, *, field: str, limit: int) -> str:
    """An identifier used as a database key and in URLs: UTF-8, bounded, no controls."""
    if not isinstance(value, str) or not value.strip():
        raise MalformedItem(f"job has no {field}")
    if len(value) > limit or text(value) != value or _CONTROL.search(value):
        raise MalformedItem(f"job has an unusable {field}")
    return value


def opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def metric(value: Any) -> float | None:
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
    name = text(name)
    try:
        created_at = timestamp(raw.get("created_at"), field="created_at")
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
    step = opt_int(raw.get("step_number"))
    if step is None:
        return None
    created: int | None
    try:
        created = timestamp(raw.get("created_at"), field="created_at")
    except MalformedItem:
        created = None
    metrics_raw = raw.get("metrics")
    metrics = (
        {str(k): metric(v) for k, v in metrics_raw.items()}
        if isinstance(metrics_raw, Mapping)
        else {}
    )
    return Checkpoint(step_number=step, created_at=created, metrics=metrics)


MAX_JOB_ID = 256  # longer than any id the APIs make (UUIDs)


def job_id_problem(job_id: str) -> str | None:
    """Why ``job_id`` cannot name a job in a request path (``None``: it can). It is quoted
    before it goes into a path all the same; these are refused outright: empty, too long,
    control or format characters, and ``.``/``..`` (a client resolves them as path steps)."""
    if not job_id.strip():
        return "the job id is empty"
    if len(job_id) > MAX_JOB_ID:
        return f"the job id is longer than {MAX_JOB_ID} characters"
    if any(unicodedata.category(ch)[0] == "C" for ch in job_id):
        return "the job id holds control characters"
    if job_id in (".", ".."):
        return "the job id is not an id"
    return None
