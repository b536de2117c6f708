"""Runtime silences: what people asked watcher to keep quiet about, for how long.

A :class:`Silence` holds matchers (route match keys plus ``job_id``, each one glob), a time
span and, for "until resolved", the job it is bound to. Transitions it matches are recorded
and sent to no sink (:mod:`watcher.detect.silencing` decides). Values only.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "sil-"


def new_silence_id() -> str:
    """A short id nobody can guess (``sil-`` + 16 hex digits): it is what ``expire`` takes."""
    return PREFIX + secrets.token_hex(8)


@dataclass(frozen=True)
class Silence:
    """One silence: active from ``starts_at`` until ``ends_at`` (``None``: no time cap), until
    the job ``resolved`` = (source, job id) ends or its alert resolves, or until someone
    expires it (``ended_at``, ``ended_by``, ``end_reason``)."""

    id: str
    matchers: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    comment: str
    created_by: str
    created_at: float
    resolved: tuple[str, str] | None = None
    ended_at: float | None = None
    ended_by: str | None = None
    end_reason: str | None = None

    def active(self, now: float) -> bool:
        """Whether it silences anything at ``now``."""
        if self.ended_at is not None or now < self.starts_at:
            return False
        return self.ends_at is None or now < self.ends_at
