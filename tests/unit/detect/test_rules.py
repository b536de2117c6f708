"""The rules, pure: change rules (cost, metric) and time conditions (stalled, overrun)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import T0, history, job
from watcher.config import (
    CostRuleConfig,
    MetricRuleConfig,
    OverrunRuleConfig,
    RuleConfig,
    StalledRuleConfig,
)
from watcher.detect.diff import diff
from watcher.detect.rules import conditions, on_change
from watcher.model.jobs import Job
from watcher.model.snapshot import JobKind, Snapshot
from watcher.model.statuses import WORKFLOW_TERMINAL
from watcher.model.transitions import Transition
from watcher.sources.fine_tuning import KIND

RUN = history("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")


def observe(rules: list[RuleConfig], sequence: list[Job]) -> tuple[Snapshot, list[Transition]]:
    """Diff then apply the change rules over a sequence of observations of one job."""
    snapshot: Snapshot | None = None
    alerts: list[Transition] = []
    for current in sequence:
        previous = snapshot
        snapshot, transitions = diff(previous, current, source="ft", kind=KIND)
        marks, found = on_change(rules, previous, snapshot, transitions, prefix=KIND.prefix)
        snapshot = Snapshot(**{**snapshot.__dict__, "marks": marks})
        alerts += found
    assert snapshot is not None
    return snapshot, alerts


def running(checkpoints: list[tuple[int, dict[str, Any]]], **kwargs: Any) -> Job:
    return job(
        status="RUNNING",
        events=RUN,
        modified_at=T0 + 30,
        checkpoints=[(step, T0 + 40 + step, m) for step, m in checkpoints],
        **kwargs,
    )


def test_valid_loss_rise_fires_once_and_placeholders_never() -> None:
    """A rise of more than 10 % over the best fires once; 0.0 placeholder steps never do."""
    rule = MetricRuleConfig(kind="metric", valid_loss_rise=10)
    steps: list[tuple[int, dict[str, Any]]] = [
        (1, {"train_loss": 2.0, "valid_loss": 1.0}),
        (2, {"train_loss": 1.9, "valid_loss": 0.0}),   # no validation at this step
        (3, {"train_loss": 1.8, "valid_loss": 0.9}),
        (4, {"train_loss": 1.7, "valid_loss": 0.0}),
        (5, {"train_loss": 1.6, "valid_loss": 1.05}),  # +16.7 % over 0.9
        (6, {"train_loss": 1.5, "valid_loss": 1.2}),   # still up: same condition, no repeat
    ]  # fmt: skip
    sequence = [running(steps[: n + 1]) for n in range(len(steps))]
    _, alerts = observe([rule], sequence)
    assert ["fine_tuning.job.metric_regressed"] == [a.type for a in alerts]
    assert 5 == alerts[0].details["alert"]["step"]
    assert 0.9 == alerts[0].details["alert"]["best_valid_loss"]

    _, quiet = observe([rule], [running([(n, {"valid_loss": 0.0}) for n in range(1, 9)])])
    assert [] == quiet


def test_non_finite_train_loss_fires() -> None:
    """A NaN train_loss fires once."""
    rule = MetricRuleConfig(kind="metric")
    _, alerts = observe([rule], [running([(1, {"train_loss": "NaN"}), (2, {"train_loss": "inf"})])])
    assert [("fine_tuning.job.metric_regressed", "train_loss_not_finite")] == [
        (a.type, a.details["alert"]["condition"]) for a in alerts
    ]


def test_best_loss_survives_in_marks() -> None:
    """The best loss so far is remembered in the snapshot, across observations."""
    rule = MetricRuleConfig(kind="metric", name="loss", valid_loss_rise=50)
    snapshot, alerts = observe(
        [rule],
        [
            running([(1, {"valid_loss": 1.0})]),
            running([(1, {"valid_loss": 1.0}), (2, {"valid_loss": 1.6})]),
        ],
    )
    assert 1.0 == snapshot.marks["loss.best_valid_loss"]
    assert 1 == len(alerts)


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        pytest.param([None, 150.0], 1, id="becomes known above the limit"),
        pytest.param([None, 0.0, 150.0], 1, id="a placeholder first, then above: fires"),
        pytest.param([None, 150.0, 200.0], 1, id="above, then higher: fires once"),
        pytest.param([150.0, 150.0], 1, id="known at first sight"),
    ],
)
def test_cost_fires_when_it_becomes_known(costs: list[float | None], expected: int) -> None:
    """The cost rule fires once, when the known cost crosses the limit."""
    rule = CostRuleConfig(kind="cost", limit=100)
    sequence = [
        job(status="RUNNING", metadata={"cost": cost, "cost_currency": "EUR"}, modified_at=T0 + n)
        for n, cost in enumerate(costs)
    ]
    _, alerts = observe([rule], sequence)
    assert expected == len(alerts)
    if alerts:
        assert {"rule": "cost", "cost": 150.0, "currency": "EUR", "limit": 100} == (
            alerts[0].details["alert"]
        )


def test_rules_can_be_limited_to_sources() -> None:
    """A rule for another source does not apply."""
    rule = CostRuleConfig(kind="cost", limit=1, sources=["other"])
    _, alerts = observe([rule], [job(status="RUNNING", metadata={"cost": 5})])
    assert [] == alerts


def snapshot_in(status: str, since: int, **metadata: Any) -> Snapshot:
    snap, _ = diff(
        None,
        job(status=status, created_at=since, modified_at=since, metadata=metadata),
        source="ft",
        kind=KIND,
    )
    return snap


def test_stalled_per_status_limits() -> None:
    """A job stalls when it stays in a status longer than that status's limit."""
    rule = StalledRuleConfig(kind="stalled", after={"QUEUED": 7200, "VALIDATING": 1800})
    queued = snapshot_in("QUEUED", T0)
    assert [] == conditions([rule], queued, T0 + 7000)
    (held,) = conditions([rule], queued, T0 + 7300)
    assert ("QUEUED", T0) == held.key
    assert [] == conditions([rule], snapshot_in("RUNNING", T0), T0 + 99999)
    assert [] == conditions([rule], snapshot_in("FAILED", T0), T0 + 99999)


