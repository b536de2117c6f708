"""At most :data:`MAX_PER_JOB` transitions per job and cycle: the excess becomes one
``<prefix>.grouped`` transition that counts it.

One answer of a hostile or broken API may carry 2,000 events for one job: 2,000
transitions each holding the job, 200 MB of database and a flood for every sink. What
matters is kept first: the job's latest status change (what pages and resolves), its
model becoming ready and its other status changes, then the families' facts, then
checkpoints, then other events, each earliest first. What does not fit is counted, by
type, in one transition placed where the last of it happened.

Deterministic: the same diff gives the same transitions, the grouped one's id derived from
the ids it stands for, so a re-detection after a crash is deduplicated like any other.
Pure, no I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from watcher.model import types
from watcher.model.transitions import Transition, rfc3339, stable_id

MAX_PER_JOB = 50  # transitions one job yields in one cycle, the grouped one included

_LATEST_STATUS, _STATUS, _FACT, _CHECKPOINT, _EVENT = range(5)


def _rank(transition: Transition, latest: Transition | None) -> int:
    """How much ``transition`` matters here: lower is kept first."""
    if transition is latest:
        return _LATEST_STATUS
    if transition.status is not None or transition.type.endswith("." + types.MODEL_READY):
        return _STATUS
    if transition.type.endswith("." + types.CHECKPOINT):
        return _CHECKPOINT
    if transition.type.endswith("." + types.EVENT):
        return _EVENT
    return _FACT


def cap(
    transitions: Sequence[Transition],
    *,
    source: str,
    job_id: str,
    prefix: str,
    job: Mapping[str, Any],
    limit: int = MAX_PER_JOB,
) -> list[Transition]:
    """``transitions`` (in order) when there are at most ``limit``; else the ``limit - 1``
    that matter most, in their order, and one ``<prefix>.grouped`` transition counting the
    rest (``details.grouped``: how many, ``details.types``: how many of each type)."""
    if len(transitions) <= limit:
        return list(transitions)
    latest = next((t for t in reversed(transitions) if t.status is not None), None)
    ranked = sorted(range(len(transitions)), key=lambda i: (_rank(transitions[i], latest), i))
    kept = set(ranked[: limit - 1])
    dropped = [t for i, t in enumerate(transitions) if i not in kept]
    grouped = _grouped(dropped, limit, source=source, job_id=job_id, prefix=prefix, job=job)
    last_dropped = max(i for i in range(len(transitions)) if i not in kept)
    out: list[Transition] = []
    for index, transition in enumerate(transitions):
        if index in kept:
            out.append(transition)
        if index == last_dropped:
            out.append(grouped)
    return out


def _grouped(
    dropped: Sequence[Transition],
    limit: int,
    *,
    source: str,
    job_id: str,
    prefix: str,
    job: Mapping[str, Any],
) -> Transition:
    counts = Counter(t.type for t in dropped)
    times = [t.occurred_at for t in dropped if t.occurred_at is not None]
    digest = hashlib.sha256("\n".join(t.id for t in dropped).encode()).hexdigest()[:32]
    details: dict[str, Any] = {
        "grouped": len(dropped),
        "types": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        "reason": f"more than {limit} facts about one job in one cycle",
    }
    if times:
        details["first_occurred_at"] = rfc3339(min(times))
        details["last_occurred_at"] = rfc3339(max(times))
    return Transition(
        id=stable_id(source, job_id, types.GROUPED, digest),
        type=types.job_type(prefix, types.GROUPED),
        source=source,
        job_id=job_id,
        occurred_at=max(times) if times else None,
        job=job,
        details=details,
    )
