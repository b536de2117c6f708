"""What people do from watcher: silence, expire a silence, acknowledge, cancel a job.

One home for every way in (the command line, Slack's buttons): :class:`Actions` checks the
request, does it (the store, the job's API), audits it (logged with who and what, and
recorded as a ``watcher.action.*`` transition routed like any other) and answers in words
for the person who asked (:class:`Done`). Callers never touch the store for an action.

:class:`ActionHandler` is the Protocol the inbound side (Slack) is written against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from watcher.abc import Source, Store
from watcher.record.recorder import Recorder

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Done:
    """What an action did, in plain words for the person who asked (a CLI line, a Slack
    ephemeral message): never a secret, API text already cleaned."""

    ok: bool
    message: str
    ref: str | None = None  # what was made (a silence's id), when something was


class ActionHandler(Protocol):
    """The actions, as the inbound side (Slack interactivity) calls them."""

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        """A silence of what ``matchers`` match (route match keys and ``job_id``, globs),
        ending at ``until`` (wall time) and/or when the job ``resolved`` = (source, job id)
        ends or its alert resolves, whichever comes first; one of the two is required."""
        ...

    async def expire(self, silence_id: str, *, by: str) -> Done:
        """End a silence now."""
        ...

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        """Acknowledge the job's open alerts: no more repeats until they resolve, and the
        PagerDuty incident acknowledged."""
        ...

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        """Ask the source's API to cancel the job."""
        ...


class Actions:
    """:class:`ActionHandler` over the store, the recorder (audit transitions) and the
    built sources (for cancel)."""

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        sources: Mapping[str, Source],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.sources = dict(sources)
        self.clock = clock

    async def silence(
        self,
        matchers: Mapping[str, str],
        *,
        by: str,
        comment: str,
        until: float | None = None,
        resolved: tuple[str, str] | None = None,
    ) -> Done:
        raise NotImplementedError("silences: issue 13, part 1")

    async def expire(self, silence_id: str, *, by: str) -> Done:
        raise NotImplementedError("silences: issue 13, part 1")

    async def acknowledge(self, job_id: str, *, by: str, source: str | None = None) -> Done:
        raise NotImplementedError("acknowledgement: issue 13, part 2")

    async def cancel(self, source: str, job_id: str, *, by: str) -> Done:
        raise NotImplementedError("cancel: issue 13, part 3")