def test_overrun_uses_expected_duration() -> None:
    """A RUNNING job overruns past expected_duration_seconds x factor; without an
    expectation it never does."""
    rule = OverrunRuleConfig(kind="overrun", factor=1.5)
    snap = snapshot_in("RUNNING", T0, expected_duration_seconds=600)
    assert [] == conditions([rule], snap, T0 + 899)
    assert 1 == len(conditions([rule], snap, T0 + 901))
    assert [] == conditions([rule], snapshot_in("RUNNING", T0), T0 + 10**6)


def test_condition_ids_are_stable_per_spell() -> None:
    """The same spell gives the same alert id; a later spell in the same status another."""
    rule = StalledRuleConfig(kind="stalled", after={"QUEUED": 60})
    first = snapshot_in("QUEUED", T0)
    later = snapshot_in("QUEUED", T0 + 5000)
    (a,) = conditions([rule], first, T0 + 100)
    (b,) = conditions([rule], first, T0 + 200)
    (c,) = conditions([rule], later, T0 + 5100)
    assert a.alert_id(first) == b.alert_id(first)
    assert a.alert_id(first) != c.alert_id(later)


def test_overrun_on_a_running_workflow_execution() -> None:
    """A RUNNING Workflows execution with an expected duration overruns like any job: from
    the time it has been RUNNING (status_since), a numeric string accepted; a new spell
    after a continue-as-new counts afresh; a finished execution never overruns."""
    kind = JobKind(prefix="workflow.execution", terminal=WORKFLOW_TERMINAL)
    rule = OverrunRuleConfig(kind="overrun", factor=2)

    def seen(status: str, at: int, previous: Snapshot | None = None, **meta: Any) -> Snapshot:
        view = {"workflow_name": "support-workflow", "deployment_name": "prod",
                "root_execution_id": "exec-1", "parent_execution_id": None,
                "run_id": "run-1", "attempt": 1, "start_time": T0,
                "metadata": {"expected_duration_seconds": meta.get("expected", 300)}}  # fmt: skip
        current = Job(id="exec-1", status=status, created_at=T0, modified_at=at, view=view)
        snap, _ = diff(previous, current, source="wf", kind=kind)
        return snap

    running = seen("RUNNING", T0)
    assert T0 == running.status_since
    assert [] == conditions([rule], running, T0 + 599)
    (held,) = conditions([rule], running, T0 + 601)
    assert ("RUNNING", T0) == held.key
    assert 300 == held.details["expected_seconds"]
    assert 1 == len(conditions([rule], seen("RUNNING", T0, expected="300"), T0 + 601))
    assert [] == conditions([rule], seen("RUNNING", T0, expected=None), T0 + 10**6)
    handed_over = seen("CONTINUED_AS_NEW", T0 + 500, running)
    again = seen("RUNNING", T0 + 550, handed_over)
    assert T0 + 550 == again.status_since
    assert [] == conditions([rule], again, T0 + 700)
    assert 1 == len(conditions([rule], again, T0 + 1151))
    assert [] == conditions([rule], seen("COMPLETED", T0 + 900, again), T0 + 10**6)
