"""What the status page reads from the store in one go per page (:class:`watcher.abc.PageViews`):
plain values, bounded by the query's limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.model.outbox import DeliveryRow
from watcher.model.snapshot import Cursor, Snapshot


@dataclass(frozen=True)
class JobRow:
    """A job as last seen, and when watcher last recorded a change of it (wall time)."""

    snapshot: Snapshot
    updated_at: float


@dataclass(frozen=True)
class Overview:
    """``/``: each source's cursor and last poll, the followed (non-terminal) jobs, the
    latest terminal ones."""

    cursors: dict[str, Cursor] = field(default_factory=dict)
    last_poll_at: dict[str, float] = field(default_factory=dict)
    followed: list[JobRow] = field(default_factory=list)  # at most the limit asked
    followed_total: int = 0  # how many match the filter, shown or not
    recent: list[JobRow] = field(default_factory=list)  # terminal, newest change first


@dataclass(frozen=True)
class TransitionDeliveries:
    """One transition of a job and where it went: (sink, state, attempts, last error,
    updated at) per delivery (none: no route chose it)."""

    transition_id: str
    type: str
    detected_at: float
    deliveries: list[tuple[str, str, int, str | None, float]] = field(default_factory=list)


@dataclass(frozen=True)
class JobHistory:
    """``/jobs/{source}/{job_id}``: the job, and its transitions newest first."""

    job: JobRow | None
    transitions: list[TransitionDeliveries] = field(default_factory=list)


@dataclass(frozen=True)
class SinkHealth:
    """A sink's outbox at a glance."""

    pending: int = 0
    dead: int = 0
    silenced: int = 0
    delivered: int = 0
    last_delivered_at: float | None = None
    last_error: str | None = None  # of its most recent failed attempt still in the outbox


@dataclass(frozen=True)
class DeliveriesView:
    """``/deliveries``: pending (soonest first), dead letters and silenced ones (newest
    first), and each sink's counts."""

    pending: list[DeliveryRow] = field(default_factory=list)
    dead: list[DeliveryRow] = field(default_factory=list)
    silenced: list[DeliveryRow] = field(default_factory=list)
    sinks: dict[str, SinkHealth] = field(default_factory=dict)
