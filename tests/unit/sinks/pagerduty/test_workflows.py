"""What PagerDuty hears of Workflows executions: which news trigger and which resolve, one
incident per execution, severities, the summary naming a child's root, custom_details, and
resolve_on defaults and synonyms."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest

from tests.unit.sinks.pagerduty.support import Wire, mock_sink, status
from tests.unit.sinks.workflow_cases import HOSTILE, KINDS, hostile, workflow
from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition
from watcher.render.workflow_samples import EXECUTION_ID, PARENT_ID, ROOT_ID
from watcher.sinks.pagerduty import DEFAULT_RESOLVE_ON, MAX_EVENT_BYTES, decide, resolving

KEY = f"watcher/wf/{EXECUTION_ID}"


def execution(new: str, previous: str = "RUNNING") -> Envelope:
    """The failed sample's execution entering ``new`` (terminated, canceled, …)."""
    return workflow(
        "workflow_failed",
        type=f"workflow.execution.{new.lower()}",
        status=new,
        previous_status=previous,
        job={"status": new},
    )


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        pytest.param(workflow("workflow_failed"), ("trigger", KEY, "failed"), id="failed"),
        pytest.param(workflow("workflow_timed_out"), ("trigger", KEY, "timed_out"), id="timeout"),
        pytest.param(execution("TERMINATED"), ("trigger", KEY, "terminated"), id="terminated"),
        pytest.param(workflow("retry_storm"), ("trigger", KEY, "retry_storm"), id="storm"),
        pytest.param(
            workflow("activity_failed"), ("trigger", KEY, "activity_failed"), id="activity failed"
        ),
        pytest.param(workflow("workflow_completed"), ("resolve", KEY, "completed"), id="completed"),
        pytest.param(execution("CANCELED"), ("resolve", KEY, "canceled"), id="canceled"),
        pytest.param(workflow("workflow_running"), None, id="running"),
        pytest.param(workflow("workflow_retrying"), None, id="retrying: a warning"),
        pytest.param(workflow("activity_retrying"), None, id="activity retrying: a warning"),
        pytest.param(workflow("continued_as_new"), None, id="continued as new"),
        pytest.param(execution("PAUSED"), None, id="unknown status"),
    ],
)
def test_decide(envelope: Envelope, expected: tuple[str, str, str] | None) -> None:
    """Failures page, completion and cancellation resolve, retries do not page; every
    decision about one execution uses one dedup_key: one incident per execution."""
    decision = decide(envelope.transition, resolving(None))
    actual = None if decision is None else (decision.action, decision.dedup_key, decision.kind)
    assert expected == actual


def test_time_alerts_of_executions_keep_their_own_keys() -> None:
    """A stalled execution pages under the rule's key, as for the other families."""
    transition = Transition(
        id="t",
        type="workflow.execution.stalled",
        source="wf",
        job_id=EXECUTION_ID,
        job={"id": EXECUTION_ID},
        details={"alert": {"rule": "stalled", "since": "2026-08-01T10:00:00Z"}},
    )
    decision = decide(transition, resolving(None))
    assert decision is not None
    assert ("trigger", f"{KEY}/stalled/2026-08-01T10:00:00Z") == (
        decision.action,
        decision.dedup_key,
    )


def test_fine_tuning_and_batch_keys_are_unchanged() -> None:
    """The other families' dedup keys stay watcher/{source}/{job_id}."""
    decision = decide(status("FAILED").transition, resolving(None))
    assert decision is not None
    assert decision.dedup_key.startswith("watcher/ft/") and decision.dedup_key.count("/") == 2


@pytest.mark.parametrize(
    ("resolve_on", "resolved"),
    [
        pytest.param(None, {"SUCCESS", "CANCELLED", "COMPLETED", "CANCELED"}, id="defaults"),
        pytest.param(["SUCCESS"], {"SUCCESS", "COMPLETED"}, id="SUCCESS means COMPLETED"),
        pytest.param(["canceled"], {"CANCELLED", "CANCELED"}, id="either spelling, any case"),
        pytest.param(["COMPLETED"], {"SUCCESS", "COMPLETED"}, id="COMPLETED means SUCCESS"),
        pytest.param([], set(), id="none"),
        pytest.param(["RUNNING"], {"RUNNING"}, id="an explicit list as written"),
    ],
)
def test_resolve_on_defaults_and_synonyms(resolve_on: list[str] | None, resolved: set[str]) -> None:
    """Defaults cover each family's words; a list naming one family's word means the others'
    too, so lists written before Workflows resolve executions as well."""
    assert frozenset(resolved) == resolving(resolve_on)
    assert ("SUCCESS", "CANCELLED", "COMPLETED", "CANCELED") == DEFAULT_RESOLVE_ON


