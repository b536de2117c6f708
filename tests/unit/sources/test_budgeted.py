"""A source under max_requests_per_minute (BudgetedSource, Rationing): what a steady cycle
requests within its share of the budget, what it finds, what it leaves for later, and the
full cycles it keeps whole."""

from __future__ import annotations

import pytest

from tests.factories import T0
from tests.unit.sources.fake_api import (
    NOW,
    Api,
    Clock,
    budgeted_source,
    context,
    followed,
    ft_job,
)
from watcher.abc import PollResult
from watcher.exceptions import SourceUnavailable
from watcher.model.snapshot import Cursor
from watcher.sources.budget import BudgetedApiClient, RequestBudget
from watcher.sources.budgeted import Rationing
from watcher.sources.fine_tuning import KIND, FineTuningSource
from watcher.sources.jobs import iso
from watcher.sources.listing import UNKNOWN_STATUS_EVERY
from watcher.sources.policy import Adaptive, DwellTimes, RoundRobin

RECENT = int(NOW) - 120  # jobs in their status for two minutes: unlikely to have left it


def steady_cursor() -> Cursor:
    """A steady state's cursor: every followed job is older than the watermark."""
    return Cursor(watermark=int(NOW) - 10, last_full_sync=NOW - 60, baseline_done=True)


def reported(result: PollResult) -> list[tuple[str, str]]:
    return [(job.id, job.status) for job in result.jobs]


def test_budgeted_composes_a_listing_source() -> None:
    """budgeted() wraps a family's listing source, whose API client waits on the budget."""
    source = budgeted_source(Api(), 4, Clock())
    assert (FineTuningSource, "ft", KIND, 30.0) == (
        type(source.source),
        source.name,
        source.kind,
        source.interval,
    )
    assert isinstance(source.api, BudgetedApiClient)


async def test_a_steady_cycle_spends_its_share() -> None:
    """Four requests a minute every 30 s: a steady cycle makes two. No answer has shown any
    job yet: the new-jobs listing reaches back over the five newest (half a page of ten:
    the three QUEUED, the two newest runs) and the RUNNING listing shows the other runs."""
    jobs = [ft_job(f"q{n}", "QUEUED", RECENT + n) for n in range(3)]
    jobs += [ft_job(f"r{n}", "RUNNING", RECENT - 1000 + 100 * n) for n in range(8)]
    api = Api(*jobs)
    source = budgeted_source(api, 4, Clock())
    result = await source.poll(context(followed(*jobs), cursor=steady_cursor()))
    assert 2 == result.requests
    assert [("list", "new", 0), ("list", "RUNNING", 0)] == api.asked
    assert iso(RECENT - 1000 + 100 * 6 - 60) == api.queries[0]["created_after"]
    assert {j["id"] for j in jobs} == set(source.rationing.checked)


async def test_a_steady_cycle_finds_a_run_that_ended() -> None:
    """The new-jobs listing, reaching back over the three runs, shows that one ended; its
    detail tells how. The others are shown unchanged: two requests in all."""
    jobs = [ft_job(f"r{n}", "RUNNING", RECENT + n) for n in range(3)]
    active = followed(*jobs)
    api = Api(*jobs)
    api.move("r1", "SUCCESS", int(NOW) - 5)
    result = await budgeted_source(api, 60, Clock()).poll(context(active, cursor=steady_cursor()))
    assert [("r1", "SUCCESS")] == reported(result)
    assert [("list", "new", 0), ("detail", "r1")] == api.asked


async def test_a_run_that_ended_on_its_page_gets_a_detail() -> None:
    """Without the reaching listing (round robin), a RUNNING job gone from its page gets a
    detail, which tells how it ended."""
    jobs = [ft_job(f"r{n}", "RUNNING", RECENT + n) for n in range(3)]
    active = followed(*jobs)
    api = Api(*jobs)
    api.move("r1", "SUCCESS", int(NOW) - 5)
    source = budgeted_source(api, 60, Clock(), RoundRobin())
    result = await source.poll(context(active, cursor=steady_cursor()))
    assert [("r1", "SUCCESS")] == reported(result)
    assert [("list", "new", 0), ("list", "RUNNING", 0), ("detail", "r1")] == api.asked
    assert "created_after" in api.queries[0]


async def test_details_it_cannot_pay_come_first_next_cycle() -> None:
    """Three runs ended, a share of two requests: the first cycle's listing shows them
    ended and pays one detail, owing two; the next pays those before anything else."""
    jobs = [ft_job(f"r{n}", "RUNNING", RECENT + n) for n in range(3)]
    active = followed(*jobs)
    api = Api(*jobs)
    for n in range(3):
        api.move(f"r{n}", "SUCCESS", int(NOW) - 5)
    clock = Clock()
    source = budgeted_source(api, 4, clock)
    first = await source.poll(context(active, cursor=steady_cursor()))
    assert [("list", "new", 0), ("detail", "r2")] == api.asked
    assert ([("r2", "SUCCESS")], {"r1": None, "r0": None}) == (
        reported(first),
        source.rationing.pending,
    )
    api.asked.clear()
    clock.now += 30
    second = await source.poll(context(active, now=clock.now, cursor=steady_cursor()))
    assert [("detail", "r1"), ("detail", "r0")] == api.asked
    assert ([("r0", "SUCCESS"), ("r1", "SUCCESS")], {}) == (
        reported(second),
        source.rationing.pending,
    )


