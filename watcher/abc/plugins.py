"""The extension points around the store: :class:`Source` (and what it is given and
returns), :class:`Sink`, :class:`Ownership`, and the optional abilities a source or a sink
may have (:class:`Follows`, :class:`CountsFinalErrors`, :class:`Previews`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from watcher.model.jobs import Job
from watcher.model.outbox import Envelope
from watcher.model.snapshot import Cursor, JobKind, Snapshot


@dataclass(frozen=True)
class PollContext:
    """What a source may know of the past when it polls."""

    cursor: Cursor
    active: Mapping[str, Snapshot]  # non-terminal jobs being followed
    now: float
    lookup: Callable[[Sequence[str]], Awaitable[Mapping[str, Snapshot]]]
    # Record these jobs now, with this cursor, before the cycle ends: what is urgent goes
    # out without waiting for the slow part of the cycle (checkpoint sweeps), and a long
    # listing need not be held in memory whole. None: everything comes in the PollResult.
    flush: Callable[[Sequence[Job], Cursor], Awaitable[None]] | None = None


@dataclass
class PollResult:
    """Jobs worth diffing this cycle (changed, new, or detailed for checkpoints)."""

    jobs: list[Job]
    cursor: Cursor
    requests: int = 0
    malformed: int = 0  # items skipped because they could not be read
    # Why the source works in a degraded way (its event streams refused or failing):
    # reported once per spell as ``watcher.source.degraded``. None: all is well.
    degraded: str | None = None


class Source(Protocol):
    name: str
    kind: JobKind
    interval: float

    async def poll(self, ctx: PollContext) -> PollResult:
        """One cycle: what changed since ``ctx`` (the jobs to diff) and the cursor to commit
        with them."""
        ...

    @property
    def notice(self) -> str | None:
        """What an operator should know of the API short of a failure (its paging is
        inconsistent…), shown on ``/readyz``; ``None`` when nothing."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds (not the shared HTTP client, which it does not own)."""
        ...


class Sink(Protocol):
    """Formats and delivers; raises :class:`~watcher.exceptions.DeliveryError` on failure.

    Retry, dedup, routing and commits belong to the dispatcher around it.
    """

    name: str

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver ``batch`` (this sink's share of a round, in order); on failure raise
        ``DeliveryError``: what was sent before it was accepted."""
        ...

    async def aclose(self) -> None:
        """Release what the sink holds (not the shared HTTP client, which it does not own)."""
        ...


class Ownership(Protocol):
    """Which sources this replica polls, and whether it does the chores that must happen
    once per deployment (digests, heartbeats, rate-limited sinks, housekeeping).

    One process alone owns everything; replicas sharing a PostgreSQL database share the
    sources out through advisory locks (:mod:`watcher.app.coordination`).
    """

    @property
    def replica(self) -> str:
        """This replica's name, as status and /readyz show it."""
        ...

    @property
    def owned(self) -> Mapping[str, float]:
        """Source -> wall time this replica took it."""
        ...

    @property
    def leader(self) -> bool:
        """Whether this replica does the once-per-deployment chores."""
        ...

    def owners(self) -> Mapping[str, str | None]:
        """Source -> the replica polling it (``None``: nobody right now), as last seen."""
        ...

    def replicas(self) -> Collection[str] | None:
        """The replicas alive, as last seen (their member locks held): a replica missing
        here has died, and its delivery claims may go at once. ``None``: this process is
        alone (nobody else could have claimed anything)."""
        ...

    async def run(self, on_acquired: Callable[[str], None], on_lost: Callable[[str], None]) -> None:
        """Keep the share up to date until cancelled; ``on_lost`` is called the moment a
        source stops being ours (its poll must stop), ``on_acquired`` when one becomes ours."""
        ...

    async def take_free(self) -> None:
        """Take every source nobody holds, at once (``watcher once``)."""
        ...

    async def aclose(self) -> None:
        """Release what this replica holds (its locks go with its connection)."""
        ...


@runtime_checkable
class Follows(Protocol):
    """A source that also follows event streams while this replica owns it (Workflows):
    each event wakes a poll cycle of the source, which confirms and records it."""

    async def follow(
        self, load_cursor: Callable[[], Awaitable[Cursor]], nudge: Callable[[], None]
    ) -> None:
        """Follow the streams until cancelled; never raises for a stream's own failures.
        ``load_cursor`` reads the source's committed cursor (where each stream resumes),
        ``nudge`` asks for a poll cycle of the source now."""
        ...

    def streams_open(self) -> int:
        """How many streams are connected now."""
        ...


@runtime_checkable
class CountsFinalErrors(Protocol):
    """A sink that counts its final (not retried) errors by reason, for
    ``watcher_sink_final_errors_total``; reasons are short words, counts only grow."""

    @property
    def final_errors(self) -> Mapping[str, int]:
        """Final errors so far, by reason."""
        ...


@runtime_checkable
class Previews(Protocol):
    """A sink that can show what it would send for a batch, without sending it
    (``watcher render``): a text as is, or a JSON object."""

    def preview(self, batch: Sequence[Envelope]) -> str | dict[str, Any]:
        """What the sink would send for ``batch``: a text as is, or a JSON object."""
        ...


@dataclass(frozen=True)
class CancelAnswer:
    """What a source's API said to a cancel request, in words for the person who asked
    (API text already cleaned, never a secret)."""

    ok: bool
    message: str
    # One word for logs and the audit: requested, not_found, conflict, key_refused,
    # retired, invalid_id, failed.
    outcome: str
    status: str | None = None  # the job's status as the API now reports it, when it said


@runtime_checkable
class Cancels(Protocol):
    """A source whose API can cancel one of its jobs (every Mistral family can)."""

    async def cancel(self, job_id: str) -> CancelAnswer:
        """Ask the API to cancel ``job_id``; never raises for the API's answers."""
        ...
