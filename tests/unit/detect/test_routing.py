"""Routing: AND across keys, OR across values, globs, union of sinks, continue: false."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from watcher.config import MatchConfig, MuteWindow, RouteConfig
from watcher.detect.routing import Router
from watcher.model.transitions import Transition


def t(
    type_: str = "fine_tuning.job.failed", status: str | None = "FAILED", source: str = "ft"
) -> Transition:
    return Transition(id="x", type=type_, source=source, job_id="j", status=status)


def route(sinks: list[str], stop: bool = False, **match: list[str]) -> RouteConfig:
    return RouteConfig(match=MatchConfig(**match), sinks=sinks, continue_=not stop)


@pytest.mark.parametrize(
    ("routes", "transition", "expected"),
    [
        pytest.param([route(["a"])], t(), ["a"], id="empty match matches everything"),
        pytest.param([route(["a"], status=["FAILED", "CANCELLED"])], t(), ["a"], id="OR"),
        pytest.param([route(["a"], status=["FAILED"], source=["other"])], t(), [], id="AND"),
        pytest.param([route(["a"], type=["fine_tuning.job.*"])], t(), ["a"], id="glob"),
        pytest.param(
            [route(["a"], status=["FAILED"])],
            t("fine_tuning.job.checkpoint", None),
            [],
            id="status key never matches a transition without status",
        ),
        pytest.param(
            [route(["a", "b"]), route(["b", "c"])], t(), ["a", "b", "c"], id="union, each sink once"
        ),
        pytest.param(
            [route(["a"], stop=True), route(["b"])], t(), ["a"], id="continue false stops"
        ),
        pytest.param(
            [route(["a"], stop=True, status=["RUNNING"]), route(["b"])],
            t(),
            ["b"],
            id="continue false only when it matches",
        ),
        pytest.param([], t(), [], id="no routes: recorded, sent nowhere"),
    ],
)
def test_sinks_for(routes: list[RouteConfig], transition: Transition, expected: list[str]) -> None:
    """The sinks a transition reaches follow the routing rules of config/watcher.example.yaml."""
    assert expected == Router(routes).sinks_for(transition)


def test_explain_names_the_routes() -> None:
    """explain() returns the index of every route that applies."""
    router = Router(
        [route(["a"], status=["RUNNING"]), route(["b"]), route(["c"], stop=True), route(["d"])]
    )
    assert [1, 2] == [i for i, _ in router.explain(t())]


def job_t(**job: str) -> Transition:
    return Transition(
        id="x",
        type="fine_tuning.job.failed",
        source="ft",
        job_id="j",
        status="FAILED",
        previous_status="RUNNING",
        job=job,
    )


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param({"previous_status": ["RUNNING"]}, True, id="previous status"),
        pytest.param({"previous_status": ["QUEUED"]}, False, id="other previous status"),
        pytest.param({"job_type": ["classifier"]}, True, id="job type"),
        pytest.param({"model": ["open-mistral-*"]}, True, id="model glob"),
        pytest.param({"suffix": ["prod-*"]}, False, id="suffix glob miss"),
        pytest.param({"suffix": ["*bot"], "model": ["open-*"]}, True, id="two keys"),
    ],
)
def test_job_keys(match: dict[str, list[str]], expected: bool) -> None:
    """job_type, model and suffix match on the job as last seen."""
    transition = job_t(job_type="classifier", model="open-mistral-7b", suffix="support-bot")
    assert expected == bool(Router([route(["a"], **match)]).sinks_for(transition))


def test_missing_job_field_never_matches() -> None:
    """A key the transition does not have (a source event has no suffix) does not match."""
    assert [] == Router([route(["a"], suffix=["*"])]).sinks_for(job_t())


# 2026-11-28 is a Saturday; 2026-11-30 a Monday.
SAT_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
MON_2330 = datetime(2026, 11, 30, 23, 30, tzinfo=UTC).timestamp()
TUE_0630 = datetime(2026, 12, 1, 6, 30, tzinfo=UTC).timestamp()
TUE_0730 = datetime(2026, 12, 1, 7, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("windows", "when", "expected"),
    [
        pytest.param([{"days": ["sat", "sun"]}], SAT_NOON, True, id="weekend"),
        pytest.param([{"days": ["sat", "sun"]}], MON_2330, False, id="weekday"),
        pytest.param(
            [{"days": ["mon"], "between": "22:00-07:00"}],
            MON_2330,
            True,
            id="night, before midnight",
        ),
        pytest.param(
            [{"days": ["mon"], "between": "22:00-07:00"}],
            TUE_0630,
            True,
            id="night, after midnight belongs to the day it began",
        ),
        pytest.param([{"days": ["mon"], "between": "22:00-07:00"}], TUE_0730, False, id="morning"),
        pytest.param(
            [{"between": "12:00-13:00", "timezone": "Europe/Paris"}],
            SAT_NOON,
            False,
            id="time zone: 13:00 in Paris",
        ),
        pytest.param(
            [{"between": "13:00-14:00", "timezone": "Europe/Paris"}],
            SAT_NOON,
            True,
            id="time zone hit",
        ),
    ],
)
def test_mute_windows(windows: list[dict[str, Any]], when: float, expected: bool) -> None:
    """A muted route sends nothing inside its window and everything outside."""
    config = RouteConfig(sinks=["low"], mute=[MuteWindow(**w) for w in windows])
    assert expected == (Router([config]).sinks_for(t(), when) == [])


def test_muted_route_still_stops() -> None:
    """A muted route with continue: false still stops routing: muting is not re-routing."""
    quiet = RouteConfig(sinks=["low"], mute=[MuteWindow()], continue_=False)
    assert [] == Router([quiet, route(["b"])]).sinks_for(t(), SAT_NOON)


def test_decide_says_why() -> None:
    """decide() explains each route: matched or which keys failed, and muted or not."""
    router = Router([route(["a"], status=["RUNNING"]), route(["b"], source=["ft"])])
    first, second = router.decide(t())
    assert (False, ["status: 'FAILED' is not in ['RUNNING']"]) == (first.matched, first.why)
    assert (True, [], False) == (second.matched, second.why, second.muted)


WORKFLOW_JOB = {
    "id": "exec-7",
    "status": "RUNNING",
    "workflow_name": "support-workflow",
    "deployment_name": "prod-eu",
    "root_execution_id": "root-1",
    "parent_execution_id": "parent-3",
}


def workflow_t(type_: str = "workflow.activity.retrying", **details: object) -> Transition:
    return Transition(
        id="x", type=type_, source="wf", job_id="exec-7", job=WORKFLOW_JOB, details=details
    )


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param({"workflow": ["support-workflow"]}, True, id="workflow"),
        pytest.param({"workflow": ["support-*"]}, True, id="workflow glob"),
        pytest.param({"workflow": ["billing-*"]}, False, id="other workflow"),
        pytest.param({"deployment": ["prod-*"]}, True, id="deployment glob"),
        pytest.param({"deployment": ["staging"]}, False, id="other deployment"),
        pytest.param({"root_execution_id": ["root-1"]}, True, id="root execution"),
        pytest.param({"root_execution_id": ["root-2"]}, False, id="other root"),
        pytest.param({"parent_execution_id": ["parent-?"]}, True, id="parent glob"),
        pytest.param({"activity": ["charge_*"]}, True, id="activity glob"),
        pytest.param({"activity": ["send_mail"]}, False, id="other activity"),
        pytest.param(
            {"workflow": ["support-workflow"], "activity": ["charge_card"], "source": ["wf"]},
            True,
            id="with other keys",
        ),
    ],
)
def test_workflow_keys(match: dict[str, list[str]], expected: bool) -> None:
    """workflow, deployment, root/parent execution ids match on the execution as last seen,
    activity on the activity the fact is about."""
    transition = workflow_t(activity={"name": "charge_card", "attempt": 2})
    assert expected == bool(Router([route(["a"], **match)]).sinks_for(transition))


def test_activity_key_matches_a_retry_storm() -> None:
    """A retry_storm alert names its activity, so a route on activity reaches it."""
    storm = workflow_t(
        "workflow.execution.retry_storm",
        activity={"name": "charge_card", "retries": 6, "within_seconds": 600.0},
        rule="retry_storm",
    )
    assert ["a"] == Router([route(["a"], activity=["charge_card"])]).sinks_for(storm)


@pytest.mark.parametrize(
    "match",
    [
        {"workflow": ["*"]},
        {"deployment": ["*"]},
        {"root_execution_id": ["*"]},
        {"parent_execution_id": ["*"]},
        {"activity": ["*"]},
    ],
    ids=lambda m: next(iter(m)),
)
def test_workflow_keys_never_match_other_families(match: dict[str, list[str]]) -> None:
    """A batch or fine-tuning job has no workflow, deployment, executions or activity: even
    ``*`` does not match it, and explain says why."""
    batch = Transition(
        id="x",
        type="batch.job.failed",
        source="batch",
        job_id="b",
        status="FAILED",
        job={"id": "b", "status": "FAILED", "model": "mistral-small", "metadata": {}},
    )
    fine_tuning = job_t(job_type="completion", model="open-mistral-7b", suffix="bot")
    router = Router([route(["a"], **match)])
    assert [] == router.sinks_for(batch)
    assert [] == router.sinks_for(fine_tuning)
    (decision,) = router.decide(batch)
    assert [f"{next(iter(match))}: the transition has none (wanted ['*'])"] == decision.why


def test_a_top_level_execution_has_no_parent() -> None:
    """parent_execution_id is null for a top-level execution: a parent route skips it."""
    top = Transition(
        id="x",
        type="workflow.execution.failed",
        source="wf",
        job_id="root-1",
        status="FAILED",
        job={**WORKFLOW_JOB, "parent_execution_id": None},
    )
    assert [] == Router([route(["a"], parent_execution_id=["*"])]).sinks_for(top)
    assert ["a"] == Router([route(["a"], workflow=["support-workflow"])]).sinks_for(top)
