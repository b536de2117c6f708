"""The record stage's side of silences: the active ones, read from the store at most every
:data:`TTL` seconds per process (so every replica honours a new silence within ~1 s plus its
poll interval), and the audit transition of a silence added or ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from watcher.abc import SilenceStore
from watcher.detect.silencing import JOB_ID
from watcher.model.silences import Silence
from watcher.model.transitions import Transition, action_taken
from watcher.render.text import clean

log = structlog.get_logger(__name__)

TTL = 1.0  # seconds a read of the active silences serves before the store is asked again
WATCHER = "watcher"  # who ends an "until resolved" silence, and the source of unbound audits


class SilenceCache:
    """The active silences, as the store last said (at most ``ttl`` seconds ago)."""

    def __init__(
        self,
        store: SilenceStore,
        *,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._silences: list[Silence] = []
        self._read_at: float | None = None

    async def get(self, now: float) -> list[Silence]:
        """The silences active at ``now`` (wall time), read again once ``ttl`` has passed."""
        tick = self.clock()
        if self._read_at is None or tick - self._read_at >= self.ttl:
            self._silences = await self.store.active_silences(now)
            self._read_at = tick
        return [s for s in self._silences if s.active(now)]

    def forget(self) -> None:
        """Read the store again next time (this process added or ended a silence)."""
        self._read_at = None


def describe(matchers: Mapping[str, str]) -> str:
    """``source=ft job_id=ftjob-1*``: the matchers as one cleaned line."""
    return " ".join(f"{clean(k, 40)}={clean(v, 120)}" for k, v in matchers.items()) or "(all)"


def _exact(pattern: str | None) -> str | None:
    """The value a matcher names when it is no glob."""
    if pattern is None or any(ch in pattern for ch in "*?["):
        return None
    return pattern


def audit(silence: Silence, type_: str, *, by: str, at: float, **details: Any) -> Transition:
    """``watcher.action.silenced`` / ``silence_expired`` of ``silence``: about the job it is
    bound to (or names exactly), else about watcher."""
    job_id: str | None
    if silence.resolved is not None:
        source, job_id = silence.resolved
    else:
        source = _exact(silence.matchers.get("source")) or WATCHER
        job_id = _exact(silence.matchers.get(JOB_ID))
    return action_taken(
        type_,
        source,
        job_id,
        by=by,
        at=at,
        key=silence.id,
        silence={
            "id": silence.id,
            "matchers": dict(silence.matchers),
            "ends_at": silence.ends_at,
            "until_resolved": silence.resolved is not None,
            "comment": silence.comment,
        },
        **details,
    )


def logged(event: str, silence: Silence, *, by: str, **extra: Any) -> None:
    """``silence_added`` / ``silence_expired`` with who, which and what, cleaned."""
    log.info(
        event,
        id=silence.id,
        by=clean(by, 80),
        matchers=describe(silence.matchers),
        comment=clean(silence.comment, 200),
        **extra,
    )
