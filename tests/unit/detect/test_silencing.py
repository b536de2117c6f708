"""Silencing: a silence matches with the routes' keys and glob rule plus ``job_id``; what
people did is never silenced; the transition that ends an "until resolved" silence is news."""

from __future__ import annotations

import pytest

from watcher.config import MatchConfig
from watcher.detect.routing import matches as route_matches
from watcher.detect.silencing import MATCH_KEYS, ending, matches, matches_everything, silenced_by
from watcher.model import types
from watcher.model.silences import Silence
from watcher.model.transitions import Transition, action_taken

NOW = 1_751_020_000.0


def failed(job_id: str | None = "ftjob-1", source: str = "ft", **job: str) -> Transition:
    return Transition(
        id=f"t-{job_id}",
        type="fine_tuning.job.failed",
        source=source,
        job_id=job_id,
        status="FAILED",
        previous_status="RUNNING",
        job={"model": "open-mistral-7b", **job},
    )


def silence(
    matchers: dict[str, str],
    *,
    ends_at: float | None = NOW + 3600,
    resolved: tuple[str, str] | None = None,
    ended_at: float | None = None,
    id_: str = "sil-1",
) -> Silence:
    return Silence(
        id=id_,
        matchers=matchers,
        starts_at=NOW - 60,
        ends_at=ends_at,
        comment="maintenance",
        created_by="ana",
        created_at=NOW - 60,
        resolved=resolved,
        ended_at=ended_at,
    )


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ({"source": "ft"}, True),
        ({"source": "f*"}, True),
        ({"source": "batch"}, False),
        ({"type": "*.failed", "model": "open-mistral-*"}, True),
        ({"type": "*.failed", "model": "codestral-*"}, False),  # AND across keys
        ({"job_id": "ftjob-1"}, True),
        ({"job_id": "ftjob-?"}, True),
        ({"job_id": "ftjob-2"}, False),
        ({"status": "failed"}, False),  # case-sensitive, like routes
        ({"workflow": "*"}, False),  # the transition has no such value
        ({"no_such_key": "*"}, False),
    ],
)
def test_a_silence_matches_like_a_route(matchers: dict[str, str], expected: bool) -> None:
    assert expected is matches(matchers, failed())


def test_the_keys_are_the_routes_and_job_id() -> None:
    assert set(MATCH_KEYS) == set(MatchConfig.model_fields) | {"job_id"}


@pytest.mark.parametrize("key", sorted(MatchConfig.model_fields))
def test_same_verdict_as_the_routes_on_every_route_key(key: str) -> None:
    """One rule: a silence on one key says what a route's match on that key says."""
    t = failed(workflow_name="wf")
    for pattern in ("*", "ft", "f?", "FAILED", "*.failed", "open-*", "x"):
        route = MatchConfig.model_validate({key: [pattern]})
        assert route_matches(route, t) is matches({key: pattern}, t), (key, pattern)


def test_a_transition_without_a_job_never_matches_a_job_id_matcher() -> None:
    assert not matches({"job_id": "*"}, failed(job_id=None))


@pytest.mark.parametrize(
    ("matchers", "everything"),
    [({}, True), ({"source": "*"}, True), ({"job_id": "**"}, True), ({"source": "f*"}, False)],
)
def test_matches_everything(matchers: dict[str, str], everything: bool) -> None:
    assert everything is matches_everything(matchers)


def test_only_active_silences_silence() -> None:
    t = failed()
    assert "sil-1" == silenced_by([silence({"source": "ft"})], t, NOW)
    assert silenced_by([silence({"source": "ft"}, ends_at=NOW)], t, NOW) is None
    assert silenced_by([silence({"source": "ft"}, ended_at=NOW - 1)], t, NOW) is None
    assert silenced_by([silence({"source": "batch"})], t, NOW) is None


def test_what_people_did_is_never_silenced() -> None:
    audit = action_taken(types.ACTION_SILENCED, "ft", "ftjob-1", by="ana", at=NOW, key="sil-1")
    assert silenced_by([silence({"job_id": "*"}, id_="all")], audit, NOW) is None


def test_the_end_of_an_until_resolved_silence_is_news() -> None:
    bound = silence({"job_id": "ftjob-1"}, ends_at=None, resolved=("ft", "ftjob-1"))
    running = Transition(
        id="r",
        type="fine_tuning.job.running",
        source="ft",
        job_id="ftjob-1",
        status="RUNNING",
        previous_status="QUEUED",
    )
    assert "sil-1" == silenced_by([bound], running, NOW)
    assert ending(bound, running) is None
    assert "job ended" == ending(bound, failed())
    assert silenced_by([bound], failed(), NOW) is None
    # Another silence still silences the end.
    other = silence({"source": "ft"}, id_="sil-2")
    assert "sil-2" == silenced_by([bound, other], failed(), NOW)


def test_an_alert_resolved_ends_it_and_other_jobs_do_not() -> None:
    bound = silence({"job_id": "ftjob-1"}, ends_at=None, resolved=("ft", "ftjob-1"))
    resolved = Transition(
        id="s", type="fine_tuning.job.stalled.resolved", source="ft", job_id="ftjob-1"
    )
    assert "alert resolved" == ending(bound, resolved)
    assert ending(bound, failed(job_id="ftjob-2")) is None
    assert ending(bound, failed(source="other")) is None
    assert ending(silence({"job_id": "ftjob-1"}), failed()) is None  # not bound to a job
