"""The diff: (previous snapshot, current job) -> transitions, pure."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import T0, history, job, raw_job
from watcher.detect.diff import chronological, diff
from watcher.model.jobs import Job
from watcher.model.snapshot import Snapshot
from watcher.model.statuses import FINE_TUNING_STATUSES as STATUSES
from watcher.model.transitions import Transition
from watcher.sources.fine_tuning import KIND, parse_job


def seen(current: Job, previous: Snapshot | None = None) -> tuple[Snapshot, list[Transition]]:
    return diff(previous, current, source="ft", kind=KIND)


def steps(transitions: list[Transition]) -> list[tuple[str | None, str | None]]:
    return [(t.previous_status, t.status) for t in transitions if t.is_status_change]


def baseline(current: Job) -> Snapshot:
    snapshot, _ = seen(current)
    return snapshot


RUN = history("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            None,
            job(status="QUEUED", events=history("QUEUED")),
            [(None, "QUEUED")],
            id="first sight",
        ),
        pytest.param(
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            [],
            id="no change",
        ),
        pytest.param(
            job(status="QUEUED", events=history("QUEUED")),
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            [("QUEUED", "VALIDATING"), ("VALIDATING", "VALIDATED"), ("VALIDATED", "RUNNING")],
            id="several steps between two polls are recovered in order",
        ),
        pytest.param(
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            job(status="FAILED", events=RUN, modified_at=T0 + 50),
            [("RUNNING", "FAILED")],
            id="status change without an event uses the job-level status",
        ),
        pytest.param(
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            job(status="SUCCESS", events=[*RUN, ("SUCCESS", T0 + 40)], modified_at=T0 + 40),
            [("RUNNING", "SUCCESS")],
            id="one step with its event",
        ),
        pytest.param(
            None,
            job(status="RUNNING", events=list(reversed(RUN)), modified_at=T0 + 30),
            [
                (None, "QUEUED"),
                ("QUEUED", "VALIDATING"),
                ("VALIDATING", "VALIDATED"),
                ("VALIDATED", "RUNNING"),
            ],
            id="newest-first events (2024 era) are put in order",
        ),
        pytest.param(
            job(status="QUEUED", events=history("QUEUED")),
            job(
                status="QUEUED",
                events=history("QUEUED", "VALIDATING", "VALIDATED", "QUEUED"),
                modified_at=T0 + 30,
            ),
            [("QUEUED", "VALIDATING"), ("VALIDATING", "VALIDATED"), ("VALIDATED", "QUEUED")],
            id="back to the same status between two polls",
        ),
        pytest.param(
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            job(status="RUNNING", events=[*RUN, ("SUCCESS", T0 + 40)], modified_at=T0 + 30),
            [],
            id="an event ahead of the job-level status waits",
        ),
        pytest.param(
            job(status="RUNNING", events=RUN, modified_at=T0 + 30),
            job(status="PAUSED", events=[*RUN, ("PAUSED", T0 + 40)], modified_at=T0 + 40),
            [("RUNNING", "PAUSED")],
            id="unknown status kept raw",
        ),
        pytest.param(
            job(status="RUNNING", modified_at=T0 + 30),
            job(status="SUCCESS", events=[*RUN, ("SUCCESS", T0 + 40)], modified_at=T0 + 40),
            [("RUNNING", "SUCCESS")],
            id="a snapshot from a list item treats old events as history",
        ),
        pytest.param(
            job(status="RUNNING", events=history("QUEUED", "VALIDATING"), modified_at=T0 + 30),
            job(status="SUCCESS", events=[*RUN, ("SUCCESS", T0 + 40)], modified_at=T0 + 40),
            [("RUNNING", "SUCCESS")],
            id="lagging events already covered by the job-level status are not repeated",
        ),
    ],
)
def test_status_steps(
    before: Job | None, after: Job, expected: list[tuple[str | None, str | None]]
) -> None:
    """Status transitions follow the events, in order, without duplicates."""
    previous = baseline(before) if before is not None else None
    _, transitions = seen(after, previous)
    assert expected == steps(transitions)


def test_types_are_lowercase_dotted() -> None:
    """Types are ``fine_tuning.job.<status>``, unknown statuses included."""
    previous = baseline(job(status="RUNNING", events=RUN, modified_at=T0 + 30))
    _, out = seen(job(status="CANCELLATION_REQUESTED", modified_at=T0 + 40), previous)
    assert ["fine_tuning.job.cancellation_requested"] == [t.type for t in out]
    _, out = seen(job(status="weird status!", modified_at=T0 + 40), previous)
    assert ["fine_tuning.job.weird_status"] == [t.type for t in out]
    assert "weird status!" == out[0].status


def test_new_checkpoints_with_metrics() -> None:
    """New checkpoints are reported once each, by step, with their metrics."""
    metrics = {"train_loss": 1.2, "valid_loss": 0.0, "valid_mean_token_accuracy": 0.0}
    first = job(
        status="RUNNING", events=RUN, modified_at=T0 + 30, checkpoints=[(1, T0 + 31, metrics)]
    )
    previous = baseline(first)
    later = job(
        status="RUNNING",
        events=RUN,
        modified_at=T0 + 30,
        checkpoints=[(3, T0 + 33, metrics), (2, T0 + 32, metrics), (1, T0 + 31, metrics)],
    )
    _, out = seen(later, previous)
    assert [2, 3] == [t.details["checkpoint"]["step_number"] for t in out]
    assert {"fine_tuning.job.checkpoint"} == {t.type for t in out}
    assert metrics == out[0].details["checkpoint"]["metrics"]


def test_model_ready_after_success() -> None:
    """``fine_tuned_model`` becoming available is reported once, after the status."""
    previous = baseline(job(status="RUNNING", events=RUN, modified_at=T0 + 30))
    done = job(
        status="SUCCESS",
        events=[*RUN, ("SUCCESS", T0 + 40)],
        modified_at=T0 + 40,
        fine_tuned_model="ft:open-mistral-7b:x:20261127:abcd",
    )
    snapshot, out = seen(done, previous)
    assert ["fine_tuning.job.success", "fine_tuning.job.model_ready"] == [t.type for t in out]
    assert "ft:open-mistral-7b:x:20261127:abcd" == out[1].details["fine_tuned_model"]
    assert [] == seen(done, snapshot)[1]


def test_other_events_are_reported() -> None:
    """Events other than ``status-updated`` are reported; data-less status events are not."""
    raw = raw_job(status="RUNNING", events=RUN, modified_at=T0 + 30)
    previous = baseline(parse_job(raw))
    raw["events"] += [
        {"name": "status-updated", "created_at": T0 + 35},
        {"name": "dataset-warning", "created_at": T0 + 36, "data": {"rows": 3}},
    ]
    _, out = seen(parse_job(raw), previous)
    assert ["fine_tuning.job.event"] == [t.type for t in out]
    assert {"name": "dataset-warning", "created_at": T0 + 36, "data": {"rows": 3}} == (
        out[0].details["event"]
    )


def test_ids_are_stable_and_distinct() -> None:
    """The same facts give the same ids; different facts give different ids."""
    before = baseline(job(status="QUEUED", events=history("QUEUED")))
    after = job(
        status="QUEUED",
        events=history("QUEUED", "VALIDATED", "QUEUED", "VALIDATED", "QUEUED"),
        modified_at=T0 + 40,
    )
    first = seen(after, before)[1]
    again = seen(after, before)[1]
    assert [t.id for t in first] == [t.id for t in again]
    assert len({t.id for t in first}) == len(first) == 4


def test_same_second_twins_stay_distinct() -> None:
    """Two identical status events in the same second are two facts."""
    before = baseline(job(status="QUEUED", events=[("QUEUED", T0)]))
    twins = [
        ("QUEUED", T0),
        ("VALIDATED", T0 + 1),
        ("QUEUED", T0 + 1),
        ("VALIDATED", T0 + 1),
        ("QUEUED", T0 + 1),
    ]
    _, out = seen(job(status="QUEUED", events=twins, modified_at=T0 + 1), before)
    assert 4 == len({t.id for t in out})


def test_new_job_reports_each_status_in_order() -> None:
    """A job first seen after the baseline reports each status it passed, first with null."""
    _, out = seen(job(status="FAILED", events=[*RUN, ("FAILED", T0 + 40)], modified_at=T0 + 40))
    assert [
        (None, "QUEUED"),
        ("QUEUED", "VALIDATING"),
        ("VALIDATING", "VALIDATED"),
        ("VALIDATED", "RUNNING"),
        ("RUNNING", "FAILED"),
    ] == steps(out)


def test_payload_follows_the_contract() -> None:
    """``data`` carries source, job, status, previous_status and occurred_at (RFC 3339)."""
    previous = baseline(job(status="RUNNING", events=RUN, modified_at=T0 + 30))
    _, out = seen(
        job(status="FAILED", events=[*RUN, ("FAILED", T0 + 40)], modified_at=T0 + 40), previous
    )
    body = out[0].payload(detected_at=T0 + 45)
    assert "fine_tuning.job.failed" == body["type"]
    assert "2025-06-27T07:40:40Z" == body["data"]["occurred_at"]
    assert body["timestamp"] == body["data"]["occurred_at"]
    assert ("RUNNING", "FAILED", "ft") == (
        body["data"]["previous_status"],
        body["data"]["status"],
        body["data"]["source"],
    )
    assert {
        "id",
        "status",
        "model",
        "job_type",
        "suffix",
        "fine_tuned_model",
        "created_at",
        "modified_at",
    } <= set(body["data"]["job"])


def test_nan_metrics_stay_valid_json() -> None:
    """A NaN loss is kept, as a string, so that the payload stays valid JSON."""
    import json

    current = job(status="RUNNING", events=RUN, checkpoints=[(1, T0, {"train_loss": "NaN"})])
    _, out = seen(current)
    check = next(t for t in out if t.type.endswith("checkpoint"))
    assert (
        "NaN"
        == json.loads(json.dumps(check.payload(0), allow_nan=False))["data"]["checkpoint"][
            "metrics"
        ]["train_loss"]
    )


def test_snapshot_round_trips_through_json() -> None:
    """A snapshot read back from the store equals the one written."""
    snapshot = baseline(job(status="RUNNING", events=RUN, checkpoints=[(1, T0, {})]))
    again = Snapshot.from_json("ft", snapshot.job_id, snapshot.to_json(), terminal=False)
    assert snapshot == again


def test_chronological_keeps_same_second_order() -> None:
    """Same-second events keep the list's orientation."""
    events = job(
        status="RUNNING", events=[("RUNNING", T0 + 5), ("VALIDATED", T0 + 5), ("QUEUED", T0)]
    ).events
    assert events is not None
    assert ["QUEUED", "VALIDATED", "RUNNING"] == [e.status for e in chronological(events)]


