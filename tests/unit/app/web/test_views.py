"""How the status page words things: durations, short ids, a source's health, progress and
the loss chart."""

from __future__ import annotations

import pytest

from watcher.app.web import views
from watcher.model.snapshot import Cursor

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "—"), (-5, "0s"), (12.7, "12s"), (250, "4m 10s"), (7500, "2h 5m"), (273600, "3d 4h")],
)
def test_ago(seconds: float | None, shown: str) -> None:
    assert shown == views.ago(seconds)


def test_short_keeps_short_ids_and_cleans_control_characters() -> None:
    assert "ft-1" == views.short("ft-1")
    assert "3b9c1e7a-00…" == views.short("3b9c1e7a-0000-4000-8000-000000000001")
    assert "\x1b" not in views.short("a\x1b[31mb")


def _health(cursor: Cursor | None, kind: str = "mistral-fine-tuning") -> views.SourceHealth:
    return views.source_health("ft", kind, cursor, NOW - 30, "replica-a", NOW)


def test_source_health_reads_the_cursor() -> None:
    assert "not polled yet" == _health(None).state
    assert "ok" == _health(Cursor(baseline_done=True)).state
    assert "retired" == _health(Cursor(baseline_done=True, retired=True)).state
    failing = _health(Cursor(baseline_done=True, failing_since=NOW - 125))
    assert ("failing", "(2m 5s)") == (failing.state, failing.detail[-7:])
    down = Cursor(baseline_done=True, failing_since=NOW - 600, unreachable=True)
    assert "unreachable" == _health(down).state
    assert "degraded" == _health(Cursor(baseline_done=True, degraded_since=NOW - 60)).state
    streams = Cursor(baseline_done=True, streams={"a": 1, "b": 2})
    assert 2 == _health(streams, "mistral-workflows").streams
    assert None is _health(streams).streams
    assert ("replica-a", NOW - 30) == (_health(None).owner, _health(None).last_poll_at)


def test_progress_of_batch_jobs_only() -> None:
    assert "250 / 1000 (25%)" == views.progress({"total_requests": 1000, "completed_requests": 250})
    assert "0 / 0" == views.progress({"total_requests": 0})
    assert None is views.progress({"status": "RUNNING"})


def test_loss_chart_leaves_the_placeholders_out() -> None:
    """Only the one real validation point is drawn: the ``0.0`` placeholders are no data."""
    chart = views.loss_chart({"loss_curve": [[1, 2.0, 0.0], [2, 1.5, 1.7], [3, 1.0, 0.0]]})
    assert chart is not None
    assert ">step</text>" in chart and ">loss</text>" in chart
    assert 1 == chart.count("<circle")  # valid_loss: one point, marked
    assert None is views.loss_chart({"loss_curve": [[1, None, 0.0]]})
    assert None is views.loss_chart({})
