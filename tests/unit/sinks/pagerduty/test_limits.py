"""PagerDuty's limits (issue 15, items 13 and 14): every hostile shape still pages within
512 KB, through the strict fake on loopback; ids that differ only in invisible characters
never share an incident; nothing PagerDuty receives holds a lone surrogate."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.hostile_shapes import SHAPES
from tests.unit.sinks.pagerduty.support import Wire, status
from tests.unit.sinks.workflow_cases import workflow
from watcher.sinks.pagerduty import dedup_key

INVISIBLE = ("a\u200bb", "a\u200eb", "a\u00a0b", "a b", "ab", "a\u2060b", "a\ud800b", "a\ufeffb")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_every_hostile_shape_still_pages(wire: Wire, shape: str) -> None:
    job_fields, details = SHAPES[shape]
    envelope = status("FAILED", details=details)
    transition = replace(envelope.transition, job={**envelope.transition.job, **job_fields})
    envelope = replace(envelope, transition=transition)
    await wire.sink().send([envelope])  # the fake refuses > 512 KB and lone surrogates

    [event] = wire.fake.events
    payload = event["payload"]
    assert ("trigger", "error") == (event["event_action"], payload["severity"])
    assert payload["summary"].startswith("FAILED: fine-tuning job")
    assert envelope.transition.job_id == payload["custom_details"]["job"]["id"]


async def test_a_huge_workflow_failure_pages_through_the_wire(wire: Wire) -> None:
    huge = workflow("workflow_failed", details={"failure": {"message": "\ud800E" * 400_000}})
    await wire.sink().send([huge])
    [event] = wire.fake.events
    assert event["payload"]["custom_details"]["truncated"] is True


def test_invisible_differences_give_different_dedup_keys() -> None:
    keys = {dedup_key("ft", job_id) for job_id in INVISIBLE}
    assert len(INVISIBLE) == len(keys)
    for key in keys:  # shown text stays clean: no invisible character, no surrogate
        assert key.isprintable() and key.encode("utf-8")


def test_plain_ids_keep_their_key() -> None:
    assert "watcher/ft/3b9c1e7a-0000-4000-8000-000000000001" == dedup_key(
        "ft", "3b9c1e7a-0000-4000-8000-000000000001"
    )


async def test_one_jobs_success_does_not_resolve_its_invisible_twin(wire: Wire) -> None:
    """Two jobs whose ids differ by a zero-width space: the second one's success resolves
    its own key, never the first one's incident."""
    first = status("FAILED", job_id="job\u200b1", id="wt_a")
    second = status("SUCCESS", previous="RUNNING", job_id="job1", id="wt_b")
    await wire.sink().send([first, second])
    (trigger, opened), (resolve, closed) = wire.fake.actions()
    assert ("trigger", "resolve") == (trigger, resolve)
    assert opened != closed
