"""From (previous snapshot, current job) to transitions: pure, no I/O, no clock.

``diff(previous, current, kind=..., source=...)`` returns the job's new snapshot and the
transitions between the two, in the order they happened:

- status changes, with intermediate statuses recovered from ``status-updated`` events when
  the job moved several steps between two polls (the job-level ``status`` stays the
  authority: an event ahead of it waits for the next poll);
- new checkpoints (step number and metrics);
- ``fine_tuned_model`` becoming available;
- other new events;

at most :data:`~watcher.detect.overflow.MAX_PER_JOB` of them, the excess grouped into one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.detect.overflow import cap
from watcher.model import types
from watcher.model.jobs import Checkpoint, Event, Job
from watcher.model.snapshot import JobKind, Snapshot
from watcher.model.transitions import Transition, json_safe, stable_id

# Keys the diff adds to a job's view from what only a detailed answer carries.
DERIVED_VIEW_KEYS = frozenset({"loss_curve"})
CURVE_POINTS = 120


def loss_curve(checkpoints: Sequence[Checkpoint]) -> list[list[Any]]:
    """``[step, train_loss, valid_loss]`` per checkpoint, by step, at most CURVE_POINTS (evenly
    thinned, the last kept), JSON-safe: what messages draw training curves from."""
    points = [
        [c.step_number, c.metrics.get("train_loss"), c.metrics.get("valid_loss")]
        for c in sorted(checkpoints, key=lambda c: c.step_number)
    ]
    if len(points) > CURVE_POINTS:
        stride = len(points) / CURVE_POINTS
        points = [points[int(i * stride)] for i in range(CURVE_POINTS - 1)] + [points[-1]]
    return json_safe(points)  # type: ignore[no-any-return]


def same_view(known: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a listed job's view says nothing new (derived keys come from details only)."""
    return {k: v for k, v in known.items() if k not in DERIVED_VIEW_KEYS} == {
        k: v for k, v in current.items() if k not in DERIVED_VIEW_KEYS
    }


def chronological(events: Sequence[Event], status: str | None = None) -> list[Event]:
    """Events oldest first, whichever order the API's era listed them in.

    Mid-2024 answers listed events newest first, 2025 ones oldest first. When the first and
    last events share a second, the job's current ``status`` (the newest one) tells which end
    is the newest; ties keep the orientation of the list.
    """
    ordered = list(events)
    if len(ordered) > 1:
        first, last = ordered[0], ordered[-1]
        if first.created_at > last.created_at:
            ordered.reverse()
        elif first.created_at == last.created_at and status is not None:
            announced = [e.status for e in ordered if e.status is not None]
            if len(announced) > 1 and announced[0] == status and announced[-1] != status:
                ordered.reverse()
    ordered.sort(key=lambda e: e.created_at)  # stable: same-second events keep their order
    return ordered


def fingerprints(events: Sequence[Event]) -> list[str]:
    """A content key per event (events have no id); identical events get an occurrence
    index so that two ``VALIDATED`` events in the same second stay two."""
    seen: Counter[str] = Counter()
    out = []
    for event in events:
        body = json.dumps([event.name, event.created_at, event.data], sort_keys=True, default=str)
        digest = hashlib.sha256(body.encode()).hexdigest()[:20]
        out.append(f"{digest}.{seen[digest]}")
        seen[digest] += 1
    return out


# Ordering of facts that share a second: checkpoints before the status that ends the run.
_RANK_CHECKPOINT, _RANK_STATUS, _RANK_EVENT, _RANK_MODEL = 0, 1, 2, 3


