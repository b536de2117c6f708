"""Transitions: normalized, immutable facts about jobs and sources.

A transition's id is derived from its content only (source, job, kind of fact and the
fact's own key), never from the time it was detected, so that detecting it again after a
crash yields the same id and a receiver can deduplicate on it (``webhook-id``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from watcher.model import types

SCHEMA_VERSION = 1


def stable_id(*parts: object) -> str:
    """An id derived from ``parts`` only: the same facts give the same id in any process."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "wt_" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def rfc3339(unix_seconds: float) -> str:
    """``2026-11-27T03:04:05Z`` for a Unix time (``time.gmtime``: a third of the cost of a
    ``datetime``, twice per delivered webhook)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


MAX_DEPTH = 64  # levels of nesting a payload keeps (an API's metadata or event data)
TOO_DEEP = f"<nested deeper than {MAX_DEPTH} levels>"


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate (a hostile API's ``"\\ud800"``: valid in a JSON
    escape, invalid in UTF-8) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats (NaN, inf: valid metrics, invalid JSON) as strings,
    lone surrogates in strings and keys (valid in a JSON escape, invalid in UTF-8: a strict
    receiver refuses the body, a database the row) replaced by U+FFFD, and anything nested
    deeper than :data:`MAX_DEPTH` replaced by :data:`TOO_DEEP` (a hostile answer must not
    exhaust the recursion of every later walk or encoder)."""
    kind = type(value)
    if kind is str:
        return value if value.isascii() else valid_text(value)
    if kind is int or kind is bool or value is None:
        return value  # the common cases first: a payload holds many of them
    if kind is float or isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if kind is dict or kind is list or isinstance(value, Mapping | list | tuple):
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            return {json_safe(str(k)): json_safe(v, depth + 1) for k, v in value.items()}
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, str):
        return valid_text(value)
    return value


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One fact to report: ``job_id`` went ``previous_status`` -> ``status``, got a
    checkpoint, has its model ready, or the source itself changed state.

    ``job`` is the job as last seen; ``details`` holds the fact-specific fields (a
    checkpoint, an event, the fine-tuned model name, a reason).
    """

    id: str
    type: str
    source: str
    job_id: str | None = None
    status: str | None = None
    previous_status: str | None = None
    occurred_at: int | None = None
    job: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    # Read back from the store, which keeps only what :meth:`to_json` made JSON-safe: its
    # ``data`` need not be walked again (most of a delivery's encoding).
    safe: bool = field(default=False, compare=False, repr=False)

    @property
    def is_status_change(self) -> bool:
        return self.status is not None

    def data(self) -> dict[str, Any]:
        """The ``data`` object of the webhook payload (README.md, "Webhook format")."""
        out: dict[str, Any] = {"source": self.source, "job": dict(self.job)}
        if self.is_status_change:
            out["status"] = self.status
            out["previous_status"] = self.previous_status
        out["occurred_at"] = rfc3339(self.occurred_at) if self.occurred_at is not None else None
        for key, value in self.details.items():
            out.setdefault(key, value)
        return out if self.safe else json_safe(out)

    def payload(self, detected_at: float) -> dict[str, Any]:
        """The full body ``{"type", "timestamp", "data"}``; ``timestamp`` is when it
        happened when known, else when watcher detected it."""
        moment = self.occurred_at if self.occurred_at is not None else detected_at
        return {"type": self.type, "timestamp": rfc3339(moment), "data": self.data()}

    def to_json(self) -> dict[str, Any]:
        return json_safe(  # type: ignore[no-any-return]
            {
                "id": self.id,
                "type": self.type,
                "source": self.source,
                "job_id": self.job_id,
                "status": self.status,
                "previous_status": self.previous_status,
                "occurred_at": self.occurred_at,
                "job": dict(self.job),
                "details": dict(self.details),
            }
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, safe: bool = False) -> Transition:
        """The transition :meth:`to_json` wrote; ``safe``: exactly what it wrote (read back
        from the store), nothing to make JSON-safe again."""
        return cls(
            id=raw["id"],
            type=raw["type"],
            source=raw["source"],
            job_id=raw.get("job_id"),
            status=raw.get("status"),
            previous_status=raw.get("previous_status"),
            occurred_at=raw.get("occurred_at"),
            job=raw.get("job") or {},
            details=raw.get("details") or {},
            safe=safe,
        )


def _about_source(
    type_: str, source: str, spell: float | None, at: float | None, /, **details: Any
) -> Transition:
    """A fact about a source itself, one id per source, type and spell (when it began)."""
    return Transition(
        id=stable_id(source, type_) if spell is None else stable_id(source, type_, spell),
        type=type_,
        source=source,
        occurred_at=int(at) if at is not None else None,
        details=details,
    )


def source_retired(source: str, route: str) -> Transition:
    """``watcher.source.retired``: the source's API answers 410 Gone (reported once)."""
    reason = f"{route} answers 410 Gone: the API was retired"
    return _about_source(types.SOURCE_RETIRED, source, None, None, reason=reason)


def source_unreachable(source: str, since: float, reason: str) -> Transition:
    """``watcher.source.unreachable``: the source has failed every cycle since ``since``."""
    return _about_source(
        types.SOURCE_UNREACHABLE, source, since, since, reason=reason[:500], since=rfc3339(since)
    )


def store_unwritable(replica: str, since: float, reason: str) -> Transition:
    """``watcher.store.unwritable``: the state store has refused every write since
    ``since`` (as ``replica`` sees it): nothing new can be recorded or marked delivered."""
    return _about_source(
        types.STORE_UNWRITABLE,
        "watcher",
        since,
        since,
        reason=reason[:500],
        since=rfc3339(since),
        replica=replica,
    )


def source_degraded(source: str, since: float, reason: str) -> Transition:
    """``watcher.source.degraded``: the source works in a lesser way since ``since`` (its
    event streams refused or failing: polling alone goes on)."""
    return _about_source(
        types.SOURCE_DEGRADED, source, since, since, reason=reason[:500], since=rfc3339(since)
    )


def source_recovered(source: str, since: float, at: float) -> Transition:
    """``watcher.source.recovered``: polling works again after an unreachable spell."""
    return _about_source(
        types.SOURCE_RECOVERED,
        source,
        since,
        at,
        since=rfc3339(since),
        down_seconds=round(at - since),
    )


def action_taken(
    type_: str,
    source: str,
    job_id: str | None,
    *,
    by: str,
    at: float,
    key: str,
    **details: Any,
) -> Transition:
    """``watcher.action.*``: someone (``by``) acted on a job (or on watcher) at ``at``;
    ``key`` tells this action from another of the same kind on the same job (a silence's
    id, the time of a click), so that recording it twice gives one id."""
    return Transition(
        id=stable_id(source, job_id, type_, key),
        type=type_,
        source=source,
        job_id=job_id,
        occurred_at=int(at),
        details={"by": by, **details},
    )
