"""The digest over a scripted day, and the heartbeat."""

from __future__ import annotations

from typing import Any

from tests.factories import T0, job
from watcher.detect.diff import diff
from watcher.detect.digest import digest_transition, heartbeat, summarize
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.sources.fine_tuning import KIND


def change(
    job_id: str,
    previous: str | None,
    status: str,
    at: int,
    *,
    source: str = "ft",
    cost: float | None = None,
    created: int = T0,
) -> tuple[Transition, float]:
    view: dict[str, Any] = {
        "id": job_id,
        "status": status,
        "model": "m",
        "created_at": created,
        "metadata": {"cost": cost, "cost_currency": "EUR"} if cost else {},
    }
    t = Transition(
        id=f"{job_id}-{status}",
        type=f"fine_tuning.job.{status.lower()}",
        source=source,
        job_id=job_id,
        status=status,
        previous_status=previous,
        occurred_at=at,
        job=view,
    )
    return t, float(at)


def test_scripted_day_counts() -> None:
    """Created, started, succeeded, failed, cancelled, running now, cost and slowest jobs."""
    day = [
        change("a", None, "QUEUED", T0 + 10),
        change("a", "QUEUED", "RUNNING", T0 + 20),
        change("a", "RUNNING", "SUCCESS", T0 + 3600, cost=4.5),
        change("b", None, "QUEUED", T0 + 30),
        change("b", "QUEUED", "RUNNING", T0 + 40),
        change("b", "RUNNING", "FAILED", T0 + 7200, cost=1.0),
        change("c", None, "QUEUED", T0 + 50),
        change("c", "QUEUED", "VALIDATING", T0 + 60),
        change("c", "VALIDATING", "FAILED_VALIDATION", T0 + 70),
        change("d", None, "QUEUED", T0 + 80),
        change("d", "QUEUED", "RUNNING", T0 + 90),
        change("d", "RUNNING", "CANCELLATION_REQUESTED", T0 + 100),
        change("d", "CANCELLATION_REQUESTED", "CANCELLED", T0 + 200),
        change("e", None, "QUEUED", T0 + 300),
        change("e", "QUEUED", "RUNNING", T0 + 400),
        change("x", None, "QUEUED", T0 + 10, source="batch"),
    ]
    still, _ = diff(None, job("e", status="RUNNING"), source="ft", kind=KIND)
    summary = summarize(day, {"ft": [still], "batch": []}, start=T0, end=T0 + 86400)
    ft = summary["sources"]["ft"]
    assert {
        "created": 5,
        "started": 4,
        "succeeded": 1,
        "failed": 2,
        "cancelled": 1,
        "running_now": 1,
        "active_now": 1,
        "cost": {"EUR": 5.5},
    } == {k: v for k, v in ft.items() if k != "slowest"}
    assert ["b", "a", "d"] == [s["job_id"] for s in ft["slowest"]]
    assert 7200 == ft["slowest"][0]["duration_seconds"]
    assert 1 == summary["sources"]["batch"]["created"]


def test_one_digest_and_one_heartbeat_per_period() -> None:
    """Ids depend on the period (digest) or the slot (heartbeat) only."""
    summary = summarize([], {}, start=T0, end=T0 + 10)
    assert digest_transition(summary, T0 + 10).id == digest_transition(summary, T0 + 10).id
    assert digest_transition(summary, T0 + 10).id != digest_transition(summary, T0 + 20).id
    cursors = {"ft": Cursor(failing_since=5.0)}
    beat = heartbeat(T0 + 1, 300, cursors, {})
    assert beat.id == heartbeat(T0 + 2, 300, cursors, {}).id
    assert {"ft": {"last_poll_ok": None, "failing": True, "retired": False}} == (
        beat.details["sources"]
    )


def test_fast_jobs_count_as_started_and_string_costs_add_up() -> None:
    """A job that went QUEUED -> SUCCESS between polls was started too; batch metadata
    costs, which are strings, are summed."""
    fast = change("f", "QUEUED", "SUCCESS", T0 + 50)
    fast[0].job["metadata"] = {"cost": "2.5", "cost_currency": "USD"}
    summary = summarize([change("f", None, "QUEUED", T0 + 10), fast], {}, start=T0, end=T0 + 100)
    counts = summary["sources"]["ft"]
    assert (1, 1, {"USD": 2.5}) == (counts["started"], counts["succeeded"], counts["cost"])