class _Found:
    """The transitions of one diff so far, each with what orders it: (time, rank, order)."""

    def __init__(self, current: Job, *, source: str, kind: JobKind, job: dict[str, Any]) -> None:
        self.current = current
        self.source = source
        self.kind = kind
        self.prefix = kind.prefix
        self.job = job
        self.items: list[tuple[int, int, int, Transition]] = []
        self.last_status_time = 0

    def _add(
        self,
        at: int,
        rank: int,
        id_parts: tuple[object, ...],
        type_: str,
        when: int | None,
        **fields: Any,
    ) -> None:
        transition = Transition(
            id=stable_id(self.source, self.current.id, *id_parts),
            type=type_,
            source=self.source,
            job_id=self.current.id,
            occurred_at=when,
            job=self.job,
            **fields,
        )
        self.items.append((at, rank, len(self.items), transition))

    def status(
        self,
        previous: str | None,
        new: str,
        when: int,
        key: object,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """``previous`` -> ``new`` at ``when``; ``key`` tells this entry from a later one."""
        # Status transitions keep their walk order whatever their timestamps say.
        self.last_status_time = max(self.last_status_time, when)
        type_ = types.status_type(self.prefix, new)
        parts = ("status", previous, new, key)
        self._add(
            self.last_status_time, _RANK_STATUS, parts, type_, when,
            status=new, previous_status=previous, details=dict(details or {}),
        )  # fmt: skip

    def fact(
        self,
        when: int | None,
        rank: int,
        suffix: str,
        id_parts: tuple[object, ...],
        details: Mapping[str, Any],
        prefix: str | None = None,
    ) -> None:
        """A fact of the job (``<prefix>.<suffix>``), at ``when`` or else its modified_at."""
        at = when if when is not None else self.current.modified_at
        type_ = types.job_type(prefix or self.prefix, suffix)
        self._add(at, rank, id_parts, type_, when, details=details)

    def ordered(self) -> list[Transition]:
        return [item[3] for item in sorted(self.items, key=lambda item: item[:3])]


def _view(previous: Snapshot | None, current: Job) -> dict[str, Any]:
    """The job as transitions show it, with the loss curve of its checkpoints."""
    job_view = current.summary()
    if current.checkpoints:
        job_view["loss_curve"] = loss_curve(current.checkpoints)
    elif previous is not None and "loss_curve" in previous.job:
        job_view["loss_curve"] = previous.job["loss_curve"]  # a list item knows none
    return job_view


_Prints = list[tuple[str, Event]]


def _new_events(previous: Snapshot | None, current: Job) -> tuple[set[str], _Prints]:
    """The fingerprints of the events already seen, and the events that are news, oldest
    first."""
    seen_events = set(previous.seen_events) if previous else set()
    events = chronological(current.events or (), current.status)
    prints = fingerprints(events)
    new_events = [(fp, e) for fp, e in zip(prints, events, strict=True) if fp not in seen_events]
    if previous is None:
        return seen_events, new_events
    if not previous.detailed:
        # A snapshot made from a list item knows no events: those up to its last
        # modification are history, not news.
        seen_events.update(fp for fp, e in new_events if e.created_at <= previous.modified_at)
        return seen_events, [(fp, e) for fp, e in new_events if e.created_at > previous.modified_at]
    # When the previous poll took its status from the job-level field because the status's
    # own event had not appeared yet, that event and the ones before it are history arriving
    # late, not news.
    known = [
        e.status
        for fp, e in zip(prints, events, strict=True)
        if fp in previous.seen_events and e.status is not None
    ]
    if known and known[-1] == previous.status:
        return seen_events, new_events
    late = next((i for i, (_, e) in enumerate(new_events) if e.status == previous.status), None)
    if late is None:
        return seen_events, new_events
    seen_events.update(fp for fp, e in new_events[: late + 1] if e.status is not None)
    return seen_events, [
        (fp, e) for i, (fp, e) in enumerate(new_events) if i > late or e.status is None
    ]


def _consumable(new_events: _Prints, current: Job) -> set[int]:
    """Which new status events the walk takes. Those newer than the job's own modified_at are
    ahead of the job-level status (the authority): they wait, unseen, for the poll that
    agrees with them. In the ambiguous same-second case, events after the last one
    announcing the current status wait too."""
    horizon = current.modified_at
    consumable = [
        i for i, (_, e) in enumerate(new_events) if e.status is not None and e.created_at <= horizon
    ]
    agreeing = [i for i in consumable if new_events[i][1].status == current.status]
    if agreeing and all(
        new_events[i][1].created_at == horizon for i in consumable if i > agreeing[-1]
    ):
        consumable = [i for i in consumable if i <= agreeing[-1]]
    return set(consumable)


def _walk(
    found: _Found, previous: Snapshot | None, new_events: _Prints, seen_events: set[str]
) -> int:
    """Status changes (from the events, then the job-level status) and other new events
    into ``found``; returns since when the job is in its current status."""
    current = found.current
    take = _consumable(new_events, current)
    walked = previous.status if previous else None
    status_since = previous.status_since if previous else current.created_at
    for index, (fp, event) in enumerate(new_events):
        status = event.status
        if status is None:
            seen_events.add(fp)
            if event.name != "status-updated":
                event_details = {"name": event.name, "created_at": event.created_at,
                                 "data": event.data}  # fmt: skip
                found.fact(
                    event.created_at, _RANK_EVENT, types.EVENT, ("event", fp),
                    {"event": event_details},
                )  # fmt: skip
            continue
        if index not in take:
            continue
        seen_events.add(fp)
        if status == walked:
            continue
        found.status(walked, status, event.created_at, fp)
        walked = status
        status_since = event.created_at
    if current.status != walked:
        # Entered without (or before) its own event: modified_at is the best time known.
        details = found.kind.status_details(current, current.status)
        found.status(walked, current.status, current.modified_at, current.modified_at, details)
        status_since = current.modified_at
    return status_since


def _checkpoints(found: _Found, previous: Snapshot | None) -> set[int]:
    """New checkpoints into ``found``; returns the step numbers now seen."""
    seen_checkpoints = set(previous.seen_checkpoints) if previous else set()
    for checkpoint in sorted(found.current.checkpoints or (), key=lambda c: c.step_number):
        if checkpoint.step_number in seen_checkpoints:
            continue
        seen_checkpoints.add(checkpoint.step_number)
        if (
            previous is not None
            and not previous.detailed
            and (checkpoint.created_at is None or checkpoint.created_at <= previous.modified_at)
        ):
            continue  # a snapshot from a list item knew no checkpoints: history, not news
        checkpoint_details = {"step_number": checkpoint.step_number,
                              "created_at": checkpoint.created_at,
                              "metrics": dict(checkpoint.metrics)}  # fmt: skip
        found.fact(
            checkpoint.created_at,
            _RANK_CHECKPOINT,
            types.CHECKPOINT,
            ("checkpoint", checkpoint.step_number),
            {"checkpoint": checkpoint_details},
        )
    return seen_checkpoints


def _model_ready(found: _Found, previous: Snapshot | None) -> None:
    model = found.current.fine_tuned_model
    if model and model != (previous.fine_tuned_model if previous else None):
        found.fact(
            found.current.modified_at,
            _RANK_MODEL,
            types.MODEL_READY,
            ("model", model),
            {"fine_tuned_model": model},
        )


def _family_facts(found: _Found, previous: Snapshot | None, kind: JobKind) -> None:
    for fact in kind.facts(previous, found.current):
        # A fact with its own time happened before a status of the same second (an
        # activity's retries before the failure they led to); one without follows it.
        rank = _RANK_CHECKPOINT if fact.occurred_at is not None else _RANK_EVENT
        found.fact(
            fact.occurred_at,
            rank,
            fact.type,
            ("fact", *(fact.ident if fact.ident is not None else (fact.type, *fact.key))),
            dict(fact.details),
            fact.prefix,
        )


def diff(
    previous: Snapshot | None, current: Job, *, source: str, kind: JobKind
) -> tuple[Snapshot, list[Transition]]:
    """The new snapshot of ``current`` and the transitions since ``previous``.

    ``previous`` is ``None`` for a job never seen before: each status it passed through is
    reported, the first with ``previous_status=None``.
    """
    job_view = _view(previous, current)
    found = _Found(current, source=source, kind=kind, job=job_view)
    seen_events, new_events = _new_events(previous, current)
    status_since = _walk(found, previous, new_events, seen_events)
    seen_checkpoints = _checkpoints(found, previous)
    _model_ready(found, previous)
    _family_facts(found, previous, kind)
    snapshot = Snapshot(
        source=source,
        job_id=current.id,
        status=current.status,
        created_at=current.created_at,
        modified_at=current.modified_at,
        status_since=status_since,
        terminal=current.status.upper() in kind.terminal,
        job=job_view,
        fine_tuned_model=current.fine_tuned_model
        or (previous.fine_tuned_model if previous else None),
        detailed=(previous.detailed if previous else False) or current.detailed,
        seen_events=frozenset(seen_events),
        seen_checkpoints=frozenset(seen_checkpoints),
        marks=previous.marks if previous else {},
    )
    # At most MAX_PER_JOB transitions: the excess of a flooding answer is grouped.
    transitions = cap(
        found.ordered(), source=source, job_id=current.id, prefix=kind.prefix, job=job_view
    )
    return snapshot, transitions
