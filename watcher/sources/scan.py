"""What one whole cycle of a listing source gathered so far (:class:`Scan`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.model.jobs import Job
from watcher.model.snapshot import Snapshot


@dataclass
class Scan:
    """What a cycle gathered so far."""

    seen: set[str] = field(default_factory=set)  # ids listed this cycle
    out: dict[str, Job] = field(default_factory=dict)  # to record
    urgent: list[str] = field(default_factory=list)  # details the cycle's news needs
    sweep: list[str] = field(default_factory=list)  # details of jobs listed unchanged
    previous: dict[str, Snapshot] = field(default_factory=dict)  # of the jobs to detail
    reported: set[str] = field(default_factory=set)  # ids already handed over
    newest: int | None = None
    malformed: int = 0

    def drain(self) -> list[Job]:
        """The jobs to record, oldest first; forgotten here."""
        jobs = sorted(self.out.values(), key=lambda j: (j.created_at, j.id))
        self.reported.update(self.out)
        self.out = {}
        return jobs
