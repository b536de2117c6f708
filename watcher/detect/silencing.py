"""Silencing: which active silence (if any) keeps a transition from every sink, and which
"until resolved" silences a transition ends. Pure logic, no I/O, no clock (``now`` is
passed in).

A silence matches a transition when every one of its matchers does, with the routes' match
keys and glob rule (:func:`watcher.detect.routing.fits`) plus ``job_id`` (a transition about
no job never matches a ``job_id`` matcher). What people did (``watcher.action.*``) is never
silenced: the audit of a silence must not vanish under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watcher.config import MatchConfig
from watcher.detect.routing import fits, values
from watcher.model import statuses, types
from watcher.model.silences import Silence
from watcher.model.transitions import Transition

JOB_ID = "job_id"
# What a silence may match on: every key a route's ``match`` knows, and the job's id.
MATCH_KEYS: tuple[str, ...] = (*MatchConfig.model_fields, JOB_ID)
ACTION_PREFIX = "watcher.action."
# The statuses a job ends in, per family (a status change into one ends an "until resolved").
_ENDS = {
    types.FINE_TUNING_JOB: statuses.FINE_TUNING_ENDS,
    types.BATCH_JOB: statuses.BATCH_ENDS,
    types.WORKFLOW_EXECUTION: statuses.WORKFLOW_ENDS,
}


def matches(matchers: Mapping[str, str], transition: Transition) -> bool:
    """Whether every matcher matches ``transition`` (an unknown key never does)."""
    have: dict[str, str | None] = {**values(transition), JOB_ID: transition.job_id}
    return all(key in have and fits(have[key], [pattern]) for key, pattern in matchers.items())


def matches_everything(matchers: Mapping[str, str]) -> bool:
    """No matcher, or only ``*`` globs: such a silence would mute watcher as a whole."""
    return all(set(pattern) <= {"*"} for pattern in matchers.values())


def ending(silence: Silence, transition: Transition) -> str | None:
    """Why ``transition`` ends the "until resolved" ``silence`` (``job ended``, ``alert
    resolved``), or ``None`` when it does not."""
    if silence.resolved is None or (transition.source, transition.job_id) != silence.resolved:
        return None
    if transition.type.endswith(f".{types.RESOLVED}"):
        return "alert resolved"
    if transition.status is None:
        return None
    for prefix, ends in _ENDS.items():
        if transition.type == types.status_type(prefix, transition.status):
            return "job ended" if transition.status in ends else None
    return None


def silenced_by(silences: Iterable[Silence], transition: Transition, now: float) -> str | None:
    """The id of the first active silence that keeps ``transition`` from every sink, or
    ``None``. A transition that ends an "until resolved" silence is not silenced by it (the
    end is news)."""
    if transition.type.startswith(ACTION_PREFIX):
        return None
    for silence in silences:
        if not silence.active(now) or ending(silence, transition) is not None:
            continue
        if matches(silence.matchers, transition):
            return silence.id
    return None
