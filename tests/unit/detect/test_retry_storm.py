"""The retry_storm rule, pure: once per activity and storm, whatever batches the retries
arrive in, remembered in the job's marks across polls and restarts."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.factories import T0
from watcher.config import RetryStormRuleConfig, RuleConfig
from watcher.detect.diff import diff
from watcher.detect.rules import STORM_ACTIVITIES, STORM_SECONDS, on_change
from watcher.model import types
from watcher.model.jobs import Job, StreamEvent
from watcher.model.snapshot import Fact, JobKind, Snapshot
from watcher.model.statuses import WORKFLOW_TERMINAL
from watcher.model.transitions import Transition, stable_id

PREFIX = types.WORKFLOW_EXECUTION
RETRYING = types.job_type(types.WORKFLOW_ACTIVITY, types.RETRYING)
STORM = types.job_type(PREFIX, types.RETRY_STORM)
RULE = RetryStormRuleConfig(kind="retry_storm", retries=5, within=600)
VIEW = {
    "id": "exec-1",
    "status": "RUNNING",
    "workflow_name": "support-workflow",
    "deployment_name": "prod",
    "root_execution_id": "exec-1",
    "parent_execution_id": None,
}


def snapshot(job_id: str = "exec-1", marks: dict[str, Any] | None = None) -> Snapshot:
    return Snapshot(
        source="wf",
        job_id=job_id,
        status="RUNNING",
        created_at=T0,
        modified_at=T0,
        status_since=T0,
        terminal=False,
        job={**VIEW, "id": job_id},
        marks=marks or {},
    )


def retry(at: int | None, activity: str = "charge_card", attempt: int = 1) -> Transition:
    """A ``workflow.activity.retrying`` as the workflow source's diff reports it."""
    return Transition(
        id=stable_id("wf", "exec-1", "retry", activity, attempt, at),
        type=RETRYING,
        source="wf",
        job_id="exec-1",
        occurred_at=at,
        job=VIEW,
        details={
            "activity": {
                "name": activity,
                "attempt": attempt,
                "failure": {"message": "timeout"},
                "task_id": "t1",
            },
            "run_id": "run-1",
        },
    )


def polls(
    batches: Sequence[Sequence[Transition]],
    rules: Sequence[RuleConfig] = (RULE,),
    *,
    job_id: str = "exec-1",
    round_trip: bool = False,
) -> tuple[Snapshot, list[Transition]]:
    """The change rules over successive polls of one execution, each bringing ``batches[i]``;
    with ``round_trip`` the snapshot goes through its stored JSON between polls."""
    snap = snapshot(job_id)
    alerts: list[Transition] = []
    for batch in batches:
        marks, found = on_change(rules, snap, snap, batch, prefix=PREFIX)
        snap = replace(snap, marks=marks)
        if round_trip:
            raw = json.loads(json.dumps(snap.to_json()))
            snap = Snapshot.from_json(snap.source, snap.job_id, raw, terminal=False)
        alerts += found
    return snap, alerts


def one_by_one(times: Sequence[int], activity: str = "charge_card") -> list[list[Transition]]:
    return [[retry(at, activity, n + 1)] for n, at in enumerate(times)]


def test_fires_once_at_the_retry_past_the_limit() -> None:
    """Five retries within 600 s are quiet; the sixth fires one alert; more of the same storm
    fire nothing more."""
    times = [T0 + 10 * n for n in range(20)]
    _, five = polls(one_by_one(times[:5]))
    assert [] == five
    _, alerts = polls(one_by_one(times))
    assert [STORM] == [a.type for a in alerts]
    (alert,) = alerts
    assert T0 + 50 == alert.occurred_at
    assert "exec-1" == alert.job_id
    assert "support-workflow" == alert.job["workflow_name"]
    expected = {"activity": {"name": "charge_card", "retries": 6, "within_seconds": 600.0},
                "rule": "retry_storm"}  # fmt: skip
    assert expected == alert.details


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        pytest.param(119, 1, id="six within 595 s"),
        pytest.param(120, 0, id="six over exactly 600 s: not within"),
        pytest.param(130, 0, id="spread wider"),
    ],
)
def test_retries_spread_wider_than_the_window_never_fire(gap: int, expected: int) -> None:
    """Only retries closer than ``within`` count together, however many there are."""
    _, alerts = polls(one_by_one([T0 + gap * n for n in range(40)]))
    assert expected == len(alerts)


BATCHINGS = {
    "one per poll": [1] * 50,
    "several per poll": [3, 7, 1, 20, 19],
    "one poll of 50": [50],
}


@pytest.mark.parametrize("sizes", list(BATCHINGS.values()), ids=list(BATCHINGS))
def test_batches_give_the_same_single_alert(sizes: list[int]) -> None:
    """However the 50 retries of one storm are spread over polls, one alert with one id."""
    transitions = [retry(T0 + 5 * n, attempt=n + 1) for n in range(50)]
    batches, start = [], 0
    for size in sizes:
        batches.append(transitions[start : start + size])
        start += size
    _, alerts = polls(batches)
    _, reference = polls([transitions[:6]])
    assert [reference[0].id] == [a.id for a in alerts]
    assert [T0 + 25] == [a.occurred_at for a in alerts]


