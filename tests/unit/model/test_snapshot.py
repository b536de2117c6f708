"""A snapshot kept in memory between cycles is the one a store would give back."""

from __future__ import annotations

import math

from tests.factories import T0, history, job
from watcher.detect.diff import diff
from watcher.model.snapshot import Snapshot
from watcher.sources.fine_tuning import KIND


def test_as_stored_is_the_json_round_trip() -> None:
    """Tuples become lists, a NaN a string, as the store's JSON column gives them back."""
    snapshot, _ = diff(None, job("a", "RUNNING"), source="ft", kind=KIND)
    odd = Snapshot(
        **{
            **snapshot.__dict__,
            "job": {**snapshot.job, "metadata": {"cost": math.nan, "steps": (1, 2)}},
            "marks": {"stalled": (3, 4)},
        }
    )
    stored = odd.as_stored()
    assert {"cost": "NaN", "steps": [1, 2]} == stored.job["metadata"]
    assert {"stalled": [3, 4]} == stored.marks
    assert stored == Snapshot.from_json("ft", "a", stored.to_json(), terminal=False)
    assert stored.as_stored() == stored


def test_a_diff_against_the_kept_snapshot_finds_what_one_against_the_store_finds() -> None:
    """No change seen twice: an unchanged job diffs to the same snapshot, no transition."""
    detailed = job(
        "a",
        "RUNNING",
        events=history("QUEUED", "RUNNING"),
        checkpoints=[(10, T0 + 30, {"train_loss": 1.5}), (20, T0 + 60, {"train_loss": 1.2})],
    )
    first, _ = diff(None, detailed, source="ft", kind=KIND)
    second, _ = diff(first.as_stored(), detailed, source="ft", kind=KIND)
    kept = second.as_stored()
    assert kept.job["loss_curve"] and kept.seen_checkpoints == {10, 20}
    again, transitions = diff(kept, detailed, source="ft", kind=KIND)
    assert ([], kept) == (transitions, again)
