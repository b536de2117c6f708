"""The transition-type catalogue: every type the code can produce is in it, and metrics
label exactly what it knows."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import T0, raw_job
from watcher.app.metrics import type_label
from watcher.config import TimeRuleConfig
from watcher.detect.diff import diff
from watcher.detect.digest import digest_transition, heartbeat
from watcher.model import types
from watcher.model.jobs import Job
from watcher.model.snapshot import Cursor, JobKind, Snapshot
from watcher.model.statuses import BATCH_STATUSES, FINE_TUNING_STATUSES, KNOWN_STATUSES
from watcher.model.transitions import (
    Transition,
    action_taken,
    source_degraded,
    source_recovered,
    source_retired,
    source_unreachable,
    store_unwritable,
)
from watcher.sources.batch import batch_facts, parse_batch_job
from watcher.sources.fine_tuning import KIND, parse_job

WATCHER = Path(__file__).resolve().parents[3] / "watcher"
BATCH = JobKind(types.BATCH_JOB, frozenset(), batch_facts([25.0, 50.0, 100.0], 0.1, 1))


def produced(kind: JobKind, sequence: list[Job]) -> list[Transition]:
    """Every transition the diff finds over a sequence of observations of one job."""
    snapshot: Snapshot | None = None
    out: list[Transition] = []
    for current in sequence:
        snapshot, found = diff(snapshot, current, source="s", kind=kind)
        out += found
    return out


def known_or_new_status(transition: Transition, prefix: str) -> bool:
    """Known, or the status type of a status no API documents (it keeps its own slug)."""
    if types.is_known(transition.type):
        return True
    status = transition.status
    return (
        status is not None
        and status not in KNOWN_STATUSES
        and (types.status_type(prefix, status) == transition.type)
    )


@pytest.mark.parametrize("status", sorted(KNOWN_STATUSES))
@pytest.mark.parametrize("prefix", types.JOB_PREFIXES)
def test_every_known_status_has_a_known_type(prefix: str, status: str) -> None:
    """A documented status (or DELETED) of either family gives a catalogued type."""
    assert True is types.is_known(types.status_type(prefix, status))


def test_an_undocumented_status_is_not_catalogued() -> None:
    """An unknown status keeps its own type, which the catalogue does not claim."""
    assert "fine_tuning.job.paused" == types.status_type(types.FINE_TUNING_JOB, "PAUSED")
    assert False is types.is_known("fine_tuning.job.paused")


def test_time_alerts_are_the_time_rules() -> None:
    """The catalogue's time alerts are the config's time rule kinds, resolved or not."""
    kinds = {
        typing.get_args(rule.model_fields["kind"].annotation)[0]
        for rule in typing.get_args(TimeRuleConfig)
    }
    assert kinds == set(types.TIME_ALERTS)
    for prefix in types.JOB_PREFIXES:
        for kind in kinds:
            alert = types.job_type(prefix, kind)
            assert (True, True) == (types.is_known(alert), types.is_known(types.resolved(alert)))


def test_watcher_types_are_catalogued() -> None:
    """Source states, digests and heartbeats are all known types."""
    made = [
        source_retired("ft", "/v1/fine_tuning/jobs"),
        source_unreachable("ft", T0, "timeout"),
        source_recovered("ft", T0, T0 + 60),
        source_degraded("wf", T0, "the event stream was refused"),
        store_unwritable("replica-1", T0, "OperationalError: disk I/O error"),
        *(action_taken(t, "wf", "exec-1", by="ana", at=T0, key="k") for t in types.ACTIONS),
        digest_transition({}, T0),
        heartbeat(T0, 60, {"ft": Cursor()}, {}),
    ]
    assert [True] * len(made) == [types.is_known(t.type) for t in made]
    assert {t.type for t in made} | {types.TEST} == types.WATCHER_TYPES


def test_metrics_label_every_known_type_as_it_is() -> None:
    """Each catalogued type is its own label value: nothing known counts as other."""
    everything = {
        f"{prefix}.{suffix}" for prefix in types.JOB_PREFIXES for suffix in types.JOB_SUFFIXES
    } | types.WATCHER_TYPES
    assert everything == {type_label(t) for t in everything}


_TYPE_LITERAL = re.compile(r"^(fine_tuning\.job|batch\.job|watcher\.source)\.[a-z_.]+$")


def test_every_type_literal_in_the_code_is_catalogued() -> None:
    """No module spells a type the catalogue does not know."""
    literals = {
        node.value
        for path in WATCHER.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _TYPE_LITERAL.match(node.value)
    }
    assert set() == {t for t in literals if not types.is_known(t)}


events = st.lists(
    st.tuples(st.sampled_from([*FINE_TUNING_STATUSES, "PAUSED", None]), st.integers(0, 50)),
    max_size=6,
)


@st.composite
def fine_tuning_jobs(draw: Any) -> Job:
    raw = raw_job(
        status=draw(st.sampled_from([*FINE_TUNING_STATUSES, "PAUSED"])),
        modified_at=T0 + 60,
        events=[],
        checkpoints=[
            (n, T0 + n, {"train_loss": 1.0})
            for n in draw(st.lists(st.integers(1, 30), unique=True, max_size=4))
        ],
        fine_tuned_model=draw(st.none() | st.just("ft:model")),
    )
    raw["events"] = [
        {"name": "status-updated", "created_at": T0 + at, "data": {"status": status}}
        if status is not None
        else {"name": "checkpoint-saved", "created_at": T0 + at, "data": {}}
        for status, at in sorted(draw(events), key=lambda e: e[1])
    ]
    return parse_job(raw)


@given(st.lists(fine_tuning_jobs(), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_the_diff_of_fine_tuning_jobs_only_makes_catalogued_types(sequence: list[Job]) -> None:
    """Whatever a fine-tuning job goes through, each type the diff gives is catalogued."""
    out = produced(KIND, sequence)
    assert [] == [t.type for t in out if not known_or_new_status(t, types.FINE_TUNING_JOB)]


@st.composite
def batch_jobs(draw: Any) -> Job:
    total = draw(st.integers(0, 100))
    succeeded = draw(st.integers(0, total))
    failed = draw(st.integers(0, total - succeeded))
    return parse_batch_job(
        {
            "id": "b",
            "status": draw(st.sampled_from([*BATCH_STATUSES, "PAUSED"])),
            "created_at": T0,
            "total_requests": total,
            "succeeded_requests": succeeded,
            "failed_requests": failed,
            "completed_requests": succeeded + failed,
        }
    )


@given(st.lists(batch_jobs(), min_size=1, max_size=5))
@settings(max_examples=150, deadline=None)
def test_the_diff_of_batch_jobs_only_makes_catalogued_types(sequence: list[Job]) -> None:
    """Status changes, progress, rising errors and partial success: all catalogued."""
    out = produced(BATCH, sequence)
    assert [] == [t.type for t in out if not known_or_new_status(t, types.BATCH_JOB)]