def test_one_poll_counts_the_whole_storm() -> None:
    """A poll bringing 50 retries (shuffled) reports them all, in one alert, under the id
    they give in order."""
    transitions = [retry(T0 + 5 * n, attempt=n + 1) for n in range(50)]
    _, in_order = polls([transitions])
    random.Random(7).shuffle(transitions)
    _, alerts = polls([transitions])
    assert [50] == [a.details["activity"]["retries"] for a in alerts]
    assert [a.id for a in in_order] == [a.id for a in alerts]


def test_out_of_order_polls_still_fire_once() -> None:
    """Retries arriving newest first over several polls fire once."""
    times = [T0 + 10 * n for n in range(30)]
    batches = [[retry(at) for at in times[i : i + 5]] for i in range(25, -1, -5)]
    _, alerts = polls(batches)
    assert 1 == len(alerts)


def test_activities_count_apart() -> None:
    """Retries of two activities do not add up; each has its own storm."""
    interleaved = [
        [retry(T0 + n, "charge_card", n), retry(T0 + n, "send_mail", n)] for n in range(5)
    ]
    _, quiet = polls(interleaved)
    assert [] == quiet
    _, alerts = polls([*interleaved, [retry(T0 + 9, "send_mail", 6)]])
    assert ["send_mail"] == [a.details["activity"]["name"] for a in alerts]
    _, both = polls([*interleaved, [retry(T0 + 9, "send_mail"), retry(T0 + 9, "charge_card")]])
    assert ["charge_card", "send_mail"] == sorted(a.details["activity"]["name"] for a in both)
    assert 2 == len({a.id for a in both})


def test_executions_count_apart() -> None:
    """Each execution keeps its own count (its own marks); the alert ids differ."""
    batches = one_by_one([T0 + n for n in range(3)])
    first, quiet = polls(batches, job_id="exec-1")
    assert [] == quiet
    # Another execution with its own three retries: nothing carried over from exec-1.
    second, still = polls(batches, job_id="exec-2")
    assert [] == still
    assert first.marks == second.marks
    _, a = polls(one_by_one([T0 + n for n in range(6)]), job_id="exec-1")
    _, b = polls(one_by_one([T0 + n for n in range(6)]), job_id="exec-2")
    assert a[0].id != b[0].id


def test_rearms_after_a_quiet_window() -> None:
    """A storm that goes on fires once; after a quiet ``within`` a new storm fires again,
    under another id."""
    storm = [T0 + 10 * n for n in range(10)]
    going_on = [T0 + 100 + 500 * n for n in range(1, 6)]  # gaps under 600 s: same storm
    _, alerts = polls(one_by_one(storm + going_on))
    assert 1 == len(alerts)
    later = going_on[-1] + 600  # a quiet 600 s
    second = [later + 10 * n for n in range(6)]
    _, alerts = polls(one_by_one(storm + going_on + second))
    assert [storm[5], second[5]] == [a.occurred_at for a in alerts]
    assert alerts[0].id != alerts[1].id
    # Both storms in one poll: both reported.
    _, together = polls([[retry(at) for at in storm + going_on + second]])
    assert [a.id for a in alerts] == [a.id for a in together]


def test_marks_survive_the_store() -> None:
    """Through the snapshot's stored JSON between polls, the same alerts with the same ids."""
    batches = one_by_one([T0 + 10 * n for n in range(8)])
    _, direct = polls(batches)
    snap, stored = polls(batches, round_trip=True)
    assert [a.id for a in direct] == [a.id for a in stored]
    assert ["retry_storm.retries"] == list(snap.marks)


def test_redetecting_after_a_crash_gives_the_same_id() -> None:
    """The same poll applied again to the same committed snapshot raises the same alert."""
    before, _ = polls(one_by_one([T0 + n for n in range(4)]))
    batch = [retry(T0 + 10), retry(T0 + 11)]
    _, first = on_change([RULE], before, before, batch, prefix=PREFIX)
    _, again = on_change([RULE], before, before, batch, prefix=PREFIX)
    assert 1 == len(first)
    assert first == again


def test_marks_stay_bounded() -> None:
    """A long storm keeps at most STORM_SECONDS distinct seconds per activity, and at most
    STORM_ACTIVITIES activities (the most recent); every retry still counts."""
    rule = RetryStormRuleConfig(kind="retry_storm", retries=900, within=3600)
    long_storm = [retry(T0 + n) for n in range(1000)]
    snap, alerts = polls([long_storm[:500], long_storm[500:]], [rule])
    kept = snap.marks["retry_storm.retries"]["charge_card"]["seen"]
    assert len(kept) <= STORM_SECONDS
    assert 1000 == sum(count for _, count in kept)
    assert 1 == len(alerts)
    many = [[retry(T0 + n, f"activity-{n}")] for n in range(STORM_ACTIVITIES + 40)]
    snap, _ = polls(many)
    names = snap.marks["retry_storm.retries"]
    assert STORM_ACTIVITIES == len(names)
    assert f"activity-{STORM_ACTIVITIES + 39}" in names
    assert "activity-0" not in names


