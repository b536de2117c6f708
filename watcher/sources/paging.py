"""When to stop reading a listing page by page: a policy that does not trust ``total``.

The listings page by ``page``/``page_size`` and announce a ``total``; a foreign API may get
it wrong (too small: jobs would be hidden; huge: a cycle of 100,000 requests; missing: pages
until a short one), or serve the same page again and again. So:

- a page is asked for after every **full** page, whatever ``total`` says (a ``total`` smaller
  than the truth hides nothing); a short page (or an empty one) ends the listing;
- a page that brings no id not seen on an earlier page is a **repeated page**: the listing
  ends there (a huge ``total`` with a looping server costs two requests, not 100,000);
- at most :data:`MAX_PAGES` pages per listing, and the listings of one cycle stop after its
  deadline (:func:`deadline`), with or without ``total`` (endless full pages of new ids end
  the first poll with bounded memory).

Each of these, and a ``total`` that disagrees with the listing by a page or more, is a
**problem** (:attr:`Paging.problem`): the source says once in its log, and on ``/readyz``,
that the API's paging is inconsistent (:class:`PagingHealth`). :class:`Paging` is pure: no
I/O, the clock passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

# Pages of one listing: 200,000 jobs at the default page size of 100 (the scale watcher is
# measured at is 100,000 jobs, listed whole on a resync).
MAX_PAGES = 2000
# Seconds a cycle may spend on its listings, at least (a 100,000-job resync takes about a
# minute); a source polled less often gets three of its intervals.
MIN_PAGING_SECONDS = 120.0


def deadline(now: float, interval: float) -> float:
    """When a cycle starting at ``now`` (monotonic) stops asking for more pages."""
    return now + max(MIN_PAGING_SECONDS, 3 * interval)


@dataclass
class Paging:
    """One listing read page by page: feed each page with :meth:`read`, which says whether
    to ask for the next one."""

    size: int  # the page_size asked for
    ends_at: float = math.inf  # the cycle's deadline (monotonic)
    max_pages: int = MAX_PAGES
    page: int = 0  # the next page to ask for
    listed: int = 0  # items read (malformed ones included)
    seen: set[str] = field(default_factory=set)  # ids read on earlier pages
    problem: str | None = None  # why the API's paging looks inconsistent (None: it does not)

    def read(self, ids: Iterable[str], count: int, total: int | None, *, now: float) -> bool:
        """Page :attr:`page` held ``count`` items, these ``ids`` among them, and announced
        ``total``: whether to ask for the next page."""
        page = self.page
        self.page += 1
        self.listed += count
        ids = list(ids)
        fresh = {i for i in ids if i not in self.seen}
        repeated = page > 0 and bool(ids) and not fresh
        self.seen.update(fresh)
        if repeated:
            self.problem = f"page {page} repeats the jobs of earlier pages"
            return False
        pages_said = math.ceil(total / self.size) if total is not None else None
        if count < self.size:  # short: the last page
            if pages_said is not None and page + 1 < pages_said:
                self.problem = (
                    f"total {total} announced, the listing ended after {self.listed} items"
                )
            return False
        if pages_said is not None and page >= pages_said and self.problem is None:
            self.problem = (
                f"total {total} announced, more jobs listed (read on while pages are full)"
            )
        if self.page >= self.max_pages:
            self.problem = f"listing stopped after {self.page} full pages (the cap per listing)"
            return False
        if now >= self.ends_at:
            self.problem = f"listing stopped after {self.page} pages (the time allowed per cycle)"
            return False
        return True


class PagingHealth:
    """What one source knows of its API's paging across cycles: the current cycle's
    deadline, and the inconsistency last seen (said once in the log, shown on ``/readyz``
    as long as the process runs)."""

    def __init__(self, source: str, interval: float) -> None:
        self.source = source
        self.interval = interval
        self.ends_at = math.inf
        self.notice: str | None = None
        self._said = False

    def begin_cycle(self, now: float) -> None:
        self.ends_at = deadline(now, self.interval)

    def listing(self, size: int, max_pages: int = MAX_PAGES) -> Paging:
        """The policy of one listing of this cycle."""
        return Paging(size, ends_at=self.ends_at, max_pages=max_pages)

    def done(self, paging: Paging) -> None:
        """A listing ended: its problem, if any, becomes the source's notice."""
        if paging.problem is None:
            return
        self.notice = f"the API's paging is inconsistent: {paging.problem}"
        if not self._said:
            self._said = True
            log.warning(
                "api_paging_inconsistent",
                source=self.source,
                problem=paging.problem,
                hint="pages are read while full, repeats end a listing, pages and time are"
                " capped; said once",
            )
