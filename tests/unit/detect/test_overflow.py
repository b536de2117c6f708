"""At most MAX_PER_JOB transitions per job and cycle (issue 15, item 13): 2,000 events in
one answer give 50 transitions, the latest status among them, the excess counted in one
``grouped`` transition whose id is the same on a re-detection."""

from __future__ import annotations

from typing import Any

from tests.factories import T0, history, raw_job
from watcher.detect.diff import diff
from watcher.detect.overflow import MAX_PER_JOB
from watcher.model import types
from watcher.sources.fine_tuning import KIND, parse_job


def flooded(n_events: int, *steps: str, **extra: Any) -> Any:
    raw = raw_job("job-1", steps[-1], events=history(*steps), modified_at=T0 + 10 * len(steps))
    raw["events"] += [
        {"name": "log", "created_at": T0 + 1 + i % 5, "data": {"line": i}} for i in range(n_events)
    ]
    raw.update(extra)
    return parse_job(raw)


def test_two_thousand_events_give_fifty_transitions_and_the_latest_status() -> None:
    job = flooded(2000, "QUEUED", "RUNNING", "FAILED")
    _, transitions = diff(None, job, source="ft", kind=KIND)

    assert MAX_PER_JOB == len(transitions)
    statuses = [t.status for t in transitions if t.status is not None]
    assert ["QUEUED", "RUNNING", "FAILED"] == statuses
    [grouped] = [t for t in transitions if t.type == f"fine_tuning.job.{types.GROUPED}"]
    assert 2000 + 3 - (MAX_PER_JOB - 1) == grouped.details["grouped"]
    assert {"fine_tuning.job.event": grouped.details["grouped"]} == grouped.details["types"]
    assert types.is_known(grouped.type)


def test_a_re_detection_gives_the_same_ids() -> None:
    job = flooded(500, "QUEUED", "RUNNING")
    first = [t.id for t in diff(None, job, source="ft", kind=KIND)[1]]
    again = [t.id for t in diff(None, job, source="ft", kind=KIND)[1]]
    assert first == again and len(set(first)) == len(first)


def test_a_status_flood_keeps_the_latest_status() -> None:
    steps = ["RUNNING", "QUEUED"] * 200 + ["SUCCESS"]
    job = flooded(0, *steps)
    _, transitions = diff(None, job, source="ft", kind=KIND)
    assert MAX_PER_JOB == len(transitions)
    assert "SUCCESS" == [t.status for t in transitions if t.status is not None][-1]


def test_under_the_cap_nothing_is_grouped() -> None:
    job = flooded(10, "QUEUED", "RUNNING")
    _, transitions = diff(None, job, source="ft", kind=KIND)
    assert 12 == len(transitions)
    assert not any(t.type.endswith(".grouped") for t in transitions)