def test_only_retrying_counts_and_only_where_the_rule_applies() -> None:
    """A final ``workflow.activity.failed`` is not a retry; a rule for other sources is
    silent; a retry without a time counts at the job's modified_at."""
    failed = types.job_type(types.WORKFLOW_ACTIVITY, types.ACTIVITY_FAILED)
    finals = [[replace(retry(T0 + n), type=failed)] for n in range(10)]
    assert [] == polls(finals)[1]
    elsewhere = RetryStormRuleConfig(kind="retry_storm", sources=["other"])
    assert [] == polls(one_by_one([T0 + n for n in range(10)]), [elsewhere])[1]
    untimed = [[retry(None)] for _ in range(6)]
    assert [T0] == [a.occurred_at for a in polls(untimed)[1]]


def test_two_rules_keep_their_own_marks() -> None:
    """A named second rule counts on its own and names itself in the alert."""
    strict = RetryStormRuleConfig(kind="retry_storm", name="strict", retries=2, within=60)
    snap, alerts = polls(one_by_one([T0 + n for n in range(6)]), [RULE, strict])
    assert ["strict", "retry_storm"] == [a.details["rule"] for a in alerts]
    assert {"retry_storm.retries", "strict.retries"} == set(snap.marks)


@pytest.mark.parametrize(
    "marks",
    [
        pytest.param({"retry_storm.retries": "junk"}, id="not a mapping"),
        pytest.param({"retry_storm.retries": {"charge_card": [1, 2]}}, id="activity not a map"),
        pytest.param(
            {"retry_storm.retries": {"charge_card": {"seen": [[1], ["a", 2], [T0, True]]}}},
            id="bad pairs",
        ),
    ],
)
def test_odd_marks_start_afresh(marks: dict[str, Any]) -> None:
    """Marks of another shape (an older version's) never crash the rule."""
    snap = snapshot(marks=marks)
    batch = [retry(T0 + n) for n in range(6)]
    _, alerts = on_change([RULE], snap, snap, batch, prefix=PREFIX)
    assert 1 == len(alerts)


# --- through the diff --------------------------------------------------------------------


def _stream_facts(previous: Snapshot | None, current: Job) -> list[Fact]:
    """Like the workflow source: each ACTIVITY_TASK_RETRYING the stream announced is a fact."""
    return [
        Fact(
            key=(event.id,),
            type=types.RETRYING,
            prefix=types.WORKFLOW_ACTIVITY,
            occurred_at=event.at,
            details={
                "activity": {
                    "name": event.attributes["activity_name"],
                    "attempt": event.attributes["attempt"],
                    "failure": event.attributes["failure"],
                    "task_id": event.attributes["task_id"],
                },
                "run_id": event.run_id,
            },
            ident=("activity", event.id),
        )
        for event in current.stream
        if event.type == "ACTIVITY_TASK_RETRYING"
    ]


KIND = JobKind(prefix=PREFIX, terminal=WORKFLOW_TERMINAL, facts=_stream_facts)


def execution(events: Sequence[tuple[int, int]]) -> Job:
    """The execution as a poll sees it, with the (sequence, time) retries its stream brought."""
    stream = tuple(
        StreamEvent(
            id=f"evt-{seq}",
            type="ACTIVITY_TASK_RETRYING",
            at=at,
            sequence=seq,
            job_id="exec-1",
            run_id="run-1",
            attributes={
                "task_id": "t1",
                "activity_name": "charge_card",
                "attempt": seq,
                "failure": {"message": "503 from the card API"},
            },
        )
        for seq, at in events
    )
    view = {k: v for k, v in VIEW.items() if k not in {"id", "status"}}
    return Job(id="exec-1", status="RUNNING", created_at=T0, modified_at=T0, view=view,
               stream=stream)  # fmt: skip


def test_through_the_diff() -> None:
    """Polls whose stream brought activity retries: the diff reports each retry, the rule
    one storm, with the execution as its job."""
    previous: Snapshot | None = None
    reported: list[Transition] = []
    for chunk in ([(1, T0 + 1), (2, T0 + 3)], [(3, T0 + 7)], [(4, T0 + 15), (5, T0 + 31),
                  (6, T0 + 63), (7, T0 + 127)], []):  # fmt: skip
        snap, transitions = diff(previous, execution(chunk), source="wf", kind=KIND)
        marks, alerts = on_change([RULE], previous, snap, transitions, prefix=KIND.prefix)
        previous = replace(snap, marks=marks)
        reported += transitions + alerts
    types_ = [t.type for t in reported]
    assert [f"{PREFIX}.running"] + [RETRYING] * 7 + [STORM] == types_
    storm = reported[-1]
    assert T0 + 63 == storm.occurred_at
    assert "support-workflow" == storm.job["workflow_name"]
    assert {"name": "charge_card", "retries": 7, "within_seconds": 600.0} == (
        storm.details["activity"]
    )
