"""Paging that does not trust ``total``: the pure policy, then a fine-tuning source reading
a lying API (tests/hostile_api.py, in process) and what the user sees of it: which jobs are
reported, how many requests a cycle costs, one log line, the notice /readyz shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.factories import T0, job
from tests.hostile_api import KEY, HostileApi, jobs
from watcher.abc import PollContext
from watcher.config import FineTuningSourceConfig
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.sources.duplicates import Duplicates
from watcher.sources.fine_tuning import FineTuningSource
from watcher.sources.paging import Paging

NOW = float(T0 + 100)


def ids(page: int, size: int = 10) -> list[str]:
    return [f"j{page * size + i}" for i in range(size)]


@pytest.mark.parametrize(
    ("pages", "total", "expected_reads", "problem"),
    [
        pytest.param([10, 10, 5], 25, 3, None, id="honest total"),
        pytest.param([10, 10, 5], 10, 3, "total 10 announced, more", id="total too small"),
        pytest.param([10, 10, 5], None, 3, None, id="no total, short last page"),
        pytest.param([10, 3], 1000, 2, "the listing ended after 13", id="total too large"),
        pytest.param([10, 0], 10, 2, None, id="exactly full: one empty page more"),
    ],
)
def test_pages_are_read_while_full(
    pages: list[int], total: int | None, expected_reads: int, problem: str | None
) -> None:
    """Full pages call for the next one whatever total says; a short page ends the
    listing; a total off by a page or more is a problem."""
    paging = Paging(10)
    reads = 0
    for page, count in enumerate(pages):
        reads += 1
        if not paging.read(ids(page)[:count], count, total, now=0.0):
            break
    assert expected_reads == reads
    assert (problem is None) == (paging.problem is None)
    if problem is not None:
        assert problem in str(paging.problem)


def test_a_repeated_page_ends_the_listing() -> None:
    """A page that brings no new id ends it, however many pages total announces."""
    paging = Paging(10)
    assert paging.read(ids(0), 10, 1_000_000, now=0.0)
    assert not paging.read(ids(0), 10, 1_000_000, now=0.0)
    assert "page 1 repeats" in str(paging.problem)


def test_pages_and_time_are_capped() -> None:
    """Endless full pages of new ids end at the page cap, or at the cycle's deadline."""
    paging = Paging(10, max_pages=5)
    assert 5 == sum(1 for page in range(100) if paging.read(ids(page), 10, None, now=0.0)) + 1
    assert "cap per listing" in str(paging.problem)
    timed = Paging(10, ends_at=10.0)
    assert timed.read(ids(0), 10, None, now=9.0)
    assert not timed.read(ids(1), 10, None, now=10.0)
    assert "time allowed" in str(timed.problem)


def test_a_partly_repeated_page_goes_on() -> None:
    """Jobs created while paging shift pages: a few ids seen again are no repeat."""
    paging = Paging(10)
    assert paging.read(ids(0), 10, 30, now=0.0)
    assert paging.read([*ids(0)[-2:], *ids(1)[:8]], 10, 30, now=0.0)
    assert paging.problem is None


# --- a source against the lying API ---------------------------------------------------------


def source(api: HostileApi, client: httpx.AsyncClient, page_size: int = 10) -> FineTuningSource:
    config = FineTuningSourceConfig(
        name="ft",
        kind="mistral-fine-tuning",
        base_url="http://hostile.test",
        api_key=Secret(KEY),
        max_retries=0,
        page_size=page_size,
        on_start="notify",
    )
    return FineTuningSource(config, client)


async def first_poll(api: HostileApi, *, max_pages: int | None = None) -> tuple[Any, Any, Any]:
    """One first poll (a full listing, no baseline) of ``api``: the result, the source, the
    log events."""
    transport = httpx.ASGITransport(app=api.app())
    async with httpx.AsyncClient(transport=transport) as client:
        polled = source(api, client)
        if max_pages is not None:
            polled.max_pages = max_pages

        async def lookup(found: Sequence[str]) -> Mapping[str, Snapshot]:
            return {}

        with capture_logs() as logs:
            result = await polled.poll(PollContext(Cursor(baseline_done=True), {}, NOW, lookup))
            again = await polled.poll(PollContext(Cursor(baseline_done=True), {}, NOW, lookup))
    return (result, again), polled, logs