# --- properties ---------------------------------------------------------------------------

statuses = st.sampled_from([*STATUSES, "PAUSED"])


@st.composite
def jobs(draw: Any) -> Job:
    path = draw(st.lists(statuses, min_size=1, max_size=8))
    times = sorted(draw(st.lists(st.integers(T0, T0 + 50), min_size=len(path), max_size=len(path))))
    newest_first = draw(st.booleans())
    events = list(zip(path, times, strict=True))
    if newest_first:
        events.reverse()
    steps_ = draw(st.lists(st.integers(1, 40), unique=True, max_size=6))
    return job(
        status=path[-1],
        events=events,
        modified_at=times[-1],
        checkpoints=[(s, T0 + s, {"train_loss": 1.0 / s}) for s in steps_],
        fine_tuned_model=draw(st.none() | st.just("ft:model")),
    )


@given(jobs())
@settings(max_examples=200, deadline=None)
def test_self_diff_is_empty(current: Job) -> None:
    """A snapshot diffed against the job it came from yields nothing."""
    snapshot, _ = seen(current)
    again, out = seen(current, snapshot)
    assert [] == out
    assert snapshot == again


@given(st.lists(jobs(), min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_replay_gives_same_ids(sequence: list[Job]) -> None:
    """Replaying the same sequence of observations yields the same ids."""

    def run() -> list[str]:
        snapshot: Snapshot | None = None
        ids: list[str] = []
        for current in sequence:
            snapshot, out = seen(current.model_copy(update={"id": "job-1"}), snapshot)
            ids.extend(t.id for t in out)
        return ids

    assert run() == run()


@given(jobs())
@settings(max_examples=200, deadline=None)
def test_ids_unique_within_one_diff(current: Job) -> None:
    """No two transitions of one diff share an id."""
    _, out = seen(current)
    assert len(out) == len({t.id for t in out})


@given(
    st.lists(statuses, min_size=2, max_size=10).filter(
        lambda p: all(a != b for a, b in itertools.pairwise(p))
    ),
    st.data(),
)
@settings(max_examples=200, deadline=None)
def test_every_status_passed_is_reported_once_in_order(path: list[str], data: Any) -> None:
    """Whatever polls observe of a walk, the reported steps are exactly the walk."""
    cuts = sorted(data.draw(st.sets(st.integers(1, len(path)), max_size=4)) | {len(path)})
    snapshot: Snapshot | None = None
    reported: list[tuple[str | None, str | None]] = []
    for cut in cuts:
        events = history(*path[:cut])
        current = job(status=path[cut - 1], events=events, modified_at=events[-1][1])
        snapshot, out = seen(current, snapshot)
        reported.extend(steps(out))
    expected = list(zip([None, *path[:-1]], path, strict=True))
    assert expected == reported


def test_newest_first_same_second_events() -> None:
    """Newest-first events that all share one second are put in order by the job status."""
    events = [("VALIDATED", T0), ("VALIDATING", T0), ("QUEUED", T0)]
    snapshot, out = seen(job(status="VALIDATED", events=events))
    assert [(None, "QUEUED"), ("QUEUED", "VALIDATING"), ("VALIDATING", "VALIDATED")] == steps(out)
    later = job(status="RUNNING", modified_at=T0 + 9, events=[("RUNNING", T0 + 9), *events])
    assert [("VALIDATED", "RUNNING")] == steps(seen(later, snapshot)[1])


def test_start_without_event_after_validated() -> None:
    """VALIDATED -> QUEUED after /start has no event: the job status reports it, in order,
    and the earlier steps are not reported again later."""
    events = history("QUEUED", "VALIDATING", "VALIDATED", gap=1)
    started = job(status="QUEUED", modified_at=T0 + 50, events=events)
    snapshot, out = seen(started)
    assert [
        (None, "QUEUED"),
        ("QUEUED", "VALIDATING"),
        ("VALIDATING", "VALIDATED"),
        ("VALIDATED", "QUEUED"),
    ] == steps(out)
    assert [T0, T0 + 1, T0 + 2, T0 + 50] == [t.occurred_at for t in out]
    running = job(status="RUNNING", modified_at=T0 + 90, events=[*events, ("RUNNING", T0 + 90)])
    assert [("QUEUED", "RUNNING")] == steps(seen(running, snapshot)[1])


def test_lagging_events_of_a_new_job_keep_order() -> None:
    """A new job whose latest status has no event yet: events first, then the status."""
    current = job(
        status="VALIDATED", modified_at=T0 + 60, events=[("QUEUED", T0), ("VALIDATING", T0 + 30)]
    )
    _, out = seen(current)
    assert [(None, "QUEUED"), ("QUEUED", "VALIDATING"), ("VALIDATING", "VALIDATED")] == steps(out)
    assert [T0, T0 + 30, T0 + 60] == [t.occurred_at for t in out]


def test_same_second_event_ahead_of_status_waits() -> None:
    """An event in the same second as modified_at but past the job status waits for it."""
    previous = baseline(
        job(
            status="VALIDATED",
            modified_at=T0 + 20,
            events=history("QUEUED", "VALIDATING", "VALIDATED"),
        )
    )
    current = job(
        status="RUNNING",
        modified_at=T0 + 30,
        events=[*history("QUEUED", "VALIDATING", "VALIDATED", "RUNNING"), ("SUCCESS", T0 + 30)],
    )
    snapshot, out = seen(current, previous)
    assert [("VALIDATED", "RUNNING")] == steps(out)
    done = job(
        status="SUCCESS",
        modified_at=T0 + 30,
        events=[*history("QUEUED", "VALIDATING", "VALIDATED", "RUNNING"), ("SUCCESS", T0 + 30)],
    )
    assert [("RUNNING", "SUCCESS")] == steps(seen(done, snapshot)[1])


def test_list_item_snapshot_does_not_flood_old_checkpoints() -> None:
    """A baseline snapshot from a list item treats the job's old checkpoints as history."""
    previous = baseline(job(status="SUCCESS", modified_at=T0 + 100))
    current = job(
        status="SUCCESS",
        modified_at=T0 + 200,
        events=RUN,
        checkpoints=[(s, T0 + s, {}) for s in range(1, 70)],
    )
    assert [] == seen(current, previous)[1]


def test_lowercase_terminal_status_is_terminal() -> None:
    """A terminal status in another case still ends the job's polling."""
    snapshot, _ = seen(job(status="success"))
    assert snapshot.terminal


def test_loss_curve_in_the_job_view() -> None:
    """A detailed job's view carries its loss curve by step; a list item keeps the last one."""
    detailed = job(
        status="RUNNING",
        events=RUN,
        modified_at=T0 + 30,
        checkpoints=[
            (2, T0 + 42, {"train_loss": 1.2, "valid_loss": 0.0}),
            (1, T0 + 41, {"train_loss": "NaN", "valid_loss": 1.4}),
        ],
    )
    snapshot, _ = seen(detailed)
    assert [[1, "NaN", 1.4], [2, 1.2, 0.0]] == snapshot.job["loss_curve"]
    listed = job(status="SUCCESS", modified_at=T0 + 50)
    later, out = seen(listed, snapshot)
    assert snapshot.job["loss_curve"] == later.job["loss_curve"]
    assert snapshot.job["loss_curve"] == out[0].job["loss_curve"]
