"""Malformed items of an answer: skipped, the rest of the page kept, and each logged once
per cycle (an item may show in several listings and in its detail)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from watcher.model.jobs import Job, MalformedItem, key
from watcher.sources.decoding import Undecodable

log = structlog.get_logger(__name__)


def usable_id(raw: Any) -> str | None:
    """The id a malformed item can be named by: only one that is a valid id itself (an
    unusable id is no name: the item is anonymous, like one without an id)."""
    raw_id = raw.get("id") if isinstance(raw, Mapping) else None
    try:
        return key(raw_id, field="id", limit=255)
    except MalformedItem:
        return None


class Rejections:
    """What one cycle of a source logged as malformed."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._logged: set[str] = set()

    def clear(self) -> None:
        """A new cycle: every malformed item is worth one warning again."""
        self._logged.clear()

    def reject(self, job_id: str | None, reason: str, *, ident: str | None = None) -> None:
        """Log a malformed item once per cycle, by its id when it has a readable one."""
        ident = ident if ident is not None else str(job_id)
        if ident in self._logged or (ident == job_id and f"id:{job_id}" in self._logged):
            return  # logged already (a detail after its listing item: by its id)
        self._logged.add(ident)
        if job_id is not None:
            self._logged.add(f"id:{job_id}")
        named = {"job_id": job_id[:255]} if job_id is not None else {}
        log.warning("malformed_job_skipped", source=self.source, reason=reason, **named)

    def parse_page(
        self, items: Sequence[Any], parse: Callable[[Any], Job]
    ) -> tuple[list[Job], int]:
        """The usable jobs of one page, in the order sent, and how many items were not."""
        jobs: list[Job] = []
        malformed = 0
        anonymous: dict[int, int] = {}  # identical items without an id, counted on this page
        for raw in items:
            if isinstance(raw, Undecodable):  # too deep to decode: named by its id if read
                malformed += 1
                raw_id = usable_id({"id": raw.id})
                ident = None if raw_id is not None else f"#undecodable:{malformed}"
                self.reject(raw_id, raw.reason, ident=ident)
                continue
            try:
                jobs.append(parse(raw))
            except MalformedItem as exc:
                malformed += 1
                digest = hash(repr(raw)[:10_000])
                raw_id = usable_id(raw)
                if raw_id is not None:
                    # The same item in another listing is the same bytes; another item
                    # under the same id is not.
                    self.reject(raw_id, str(exc), ident=f"{raw_id}\0{digest}")
                    continue
                # No id: the n-th copy of these bytes on a page is the n-th item of them.
                anonymous[digest] = anonymous.get(digest, 0) + 1
                self.reject(None, str(exc), ident=f"#{digest}:{anonymous[digest]}")
        return jobs, malformed