def warned(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "api_paging_inconsistent"]


@pytest.mark.parametrize(
    ("total", "lists"),
    [
        pytest.param(lambda n: n, 3, id="honest"),
        pytest.param(lambda n: 10, 3, id="total 10 of 25"),
        pytest.param(lambda n: None, 3, id="no total"),
    ],
)
async def test_every_job_is_reported_whatever_total_says(total: Any, lists: int) -> None:
    """25 jobs, pages of 10: all 25 come through in 3 list requests a cycle, whether total
    says 25, 10 or nothing."""
    api = HostileApi(jobs(25, "SUCCESS"), total=total)
    (result, _), _, _ = await first_poll(api)
    assert 25 == len({job.id for job in result.jobs})
    assert 2 * lists == api.lists()  # two cycles


async def test_a_small_total_is_said_once_and_shown_as_the_source_notice() -> None:
    """The lie is one warning for the process's life, and stays as the source's notice."""
    api = HostileApi(jobs(25, "SUCCESS"), total=lambda n: 10)
    _, polled, logs = await first_poll(api)
    assert 1 == len(warned(logs))
    assert "ft" == warned(logs)[0]["source"]
    assert "the API's paging is inconsistent: total 10 announced" in str(polled.notice)


async def test_a_huge_total_with_a_repeated_page_costs_two_requests() -> None:
    """total 100,000 and page 1 served again for every page after it: two list requests a
    cycle, the jobs of those pages reported, the repeat said once."""
    api = HostileApi(jobs(25, "SUCCESS"), total=lambda n: 100_000, repeat_from=1)
    (result, _), polled, logs = await first_poll(api)
    assert 10 == len(result.jobs)
    assert 2 * 2 == api.lists()
    assert 1 == len(warned(logs))
    assert "repeats the jobs of earlier pages" in str(polled.notice)


async def test_endless_full_pages_without_total_end_at_the_cap() -> None:
    """No total, every page full of new jobs for ever: the first poll ends at the page cap,
    with what it read."""
    api = HostileApi([], endless=True)
    (result, _), polled, logs = await first_poll(api, max_pages=30)
    assert 2 * 30 == api.lists()
    assert 300 == len(result.jobs)
    assert "cap per listing" in str(polled.notice)
    assert 1 == len(warned(logs))


async def test_conflicting_duplicate_ids_are_logged_once_per_cycle() -> None:
    """An id listed twice on its page with another content: one warning per cycle naming
    the source and the id; the job is reported once."""
    listed = jobs(3, "SUCCESS")
    newer = {**listed[1], "status": "FAILED", "modified_at": listed[1]["modified_at"] + 5}
    api = HostileApi(listed, conflicting={listed[1]["id"]: newer})
    (result, _), _, logs = await first_poll(api)
    conflicts = [e for e in logs if e["event"] == "conflicting_duplicate_ids"]
    assert [("ft", "job-001")] * 2 == [(e["source"], e["job_id"]) for e in conflicts]
    assert ["job-000", "job-001", "job-002"] == sorted(job.id for job in result.jobs)


@pytest.mark.parametrize("order", [1, -1], ids=["older first", "newer first"])
def test_the_copy_kept_is_the_latest_modified_whatever_the_order(order: int) -> None:
    """Of conflicting copies the latest modified_at is kept; on a tie the first sent."""
    old = job("j", "RUNNING", modified_at=T0)
    new = job("j", "FAILED", modified_at=T0 + 5)
    tie = job("t", "RUNNING", modified_at=T0)
    tie2 = job("t", "FAILED", modified_at=T0)
    with capture_logs() as logs:
        kept = Duplicates("ft").unique([*[old, new][::order], tie, tie2])
    assert [("j", "FAILED"), ("t", "RUNNING")] == [(j.id, j.status) for j in kept]
    assert ["j", "t"] == sorted(e["job_id"] for e in logs)


async def test_identical_duplicates_pass_in_silence() -> None:
    """The same item twice is no conflict: kept once, nothing logged."""
    listed = jobs(2, "SUCCESS")
    api = HostileApi(listed, conflicting={listed[0]["id"]: listed[0]})
    (result, _), _, logs = await first_poll(api)
    assert [] == [e for e in logs if e["event"] == "conflicting_duplicate_ids"]
    assert ["job-000", "job-001"] == sorted(job.id for job in result.jobs)
