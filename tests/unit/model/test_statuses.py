"""Each family's statuses, in one place: the APIs' sets, and watcher's own DELETED apart."""

from __future__ import annotations

import pytest

from watcher.devtools.simulator import batch as simulated_batch
from watcher.devtools.simulator import jobs as simulated_jobs
from watcher.model import statuses as s
from watcher.sources.batch import BatchSource
from watcher.sources.fine_tuning import KIND, FineTuningSource

FAMILIES = {
    "fine-tuning": (s.FINE_TUNING_STATUSES, s.FINE_TUNING_TERMINAL, s.FINE_TUNING_ENDS),
    "batch": (s.BATCH_STATUSES, s.BATCH_TERMINAL, s.BATCH_ENDS),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_watcher_ends_jobs_where_the_api_does_and_on_a_404(family: str) -> None:
    """Watcher's terminal set is the API's plus DELETED, which the API never sends."""
    documented, terminal, ends = FAMILIES[family]
    assert (True, False, terminal | {s.DELETED}) == (
        terminal <= set(documented),
        s.DELETED in documented,
        ends,
    )


def test_the_fine_tuning_statuses_are_active_parked_or_terminal() -> None:
    """Every documented fine-tuning status is in exactly one class (reference §5)."""
    classes = (s.FINE_TUNING_ACTIVE, s.FINE_TUNING_PARKED, s.FINE_TUNING_TERMINAL)
    assert sorted(s.FINE_TUNING_STATUSES) == sorted(x for c in classes for x in c)


def test_the_batch_statuses_are_active_or_terminal() -> None:
    """Every documented batch status is active or terminal, never both (reference §5)."""
    assert sorted(s.BATCH_STATUSES) == sorted([*s.BATCH_ACTIVE, *s.BATCH_TERMINAL])


def test_every_user_of_statuses_shares_the_same_sets() -> None:
    """Sources follow and end jobs by the model's sets; the simulator speaks the API's."""
    assert (frozenset(s.FINE_TUNING_STATUSES), s.FINE_TUNING_ENDS) == (
        FineTuningSource.statuses,
        KIND.terminal,
    )
    assert frozenset(s.BATCH_STATUSES) == BatchSource.statuses
    assert (s.FINE_TUNING_STATUSES, s.FINE_TUNING_TERMINAL) == (
        simulated_jobs.STATUSES,
        simulated_jobs.TERMINAL,
    )
    assert (s.BATCH_STATUSES, s.BATCH_TERMINAL) == (
        simulated_batch.BATCH_STATUSES,
        simulated_batch.BATCH_TERMINAL,
    )


def test_workflow_sets_follow_the_reference() -> None:
    """CONTINUED_AS_NEW ends a run, not the execution; TERMINATED and TIMED_OUT end it
    without a stream event."""
    assert "CONTINUED_AS_NEW" in s.WORKFLOW_RUN_TERMINAL
    assert "CONTINUED_AS_NEW" not in s.WORKFLOW_TERMINAL
    assert "CONTINUED_AS_NEW" not in s.WORKFLOW_ENDS
    assert s.WORKFLOW_SILENT <= s.WORKFLOW_TERMINAL
    assert not s.WORKFLOW_ACTIVE & s.WORKFLOW_ENDS


def test_known_statuses_are_every_family_s_and_deleted() -> None:
    """What metrics label as they are: the documented statuses of every family and DELETED."""
    expected = {*s.FINE_TUNING_STATUSES, *s.BATCH_STATUSES, *s.WORKFLOW_STATUSES, s.DELETED}
    assert expected == s.KNOWN_STATUSES
