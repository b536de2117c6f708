"""One steady cycle under a budget (SteadyCycle): what each request is chosen to show,
what the answers tell, and what is left owed for a later cycle."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.factories import T0
from tests.unit.sources.fake_api import Api, context, followed, ft_job, listing_source
from watcher.sources.steady import SteadyCycle


def statuses(cycle: SteadyCycle) -> list[tuple[str, str]]:
    return [(job.id, job.status) for job in cycle.result().jobs]


async def test_a_job_gone_from_its_page_is_fetched() -> None:
    """A followed job missing from a newest-first page, within the page's range, has left
    its status: it is owed a detail, which tells where it went."""
    jobs = [ft_job(f"q{n}", "QUEUED", T0 + n) for n in (1, 2, 3)]
    active = followed(*jobs)
    api = Api(*jobs)
    api.move("q2", "RUNNING", T0 + 500)
    cycle = SteadyCycle(listing_source(api), context(active), allowance=5)
    await cycle.page("QUEUED", 0)
    assert {"q2": None} == cycle.wanted
    await cycle.follow_up()
    assert [("list", "QUEUED", 0), ("detail", "q2")] == api.asked
    assert [("q2", "RUNNING")] == statuses(cycle)


async def test_a_job_beyond_the_page_says_nothing() -> None:
    """A followed job older than the last one of a page that is not the last page may be
    on the next page: nothing is concluded about it."""
    jobs = [ft_job(f"q{n}", "QUEUED", T0 + n) for n in (1, 2, 3)]
    cycle = SteadyCycle(listing_source(Api(*jobs), page_size=2), context(followed(*jobs)), 5)
    await cycle.page("QUEUED", 0)
    assert ({}, {"q3", "q2"}) == (cycle.wanted, cycle.shown)


async def test_an_empty_status_owes_every_job_in_it() -> None:
    """A status whose listing is empty: every job followed in it has left it."""
    jobs = [ft_job(f"q{n}", "QUEUED", T0 + n) for n in (1, 2)]
    api = Api()
    cycle = SteadyCycle(listing_source(api), context(followed(*jobs)), allowance=5)
    await cycle.page("QUEUED", 0)
    assert {"q1": None, "q2": None} == cycle.wanted


async def test_details_beyond_the_allowance_are_left_for_later() -> None:
    """Owed more details than it may request, a cycle fetches the first ones and keeps
    the rest owed."""
    jobs = [ft_job(f"r{n}", "RUNNING", T0 + n) for n in (1, 2, 3)]
    api = Api(*jobs)
    cycle = SteadyCycle(listing_source(api), context(followed(*jobs)), allowance=2)
    cycle.owe(["r1", "r2", "r3"])
    await cycle.follow_up()
    assert [("detail", "r1"), ("detail", "r2")] == api.asked
    assert ({"r3": None}, 0) == (cycle.wanted, cycle.left())


async def test_only_the_new_jobs_listing_moves_the_watermark() -> None:
    """A job newer than the watermark found on a status page is reported, but only the
    new-jobs listing moves the watermark (it may not have seen jobs in between)."""
    old = ft_job("q1", "QUEUED", T0 + 1)
    new = ft_job("n", "QUEUED", T0 + 60_000)
    api = Api(old, new)
    ctx = context(followed(old))
    cycle = SteadyCycle(listing_source(api), ctx, allowance=5)
    await cycle.page("QUEUED", 0)
    assert ([("n", "QUEUED")], ctx.cursor.watermark) == (
        statuses(cycle),
        cycle.result().cursor.watermark,
    )
    await cycle.new_jobs()
    assert [("list", "QUEUED", 0), ("list", "new", 0)] == api.asked
    assert T0 + 60_000 == cycle.result().cursor.watermark


async def test_jobs_gone_together_are_looked_for_where_they_went() -> None:
    """Two jobs gone from QUEUED are looked for on VALIDATING's first page: one request
    instead of two details."""
    jobs = [ft_job(f"q{n}", "QUEUED", T0 + n) for n in (1, 2, 3)]
    active = followed(*jobs)
    api = Api(*jobs)
    api.move("q1", "VALIDATING", T0 + 500)
    api.move("q2", "VALIDATING", T0 + 500)
    cycle = SteadyCycle(listing_source(api), context(active), allowance=5)
    await cycle.page("QUEUED", 0)
    await cycle.look_where_they_went()
    await cycle.follow_up()
    assert [("list", "QUEUED", 0), ("list", "VALIDATING", 0)] == api.asked
    assert [("q1", "VALIDATING"), ("q2", "VALIDATING")] == statuses(cycle)


async def test_a_whole_listing_read_concludes_on_every_job() -> None:
    """A listing that is not newest first says nothing page by page; once every page of
    the status is read, a followed job none of them showed has left it."""
    jobs = [ft_job(f"q{n}", "QUEUED", T0 + n) for n in (1, 2, 3)]
    api = Api(*jobs[1:])
    api.newest_first = False
    cycle = SteadyCycle(listing_source(api, page_size=2), context(followed(*jobs)), 5)
    await cycle.page("QUEUED", 0)
    assert {} == cycle.wanted
    cycle.conclude_whole_listings()
    assert {"q1": None} == cycle.wanted


async def test_a_followed_job_the_api_no_longer_knows_ends_deleted() -> None:
    """A detail answered 404 for a followed job: it ends DELETED, and is not asked again."""
    gone = ft_job("r", "RUNNING", T0)
    source = listing_source(Api())
    cycle = SteadyCycle(source, context(followed(gone)), allowance=5)
    cycle.owe(["r"])
    await cycle.follow_up()
    assert [("r", "DELETED")] == statuses(cycle)
    assert {"r"} == source.missing


async def test_a_malformed_item_is_logged_once_per_steady_cycle() -> None:
    """Each steady cycle starts afresh: a malformed item still listed is warned about again
    (once per cycle, as in a whole cycle), and the cycle's requests count from zero."""
    good = ft_job("q1", "QUEUED", T0 + 1)
    bad = ft_job("x" * 300, "QUEUED", T0 + 2)  # an id no store or message can carry
    source = listing_source(Api(good, bad))
    warned = []
    for _ in range(2):
        with capture_logs() as logs:
            cycle = SteadyCycle(source, context(followed(good)), allowance=5)
            await cycle.page("QUEUED", 0)
        warned.append(sum(e["event"] == "malformed_job_skipped" for e in logs))
        assert 1 == source.api.requests
    assert [1, 1] == warned
