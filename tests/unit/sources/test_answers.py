"""Answers too large or too deep: refused without being buffered, costing only their job when
they are a detail, failing the cycle when they are a listing; and the byte budget that all the
reads of the process share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio
import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.hostile_api import HostileApi, Huge, jobs
from watcher.abc import PollContext
from watcher.exceptions import SourceProtocolError
from watcher.model.snapshot import Cursor, Snapshot
from watcher.sources.answers import ByteBudget

from .test_paging import NOW, source

CAP = 256 * 1024


async def test_a_read_waits_while_the_budget_is_held() -> None:
    """A share that does not fit waits until another read lets its share go."""
    budget = ByteBudget(32)
    order: list[str] = []
    first_in = anyio.Event()
    release = anyio.Event()

    async def first() -> None:
        async with budget.hold(20):
            first_in.set()
            await release.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with budget.hold(20):
            order.append("second in")

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
            await first_in.wait()
            await anyio.wait_all_tasks_blocked()
            assert [] == order and 20 == budget.used
            release.set()
    assert ["first out", "second in"] == order
    assert (0, 20) == (budget.used, budget.peak)  # never both at once


async def poll(api: HostileApi) -> tuple[list[str], list[dict[str, object]], ByteBudget]:
    """One first poll with a 256 KiB cap per answer: the jobs reported, the log, the budget."""
    budget = ByteBudget(2 * CAP)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app())) as client:
        polled = source(api, client)
        polled.api.max_answer = CAP
        polled.api.in_flight = budget

        async def lookup(found: Sequence[str]) -> Mapping[str, Snapshot]:
            return {}

        with capture_logs() as logs:
            result = await polled.poll(PollContext(Cursor(baseline_done=True), {}, NOW, lookup))
    return sorted(job.id for job in result.jobs), logs, budget


@pytest.mark.parametrize("how", ["content-length", "chunked", "gzip-bomb"])
async def test_a_huge_detail_costs_only_its_job(how: Huge) -> None:
    """A detail over the cap (declared, streamed, or inflating past it) skips that job with
    a warning naming the route and the size; the other jobs are reported."""
    listed = jobs(6)
    api = HostileApi(listed, huge={"job-002": (4 * CAP, how)})
    reported, logs, budget = await poll(api)
    assert [j["id"] for j in listed if j["id"] != "job-002"] == reported
    skipped = [e for e in logs if e["event"] == "malformed_job_skipped"]
    assert ["job-002"] == [e["job_id"] for e in skipped]
    assert "answer from detail is too large: " in str(skipped[0]["reason"])
    assert f"{CAP}-byte cap" in str(skipped[0]["reason"])
    assert budget.peak <= budget.limit


async def test_a_too_deep_detail_costs_only_its_job() -> None:
    """A detail nested past what is decoded is that job's problem alone."""
    api = HostileApi(jobs(3), deep={"job-001": 5000})
    # Listed with its deep metadata too: skipped from the listing already.
    reported, logs, _ = await poll(api)
    assert ["job-000", "job-002"] == reported
    skipped = [e for e in logs if e["event"] == "malformed_job_skipped"]
    assert ["job-001"] == [e["job_id"] for e in skipped]


async def test_a_huge_listing_page_fails_the_cycle() -> None:
    """A listing page over the cap cannot be skipped in part: the cycle fails, saying so."""
    api = HostileApi(jobs(3))
    api.jobs[0]["suffix"] = "s" * (2 * CAP)
    with pytest.raises(SourceProtocolError, match="answer from list is too large"):
        await poll(api)
