"""One job per id on a page: an API that lists an id twice on one page is told of when the
copies disagree, and one copy is kept by a rule that does not depend on chance.

The copy kept is the one with the latest ``modified_at`` (the freshest state the API
showed); on a tie, the first as sent. Copies that are the same say nothing new and pass in
silence; copies that differ are a ``conflicting_duplicate_ids`` warning naming the source and
the id (escaped), once per cycle per id.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from watcher.model.jobs import Job
from watcher.render.text import clean

log = structlog.get_logger(__name__)


class Duplicates:
    """The conflicting ids one source has logged this cycle."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._logged: set[str] = set()

    def clear(self) -> None:
        """A new cycle: each conflict is worth a warning again."""
        self._logged.clear()

    def unique(self, jobs: Sequence[Job]) -> list[Job]:
        """``jobs`` (one page, in the order sent) with one copy per id, in the order of
        their first copies."""
        kept: dict[str, Job] = {}
        conflicting: dict[str, int] = {}
        for job in jobs:
            other = kept.get(job.id)
            if other is None:
                kept[job.id] = job
                continue
            if job.model_dump_json() != other.model_dump_json():  # NaN is not != itself here
                conflicting[job.id] = conflicting.get(job.id, 1) + 1
            if job.modified_at > other.modified_at:
                kept[job.id] = job
        for job_id, copies in conflicting.items():
            if job_id not in self._logged:
                self._logged.add(job_id)
                log.warning(
                    "conflicting_duplicate_ids",
                    source=self.source,
                    job_id=clean(job_id, 255, mark="?"),
                    copies=copies,
                    kept="the latest modified_at (the first sent on a tie)",
                )
        return list(kept.values())
