"""What watcher remembers of a job (:class:`Snapshot`) and what differs between job
families (:class:`JobKind`, :class:`Fact`): the values the diff, the stores and the sources
share."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.model.jobs import Job
from watcher.model.transitions import json_safe


@dataclass(frozen=True)
class Fact:
    """A source-specific fact about a job (a progress milestone, rising errors): reported
    once, under the id derived from ``key``."""

    key: tuple[str | int | float, ...]
    type: str  # appended to the kind's prefix: ``batch.job.progress``
    occurred_at: int | None
    details: Mapping[str, Any]
    prefix: str | None = None  # another prefix than the kind's (``workflow.activity``)
    # What the id is derived from, when not (type, *key): two facts that tell of one change
    # in different words (a continue-as-new seen on the stream, or by a poll) share it.
    ident: tuple[str | int | float, ...] | None = None


def _no_facts(previous: Snapshot | None, current: Job) -> Sequence[Fact]:
    return ()


def _no_details(current: Job, status: str) -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class JobKind:
    """What differs between job families: the type prefix, the terminal statuses, and the
    family's own facts (computed from the previous snapshot and the current job)."""

    prefix: str
    terminal: frozenset[str]
    facts: Callable[[Snapshot | None, Job], Sequence[Fact]] = _no_facts
    # What a status transition to ``status`` says besides the status (``failure``: why).
    status_details: Callable[[Job, str], Mapping[str, Any]] = _no_details


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The last state of a job that watcher has seen (persisted by the store)."""

    source: str
    job_id: str
    status: str
    created_at: int
    modified_at: int
    status_since: int
    terminal: bool
    job: dict[str, Any]
    fine_tuned_model: str | None = None
    detailed: bool = False
    seen_events: frozenset[str] = field(default_factory=frozenset)
    seen_checkpoints: frozenset[int] = field(default_factory=frozenset)
    marks: Mapping[str, Any] = field(default_factory=dict)  # what rules remember of the job

    def to_json(self) -> dict[str, Any]:
        """The stored form: JSON-safe (a NaN or an infinity in a job's metadata is a string
        here: PostgreSQL's json refuses the bare tokens, and one such value must not make
        every commit of the source fail)."""
        stored: dict[str, Any] = json_safe(
            {
                "status": self.status,
                "created_at": self.created_at,
                "modified_at": self.modified_at,
                "status_since": self.status_since,
                "job": self.job,
                "fine_tuned_model": self.fine_tuned_model,
                "detailed": self.detailed,
                "seen_events": sorted(self.seen_events),
                "seen_checkpoints": sorted(self.seen_checkpoints),
                "marks": dict(self.marks),
            }
        )
        return stored

    def as_stored(self) -> Snapshot:
        """This snapshot as a store gives it back: through its JSON form (what a diff
        against it finds must not depend on whether it was read back or kept in memory)."""
        raw = json.loads(json.dumps(self.to_json()))
        return Snapshot.from_json(self.source, self.job_id, raw, terminal=self.terminal)

    @classmethod
    def from_json(
        cls, source: str, job_id: str, raw: dict[str, Any], *, terminal: bool
    ) -> Snapshot:
        return cls(
            source=source,
            job_id=job_id,
            status=raw["status"],
            created_at=raw["created_at"],
            modified_at=raw["modified_at"],
            status_since=raw.get("status_since", raw["modified_at"]),
            terminal=terminal,
            job=raw.get("job", {}),
            fine_tuned_model=raw.get("fine_tuned_model"),
            detailed=raw.get("detailed", False),
            seen_events=frozenset(raw.get("seen_events", ())),
            seen_checkpoints=frozenset(raw.get("seen_checkpoints", ())),
            marks=raw.get("marks") or {},
        )


@dataclass(frozen=True)
class Cursor:
    """Per-source polling state, committed together with the snapshots."""

    watermark: int | None = None  # newest created_at seen (server time, Unix seconds)
    last_full_sync: float | None = None  # local time of the last full listing
    baseline_done: bool = False  # the first poll has happened (silently or not)
    baseline_at: float | None = None  # local time of that first poll, when it was silent
    retired: bool = False  # the API answered 410 Gone
    failing_since: float | None = None  # local time of the first failed cycle in a row
    unreachable: bool = False  # watcher.source.unreachable was reported for that failure
    # Event streams followed: stream key (e.g. a root execution id) -> the last
    # ``broker_sequence`` whose news is committed with this cursor (resume at + 1).
    streams: Mapping[str, int] = field(default_factory=dict)
    degraded_since: float | None = None  # local time watcher.source.degraded was reported
    # The store's row version this cursor was read at (not part of the state itself): a
    # commit made from it is refused if another replica committed the source since.
    version: int = field(default=0, compare=False)
