"""From (previous snapshot, current job) to transitions: pure, no I/O, no clock.

``diff(previous, current, kind=..., source=...)`` returns the job's new snapshot and the
transitions between the two, in the order they happened:

- status changes, with intermediate statuses recovered from ``status-updated`` events when
  the job moved several steps between two polls (the job-level ``status`` stays the
  authority: an event ahead of it waits for the next poll);
- new checkpoints (step number and metrics);
- ``fine_tuned_model`` becoming available;
- other new events.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model.jobs import Checkpoint, Event, Job
from watcher.model.snapshot import JobKind, Snapshot
from watcher.model.transitions import Transition, json_safe, stable_id, status_slug

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


def diff(
    previous: Snapshot | None, current: Job, *, source: str, kind: JobKind
) -> tuple[Snapshot, list[Transition]]:
    """The new snapshot of ``current`` and the transitions since ``previous``.

    ``previous`` is ``None`` for a job never seen before: each status it passed through is
    reported, the first with ``previous_status=None``.
    """
    job_view = current.summary()
    if current.checkpoints:
        job_view["loss_curve"] = loss_curve(current.checkpoints)
    elif previous is not None and "loss_curve" in previous.job:
        job_view["loss_curve"] = previous.job["loss_curve"]  # a list item knows none
    found: list[tuple[int, int, int, Transition]] = []  # (time, rank, order, transition)

    def add(when: int | None, rank: int, transition: Transition) -> None:
        found.append(
            (when if when is not None else current.modified_at, rank, len(found), transition)
        )

    def status_change(prev: str | None, new: str, when: int, key: object) -> Transition:
        return Transition(
            id=stable_id(source, current.id, "status", prev, new, key),
            type=f"{kind.prefix}.{status_slug(new)}",
            source=source,
            job_id=current.id,
            status=new,
            previous_status=prev,
            occurred_at=when,
            job=job_view,
        )

    def job_fact(
        when: int | None,
        rank: int,
        suffix: str,
        id_parts: tuple[object, ...],
        details: Mapping[str, Any],
    ) -> None:
        add(when, rank, Transition(
            id=stable_id(source, current.id, *id_parts),
            type=f"{kind.prefix}.{suffix}",
            source=source,
            job_id=current.id,
            occurred_at=when,
            job=job_view,
            details=details,
        ))  # fmt: skip

    last_status_time = [0]

    def status_time(when: int) -> int:
        # Status transitions keep their walk order whatever their timestamps say.
        last_status_time[0] = max(last_status_time[0], when)
        return last_status_time[0]

    seen_events = set(previous.seen_events) if previous else set()
    events = chronological(current.events or (), current.status)
    prints = fingerprints(events)
    new_events = [(fp, e) for fp, e in zip(prints, events, strict=True) if fp not in seen_events]
    if previous is not None and not previous.detailed:
        # A snapshot made from a list item knows no events: those up to its last
        # modification are history, not news.
        seen_events.update(fp for fp, e in new_events if e.created_at <= previous.modified_at)
        new_events = [(fp, e) for fp, e in new_events if e.created_at > previous.modified_at]

    if previous is not None and previous.detailed:
        # When the previous poll took its status from the job-level field because the
        # status's own event had not appeared yet, that event and the ones before it are
        # history arriving late, not news.
        known = [
            e.status
            for fp, e in zip(prints, events, strict=True)
            if fp in previous.seen_events and e.status is not None
        ]
        if not known or known[-1] != previous.status:
            late = next(
                (i for i, (_, e) in enumerate(new_events) if e.status == previous.status), None
            )
            if late is not None:
                for fp, e in new_events[: late + 1]:
                    if e.status is not None:
                        seen_events.add(fp)
                new_events = [
                    (fp, e) for i, (fp, e) in enumerate(new_events) if i > late or e.status is None
                ]

    # Status events newer than the job's own modified_at are ahead of the job-level status
    # (the authority): they wait, unseen, for the poll that agrees with them. In the
    # ambiguous same-second case, events after the last one announcing the current status
    # wait too.
    horizon = current.modified_at
    consumable = [
        i for i, (_, e) in enumerate(new_events) if e.status is not None and e.created_at <= horizon
    ]
    agreeing = [i for i in consumable if new_events[i][1].status == current.status]
    if agreeing and all(
        new_events[i][1].created_at == horizon for i in consumable if i > agreeing[-1]
    ):
        consumable = [i for i in consumable if i <= agreeing[-1]]
    take = set(consumable)

    walked = previous.status if previous else None
    status_since = previous.status_since if previous else current.created_at
    for index, (fp, event) in enumerate(new_events):
        status = event.status
        if status is None:
            seen_events.add(fp)
            if event.name != "status-updated":
                event_details = {"name": event.name, "created_at": event.created_at,
                                 "data": event.data}  # fmt: skip
                job_fact(
                    event.created_at, _RANK_EVENT, "event", ("event", fp), {"event": event_details}
                )
            continue
        if index not in take:
            continue
        seen_events.add(fp)
        if status == walked:
            continue
        add(
            status_time(event.created_at),
            _RANK_STATUS,
            status_change(walked, status, event.created_at, fp),
        )
        walked = status
        status_since = event.created_at
    if current.status != walked:
        # Entered without (or before) its own event: modified_at is the best time known.
        when = current.modified_at
        add(
            status_time(when),
            _RANK_STATUS,
            status_change(walked, current.status, when, current.modified_at),
        )
        status_since = when

    seen_checkpoints = set(previous.seen_checkpoints) if previous else set()
    for checkpoint in sorted(current.checkpoints or (), key=lambda c: c.step_number):
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
        job_fact(
            checkpoint.created_at,
            _RANK_CHECKPOINT,
            "checkpoint",
            ("checkpoint", checkpoint.step_number),
            {"checkpoint": checkpoint_details},
        )

    model = current.fine_tuned_model
    known_model = previous.fine_tuned_model if previous else None
    if model and model != known_model:
        job_fact(
            current.modified_at,
            _RANK_MODEL,
            "model_ready",
            ("model", model),
            {"fine_tuned_model": model},
        )

    for fact in kind.facts(previous, current):
        job_fact(
            fact.occurred_at,
            _RANK_EVENT,
            fact.type,
            ("fact", fact.type, *fact.key),
            dict(fact.details),
        )

    found.sort(key=lambda item: item[:3])
    snapshot = Snapshot(
        source=source,
        job_id=current.id,
        status=current.status,
        created_at=current.created_at,
        modified_at=current.modified_at,
        status_since=status_since,
        terminal=current.status.upper() in kind.terminal,
        job=job_view,
        fine_tuned_model=model or known_model,
        detailed=(previous.detailed if previous else False) or current.detailed,
        seen_events=frozenset(seen_events),
        seen_checkpoints=frozenset(seen_checkpoints),
        marks=previous.marks if previous else {},
    )
    return snapshot, [item[3] for item in found]
