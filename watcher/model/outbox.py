"""What the outbox and the store's other tables hold: a transition routed to its sinks, on its
way to one (:class:`Envelope`), a delivery pending or as the admin views show it, a time
rule's alert, the store's summary. Values only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition


@dataclass(frozen=True)
class Routed:
    """A transition and the sinks its routes reach (possibly none: recorded, not sent).
    ``silenced_by``: the silence that keeps it from them (its deliveries are recorded as
    ``silenced``, never sent)."""

    transition: Transition
    sinks: Sequence[str]
    silenced_by: str | None = None


@dataclass(frozen=True)
class Envelope:
    """A transition on its way to a sink: the fact plus when watcher detected it."""

    transition: Transition
    detected_at: float


@dataclass(frozen=True)
class PendingDelivery:
    """One (transition, sink) not yet accepted by the sink."""

    seq: int
    envelope: Envelope
    sink: str
    attempts: int
    next_attempt_at: float
    created_at: float


@dataclass(frozen=True)
class DeliveryRow:
    """One (transition, sink) as ``watcher deliveries`` shows it."""

    transition_id: str
    type: str
    source: str
    job_id: str | None
    sink: str
    state: str
    attempts: int
    next_attempt_at: float
    created_at: float
    updated_at: float
    last_error: str | None


@dataclass(frozen=True)
class AlertState:
    """A time-rule alert: fired once, repeated ``repeats`` times, resolved or not."""

    id: str
    source: str
    job_id: str
    rule: str
    fired_at: float
    last_sent_at: float
    repeats: int = 0
    resolved_at: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StoreStatus:
    """What ``watcher status`` and the gauges show: jobs by status, cursors, the outbox."""

    jobs_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    last_poll_at: dict[str, float] = field(default_factory=dict)
    pending: int = 0
    dead: int = 0
    delivered: int = 0
    oldest_pending_at: float | None = None
    silenced: int = 0  # deliveries a silence kept from their sink
    silences_active: int = 0
