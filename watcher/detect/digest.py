"""The daily digest and the heartbeat: summaries watcher sends about itself. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import types
from watcher.model.snapshot import Cursor, Snapshot
from watcher.model.statuses import CANCELLED, FAILED, SUCCEEDED
from watcher.model.transitions import Transition, rfc3339, stable_id

ENDED = SUCCEEDED | FAILED | CANCELLED


def _cost(job: Mapping[str, Any]) -> tuple[float, str] | None:
    metadata = job.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    cost = metadata.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float | str):
        return None
    try:
        value = float(cost)  # batch metadata values are strings
    except ValueError:
        return None
    return (value, str(metadata.get("cost_currency") or "?")) if value == value else None


def summarize(
    found: Sequence[tuple[Transition, float]],
    active: Mapping[str, Sequence[Snapshot]],
    *,
    start: float,
    end: float,
    slowest: int = 3,
) -> dict[str, Any]:
    """Per source, over the transitions detected in ``[start, end)``: jobs created, started,
    succeeded, failed (incl. FAILED_VALIDATION and TIMEOUT_EXCEEDED), cancelled; jobs still
    running now; the cost of the jobs that ended; the slowest of them."""
    per: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    ended: dict[str, dict[str, tuple[Transition, int]]] = defaultdict(dict)
    for transition, _ in found:
        job_id, status = transition.job_id, transition.status
        if job_id is None or status is None:
            continue
        buckets = per[transition.source]
        if transition.previous_status is None:
            buckets["created"].add(job_id)
        upper = status.upper()
        if upper == "RUNNING" or (upper in SUCCEEDED and transition.previous_status != "RUNNING"):
            buckets["started"].add(job_id)  # a fast job may skip RUNNING between two polls
        for name, statuses in (
            ("succeeded", SUCCEEDED),
            ("failed", FAILED),
            ("cancelled", CANCELLED),
        ):
            if upper in statuses:
                buckets[name].add(job_id)
        if upper in ENDED:
            at = transition.occurred_at or int(end)
            ended[transition.source][job_id] = (transition, at)
    sources: dict[str, Any] = {}
    for source in sorted(set(per) | set(active)):
        buckets = per.get(source, {})
        costs: dict[str, float] = defaultdict(float)
        durations: list[dict[str, Any]] = []
        for transition, at in ended.get(source, {}).values():
            cost = _cost(transition.job)
            if cost is not None:
                costs[cost[1]] += cost[0]
            created = transition.job.get("created_at")
            if isinstance(created, int):
                durations.append(
                    {
                        "job_id": transition.job_id,
                        "status": transition.status,
                        "model": transition.job.get("model"),
                        "duration_seconds": max(0, at - created),
                    }
                )
        durations.sort(key=lambda d: -int(d["duration_seconds"]))
        snapshots = active.get(source, ())
        sources[source] = {
            "created": len(buckets.get("created", ())),
            "started": len(buckets.get("started", ())),
            "succeeded": len(buckets.get("succeeded", ())),
            "failed": len(buckets.get("failed", ())),
            "cancelled": len(buckets.get("cancelled", ())),
            "running_now": sum(1 for s in snapshots if s.status.upper() == "RUNNING"),
            "active_now": len(snapshots),
            "cost": {currency: round(total, 4) for currency, total in sorted(costs.items())},
            "slowest": durations[:slowest],
        }
    return {"from": rfc3339(start), "to": rfc3339(end), "sources": sources}


def digest_transition(summary: Mapping[str, Any], end: float) -> Transition:
    """``watcher.digest`` for the period ending at ``end`` (one id per period)."""
    return Transition(
        id=stable_id(types.DIGEST, int(end)),
        type=types.DIGEST,
        source="watcher",
        occurred_at=int(end),
        details={"digest": dict(summary)},
    )


def heartbeat(
    now: float, interval: float, cursors: Mapping[str, Cursor], last_ok: Mapping[str, float]
) -> Transition:
    """``watcher.heartbeat`` for the current ``interval`` slot (one id per slot)."""
    slot = int(now // interval)
    return Transition(
        id=stable_id(types.HEARTBEAT, slot),
        type=types.HEARTBEAT,
        source="watcher",
        occurred_at=int(now),
        details={
            "sources": {
                name: {
                    "last_poll_ok": rfc3339(last_ok[name]) if name in last_ok else None,
                    "failing": cursor.failing_since is not None,
                    "retired": cursor.retired,
                }
                for name, cursor in sorted(cursors.items())
            }
        },
    )
