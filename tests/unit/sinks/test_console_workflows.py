"""The console's line for Workflows executions: what happened, the attempt, the tree, the
failure and the workflow, every foreign value one clean capped line."""

from __future__ import annotations

import pytest

from tests.unit.sinks.workflow_cases import KINDS, hostile, workflow
from watcher.render.workflow_samples import PARENT_ID, ROOT_ID
from watcher.sinks.console import format_line

TREE = f"(child of {PARENT_ID} in root {ROOT_ID})"


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("workflow_running", f"new \u2192 RUNNING attempt 1 {TREE}"),
        ("workflow_failed", f"RUNNING \u2192 FAILED attempt 2 {TREE}: KeyError: 'customer'"),
        ("workflow_completed", "RUNNING \u2192 COMPLETED attempt 2"),
        ("workflow_timed_out", f"RUNNING \u2192 TIMED_OUT {TREE}"),
        ("workflow_retrying", f"retrying (attempt 1 failed) {TREE}: KeyError: 'customer'"),
        (
            "continued_as_new",
            "continued as new run 7d0c2b8e-0b7e-4b8e-9a59-2b1f0c9d3e44 \u2192 "
            f"0c5e8f21-3b6a-4d7e-8f90-1a2b3c4d5e6f {TREE}",
        ),
        (
            "activity_retrying",
            f"activity charge_card retrying (attempt 2) {TREE}: KeyError: 'customer'",
        ),
        (
            "activity_failed",
            f"activity charge_card failed (attempt 3) {TREE}: KeyError: 'customer'",
        ),
        ("retry_storm", f"retry storm 12 retries within 5m 0s {TREE}"),
    ],
)
def test_line_of_each_kind(name: str, said: str) -> None:
    """Time, source, short execution id, what happened, then the workflow (deployment)."""
    expected = f"2026-08-01T10:26:10Z  wf  019b2bd7\u2026  {said}  support-workflow (prod)"
    assert expected == format_line(workflow(name))


@pytest.mark.parametrize("name", KINDS)
def test_hostile_values_make_one_clean_short_line(name: str) -> None:
    """Escapes, bidi overrides, NULs and 10 kB names: one printable line of at most 400."""
    line = format_line(hostile(name))
    assert len(line) <= 400
    assert not any(ord(ch) < 32 or ch in "\x7f\x9b\u202e" for ch in line)
