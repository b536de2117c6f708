"""render/workflows.py: what a Workflows transition says, read once for every sink."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.sinks.workflow_cases import DETECTED, HOSTILE, KINDS, hostile, workflow
from watcher.model.transitions import Transition
from watcher.render import workflows
from watcher.render.workflow_samples import EXECUTION_ID, NEW_RUN_ID, PARENT_ID, ROOT_ID, RUN_ID


def view(name: str, **job: object) -> workflows.WorkflowView:
    envelope = workflow(name, job=job or None)
    found = workflows.read(envelope.transition, envelope.detected_at)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("name", "tone"),
    [
        ("workflow_running", "info"),
        ("workflow_failed", "failure"),
        ("workflow_completed", "success"),
        ("workflow_timed_out", "failure"),
        ("workflow_retrying", "warning"),
        ("continued_as_new", "info"),
        ("activity_retrying", "warning"),
        ("activity_failed", "failure"),
        ("retry_storm", "failure"),
    ],
)
def test_tone_of_each_kind(name: str, tone: str) -> None:
    """Failures, timeouts, retry storms and activities failed for good are failures;
    retries are warnings; completion is a success."""
    assert tone == workflows.tone(view(name))


@pytest.mark.parametrize(
    ("type_", "status", "tone"),
    [
        ("workflow.execution.terminated", "TERMINATED", "failure"),
        ("workflow.execution.canceled", "CANCELED", "cancelled"),
        ("workflow.execution.paused", "PAUSED", "info"),
        ("workflow.execution.stalled", None, "warning"),
        ("workflow.execution.overrun.resolved", None, "resolved"),
    ],
)
def test_tone_of_other_statuses_and_alerts(type_: str, status: str | None, tone: str) -> None:
    """Terminated fails, canceled is a cancellation, an unknown status is news, time alerts
    warn and their end resolves."""
    transition = Transition(
        id="t", type=type_, source="wf", job_id=EXECUTION_ID, status=status, job={}
    )
    found = workflows.read(transition)
    assert found is not None
    assert tone == workflows.tone(found)


def test_other_families_are_not_read() -> None:
    """A fine-tuning transition has no workflow view."""
    transition = Transition(id="t", type="fine_tuning.job.failed", source="ft", status="FAILED")
    assert workflows.read(transition) is None


def test_rows_of_a_failed_child() -> None:
    """A failed sub-workflow: its workflow, run, tree, status, duration, attempt and why."""
    expected = [
        ("Workflow", "support-workflow"),
        ("Deployment", "prod"),
        ("Execution", EXECUTION_ID),
        ("Run", RUN_ID),
        ("Sub-workflow", f"child of {PARENT_ID} in root {ROOT_ID}"),
        ("Status", "RUNNING \u2192 FAILED"),
        ("Duration", "1m 2s"),
        ("Attempt", "2"),
        ("Failure", "KeyError: 'customer'"),
    ]
    assert expected == [(row.name, row.value) for row in workflows.rows(view("workflow_failed"))]
    assert "support-workflow FAILED" == workflows.title(view("workflow_failed"))


def test_continued_as_new_names_both_runs() -> None:
    """Continue-as-new: the run that ended and the next one, the status from the details."""
    found = view("continued_as_new")
    shown = {row.name: row.value for row in workflows.rows(found)}
    assert (RUN_ID, NEW_RUN_ID) == (shown["Run"], shown["New run"])
    assert "RUNNING \u2192 CONTINUED_AS_NEW" == shown["Status"]
    assert "support-workflow continued as new" == workflows.title(found)


def test_activity_and_storm_facts() -> None:
    """Activity facts name the activity and its attempt; a storm its retries and window."""
    assert "support-workflow activity charge_card failed (attempt 3)" == workflows.title(
        view("activity_failed")
    )
    storm = {row.name: row.value for row in workflows.rows(view("retry_storm"))}
    assert ("charge_card", "12 within 5m 0s", "retry_storm") == (
        storm["Activity"],
        storm["Retries"],
        storm["Rule"],
    )
    assert "retrying (attempt 1 failed)" == workflows.what(view("workflow_retrying"))


@pytest.mark.parametrize(
    ("job", "shown"),
    [
        pytest.param({"total_duration_ms": 3_723_000}, "1h 2m", id="total_duration_ms"),
        pytest.param(
            {"total_duration_ms": None, "end_time": "2026-08-01T10:35:07.818693Z"},
            "10m 0s",
            id="start to end",
        ),
        pytest.param(
            {"total_duration_ms": None, "end_time": None},
            "1m 2s so far",
            id="running: until the transition",
        ),
        pytest.param({"total_duration_ms": "soon", "start_time": "yesterday"}, None, id="junk"),
        pytest.param(
            {"total_duration_ms": None, "end_time": "2026-08-01T10:00:00Z"}, None, id="backwards"
        ),
        pytest.param({"total_duration_ms": float("nan"), "start_time": None}, None, id="NaN"),
    ],
)
def test_duration(job: dict[str, object], shown: str | None) -> None:
    """total_duration_ms first, else end - start, else how long it has run; junk shows
    nothing rather than a wrong figure."""
    assert shown == workflows.shown_duration(view("workflow_failed", **job))


def test_running_without_an_event_time_counts_until_detected() -> None:
    """With no event time, the duration so far runs until the transition was detected."""
    envelope = workflow(
        "workflow_running", occurred_at=None, job={"total_duration_ms": None, "end_time": None}
    )
    found = workflows.read(envelope.transition, envelope.detected_at)
    assert found is not None
    assert "1m 7s so far" == workflows.shown_duration(found)


def test_top_level_run_has_no_lineage() -> None:
    """A top-level run (root = itself) is nobody's child."""
    found = view("workflow_completed")
    assert (None, None, None) == (found.parent, found.root, workflows.lineage(found))


def test_lineage_without_parent_still_names_the_root() -> None:
    """A root that is not the execution itself is named even without a parent."""
    found = view("workflow_failed", parent_execution_id=None)
    assert f"in root {ROOT_ID}" == workflows.lineage(found)


@pytest.mark.parametrize("name", KINDS)
def test_hostile_values_become_one_short_clean_line(name: str) -> None:
    """Every row and the title: one printable line, capped, no escape or control left."""
    envelope = hostile(name)
    found = workflows.read(envelope.transition, DETECTED)
    assert found is not None
    for text in [workflows.title(found), *(row.value for row in workflows.rows(found))]:
        assert len(text) <= 2 * workflows.MAX_ID + 20 or len(text) <= workflows.MAX_FAILURE
        assert not any(ord(ch) < 32 or ch in "\x7f\u202e" for ch in text)
    assert HOSTILE not in repr(workflows.rows(found))


def test_a_job_without_fields_reads_as_unknown() -> None:
    """A bare execution (nulls, wrong types) reads without error, unknowns left out."""
    transition = Transition(
        id="t",
        type="workflow.execution.failed",
        source="wf",
        job_id="e1",
        status="FAILED",
        job={"workflow_name": ["x"], "attempt": "two", "root_execution_id": "e1"},
        details={"failure": "not a mapping", "activity": 3},
    )
    found = workflows.read(transition)
    assert found is not None
    assert dataclasses.astuple(found)[:3] == ("failed", False, True)
    assert (None, None, None, None) == (found.workflow, found.attempt, found.failure, found.root)
    assert "workflow FAILED" == workflows.title(found)