async def test_a_resync_lists_only_recent_jobs() -> None:
    """Under a budget a resync lists the jobs created since shortly before the last one;
    older followed jobs are left to the steady cycles, and the listed ones count as checked."""
    old = ft_job("old", "RUNNING", T0)
    recent = ft_job("recent", "QUEUED", int(NOW) - 600)
    api = Api(old, recent)
    source = budgeted_source(api, 60, Clock())
    last = NOW - 3600
    cursor = Cursor(watermark=int(NOW) - 600, last_full_sync=last, baseline_done=True)
    result = await source.poll(context(followed(old, recent), cursor=cursor))
    assert [("list", "new", 0)] == api.asked
    assert iso(int(last - 3600 - 60)) == api.queries[0]["created_after"]
    assert (NOW, {"recent": NOW}) == (result.cursor.last_full_sync, source.rationing.checked)


async def test_a_cycle_that_fails_remembers_nothing() -> None:
    """A steady cycle that raises leaves what the source owes and checked as it was."""
    jobs = [ft_job("r", "RUNNING", T0)]
    api = Api(*jobs)
    api.failing = True
    source = budgeted_source(api, 60, Clock(), max_retries=0)
    source.rationing.pending = {"r": None}
    with pytest.raises(SourceUnavailable):
        await source.poll(context(followed(*jobs)))
    assert ({"r": None}, {}, None) == (
        source.rationing.pending,
        source.rationing.checked,
        source.rationing.last_cycle_at,
    )


async def test_an_undocumented_status_is_checked_every_few_intervals() -> None:
    """A job in a status no listing can filter on gets its detail once every
    UNKNOWN_STATUS_EVERY intervals, not every cycle."""
    paused = ft_job("p", "PAUSED", T0)
    active = followed(paused)
    api = Api(paused)
    clock = Clock()
    source = budgeted_source(api, 60, clock, RoundRobin())  # it never ranks a detail
    asked: list[bool] = []
    for step in (0, 1, UNKNOWN_STATUS_EVERY - 1, UNKNOWN_STATUS_EVERY):
        api.asked.clear()
        clock.now = NOW + 30 * step
        await source.poll(context(active, now=clock.now))
        asked.append(("detail", "p") in api.asked)
    assert [True, False, False, True] == asked


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        pytest.param(0, 300.0, id="ten intervals"),
        pytest.param(9, 1500.0, id="a tenth of the budget lists ten pages every 1500 s"),
    ],
)
def test_max_staleness(pages: int, expected: float) -> None:
    """At most ten intervals between two checks of a job, or longer when listing them all
    that often would take more than a tenth of the budget."""
    dwell = DwellTimes({})
    rationing = Rationing(RequestBudget(4), Adaptive(dwell), dwell, interval=30, page_size=10)
    assert expected == rationing.max_staleness(pages)


async def test_the_first_cycle_is_whole_and_paced() -> None:
    """The first cycle lists everything and fetches every new job whole, however long the
    budget makes it wait (two requests a minute: six requests take over two minutes)."""
    jobs = [ft_job(f"q{n}", "QUEUED", RECENT + n) for n in range(5)]
    clock = Clock()
    source = budgeted_source(Api(*jobs), 2, clock)
    result = await source.poll(context({}, cursor=Cursor()))
    assert (6, 5) == (result.requests, len(result.jobs))
    assert clock.now - NOW >= 120
    assert {f"q{n}" for n in range(5)} == set(source.rationing.checked)


@pytest.mark.parametrize("newest_first", [True, False])
async def test_a_full_reaching_page_falls_back_to_the_whole_new_listing(newest_first: bool) -> None:
    """The new-jobs listing reaching back over three followed jobs comes back full of the
    twelve jobs created since the watermark (pages of ten): the new-jobs listing is read
    whole too, so none of them is missed (also when the API does not list newest first),
    and the next reach covers half as many followed jobs."""
    now = int(NOW)
    old = [ft_job(f"q{n}", "QUEUED", now - 600 + n) for n in range(3)]
    new = [ft_job(f"n{n:02}", "QUEUED", now - 100 + n) for n in range(12)]
    api = Api(*old, *new)
    api.newest_first = newest_first
    source = budgeted_source(api, 60, Clock())
    cursor = Cursor(watermark=now - 300, last_full_sync=NOW - 60, baseline_done=True)
    result = await source.poll(context(followed(*old), cursor=cursor))
    assert [("list", "new", 0), ("list", "new", 0), ("list", "new", 1)] == api.asked[:3]
    assert [iso(now - 600 - 60), iso(now - 300 - 60)] == [
        q["created_after"] for q in api.queries[:2]
    ]
    assert {j["id"] for j in new} <= {job.id for job in result.jobs}
    assert now - 100 + 11 == result.cursor.watermark
    assert 2 == source.rationing.reach_room


async def test_a_reaching_page_with_room_is_all_it_takes() -> None:
    """Two new jobs and three followed ones fit on the reaching page: one request, both
    new jobs reported, the followed ones checked, and the room grows back a step."""
    now = int(NOW)
    old = [ft_job(f"q{n}", "QUEUED", now - 600 + n) for n in range(3)]
    new = [ft_job(f"n{n}", "QUEUED", now - 100 + n) for n in range(2)]
    api = Api(*old, *new)
    source = budgeted_source(api, 60, Clock())
    source.rationing.reach_room = 3
    cursor = Cursor(watermark=now - 300, last_full_sync=NOW - 60, baseline_done=True)
    result = await source.poll(context(followed(*old), cursor=cursor))
    assert [("list", "new", 0)] == api.asked
    assert iso(now - 600 - 60) == api.queries[0]["created_after"]
    assert {"n0", "n1"} == {job.id for job in result.jobs}
    assert {"q0", "q1", "q2", "n0", "n1"} == set(source.rationing.checked)
    assert 4 == source.rationing.reach_room