async def test_failed_child_then_completed_retry(wire: Wire) -> None:
    """A failed child pages naming its root, a retry storm joins the same incident, and the
    execution's completion resolves it."""
    sink = wire.sink()
    await sink.send([workflow("workflow_failed"), workflow("retry_storm")])
    await sink.send([workflow("workflow_retrying"), workflow("workflow_completed")])

    assert [("trigger", KEY), ("trigger", KEY), ("resolve", KEY)] == wire.fake.actions()
    failed, storm = (event["payload"] for event in wire.fake.events[:2])
    assert failed["summary"] == (
        "FAILED: workflow execution 019b2bd7… (support-workflow, prod) on wf (attempt 2): "
        f"KeyError: 'customer' [child of {PARENT_ID} in root {ROOT_ID}]"
    )
    assert ("error", "support-workflow", "prod") == (
        failed["severity"],
        failed["component"],
        failed["group"],
    )
    details = failed["custom_details"]
    assert (ROOT_ID, PARENT_ID) == (details["root_execution_id"], details["parent_execution_id"])
    assert {"message": "KeyError: 'customer'"} == details["failure"]
    assert ("workflow.execution.failed", EXECUTION_ID) == (details["type"], details["job"]["id"])
    assert storm["summary"].startswith("RETRY STORM: workflow execution 019b2bd7… (")
    assert ": retry storm (12 retries)" in storm["summary"]
    assert "error" == storm["severity"]


async def test_activity_failed_summary_and_severity_override(wire: Wire) -> None:
    """An activity failed for good names the activity; severities may be set per type."""
    sink = wire.sink(severity={"workflow.activity.failed": "warning", "timed_out": "critical"})
    await sink.send([workflow("activity_failed"), workflow("workflow_timed_out")])

    activity, timeout = (event["payload"] for event in wire.fake.events)
    assert ": activity charge_card failed (attempt 3): KeyError: 'customer'" in activity["summary"]
    assert ("warning", "critical") == (activity["severity"], timeout["severity"])


@pytest.mark.parametrize("name", KINDS)
def test_hostile_values_are_sanitized_and_capped(name: str) -> None:
    """Summary and fields: one line within PagerDuty's limits, nothing invisible."""
    sink = mock_sink(lambda request: httpx.Response(202))
    envelope = hostile(name)
    decision = decide(envelope.transition, resolving(None))
    if decision is None or decision.action == "resolve":
        return
    payload = sink.event(envelope, decision)["payload"]
    assert len(payload["summary"]) <= 1024
    for key in ("summary", "source", "component", "group", "class"):
        value = payload.get(key, "")
        assert len(value) <= 1024
        assert not any(ord(ch) < 32 or ch in "\x7f\u202e" for ch in value)
    assert HOSTILE not in payload["summary"]


async def test_a_huge_failed_child_still_pages_with_its_root() -> None:
    """Past 512 KB, the event keeps the execution's tree and the start of its failure."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(202)

    huge = workflow(
        "workflow_failed",
        details={"failure": {"message": "E" * 600_000}, "attempt": 2},
        job={"workflow_name": "W" * 600_000},
    )
    await mock_sink(handler).send([huge])

    assert len(seen[0]) <= MAX_EVENT_BYTES
    details = json.loads(seen[0])["payload"]["custom_details"]
    assert (True, ROOT_ID, PARENT_ID) == (
        details["truncated"],
        details["root_execution_id"],
        details["parent_execution_id"],
    )
    # Long fields are cut (with "…"), never dropped: the start of each is there.
    message, name = details["failure"]["message"], details["job"]["workflow_name"]
    assert message.startswith("E" * 1000) and message.endswith("\u2026")
    assert name.startswith("W" * 1000) and name.endswith("\u2026")
    assert EXECUTION_ID == details["job"]["id"]
