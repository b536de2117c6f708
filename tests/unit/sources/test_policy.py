"""The request budget's pure parts: likelihoods, the adaptive and round-robin rankings, and
the budget's window and credit (fake clock, no I/O)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.sources.budget import RequestBudget
from watcher.sources.policy import (
    NEW,
    Adaptive,
    DwellTimes,
    Followed,
    Probe,
    RoundRobin,
    Situation,
    expected_duration,
    likelihood,
    pages,
)

NOW = 1_000_000.0
DWELL = {"QUEUED": 120.0, "VALIDATING": 120.0, "RUNNING": 3600.0}


def job(
    job_id: str,
    status: str = "RUNNING",
    *,
    created_at: int = 0,
    since: float = NOW - 600,
    checked: float | None = NOW - 30,
    end: float | None = None,
    spread: float = 600.0,
) -> Followed:
    return Followed(
        job_id=job_id,
        status=status,
        created_at=created_at,
        since=since,
        checked_at=checked,
        expected_end=end,
        spread=spread,
    )


def situation(jobs: list[Followed], allowance: int = 5, **overrides: object) -> Situation:
    base = Situation(
        now=NOW,
        jobs=jobs,
        page_size=10,
        allowance=allowance,
        max_staleness=3600.0,
        new_checked_at=NOW - 30,
        new_rate=0.0,
        ending=frozenset({"RUNNING"}),
        initial="QUEUED",
        layout=pages(jobs, 10),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_nothing_changes_in_no_time() -> None:
    """A job checked this very moment has no pending change."""
    assert 0.0 == likelihood(job("a", checked=NOW), NOW, DwellTimes(DWELL))


def test_likelihood_grows_with_time_unchecked() -> None:
    """The longer since the last check, the likelier a change is waiting."""
    dwell = DwellTimes(DWELL)
    values = [likelihood(job("a", "QUEUED", checked=NOW - d), NOW, dwell) for d in (10, 60, 600)]
    assert values == sorted(values)
    assert 0 < values[0] < values[-1] < 1


def test_a_run_near_its_expected_end_is_likelier_to_change_than_one_far_from_it() -> None:
    """Same time unchecked: the job due to end now beats the one due in five hours, and an
    overdue one stays likely."""
    dwell = DwellTimes(DWELL)
    near = likelihood(job("a", end=NOW), NOW, dwell)
    far = likelihood(job("b", end=NOW + 5 * 3600), NOW, dwell)
    overdue = likelihood(job("c", end=NOW - 3600), NOW, dwell)
    assert far < near
    assert far < overdue
    assert far > 0  # a run may still fail at any moment


def test_a_parked_job_is_less_likely_to_move_than_a_fresh_one() -> None:
    """A job that has sat in VALIDATED ten times its typical time is parked (auto_start off)."""
    dwell = DwellTimes({"VALIDATED": 60.0})
    fresh = likelihood(job("a", "VALIDATED", since=NOW - 40), NOW, dwell)
    parked = likelihood(job("b", "VALIDATED", since=NOW - 3600), NOW, dwell)
    assert parked < fresh


def test_observed_dwell_times_move_the_prior() -> None:
    """Each observation pulls the typical time a little towards it, within bounds."""
    dwell = DwellTimes({"QUEUED": 300.0})
    for _ in range(200):
        dwell.observe("QUEUED", 60.0)
    assert 60.0 == pytest.approx(dwell.mean("QUEUED"), rel=0.01)
    dwell.observe("QUEUED", -5.0)
    assert dwell.mean("QUEUED") > 0
    assert 3600.0 == DwellTimes({}).mean("ANYTHING")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({"expected_duration_seconds": 900}, 900.0, id="int"),
        pytest.param({"expected_duration_seconds": 90.5}, 90.5, id="float"),
        pytest.param({"expected_duration_seconds": "1800"}, 1800.0, id="batch string"),
        pytest.param({"expected_duration_seconds": None}, None, id="null until validated"),
        pytest.param({"expected_duration_seconds": True}, None, id="bool"),
        pytest.param({"expected_duration_seconds": -5}, None, id="negative"),
        pytest.param({"expected_duration_seconds": "soon"}, None, id="text"),
        pytest.param({"expected_duration_seconds": math.nan}, None, id="nan"),
        pytest.param(None, None, id="no metadata"),
    ],
)
def test_expected_duration_is_read_tolerantly(metadata: object, expected: float | None) -> None:
    """Only a positive finite number of seconds counts."""
    assert expected == expected_duration({"metadata": metadata})


def test_pages_follow_the_listing_order_and_skip_unlistable_jobs() -> None:
    """Newest first, page_size a page; an undocumented status has no listing."""
    jobs = [job(f"r{n}", created_at=n) for n in range(25)]
    jobs.append(replace(job("odd", "PAUSED"), listable=False))
    layout = pages(jobs, 10)
    assert ["RUNNING"] == list(layout)
    assert [10, 10, 5] == [len(chunk) for chunk in layout["RUNNING"]]
    assert "r24" == layout["RUNNING"][0][0].job_id


def test_jobs_likely_gone_shift_the_pages_up() -> None:
    """With half the newer jobs expected to have left, a job's expected place moves up."""
    jobs = [job(f"r{n}", created_at=n) for n in range(20)]
    layout = pages(jobs, 10, lambda j: 0.5)
    assert [20] == [len(chunk) for chunk in layout["RUNNING"]]


def test_short_lived_statuses_and_new_jobs_come_before_quiet_runs() -> None:
    """Busy QUEUED and VALIDATING pages and the new-jobs listing rank before pages of
    runs far from their end."""
    dwell = DwellTimes(DWELL)
    quiet = [job(f"r{n}", created_at=n, end=NOW + 8 * 3600) for n in range(30)]
    busy = [job(f"q{n}", "QUEUED", created_at=100 + n) for n in range(4)]
    busy += [job(f"v{n}", "VALIDATING", created_at=200 + n) for n in range(4)]
    ranked = Adaptive(dwell).rank(situation(quiet + busy, allowance=3, new_rate=0.05))
    assert {Probe("page", "QUEUED", 0), Probe("page", "VALIDATING", 0), NEW} == set(ranked)


def test_a_job_due_to_end_gets_its_own_detail() -> None:
    """One overdue run among quiet ones is worth a detail more than its whole page."""
    dwell = DwellTimes(DWELL)
    quiet = [job(f"r{n}", created_at=n, end=NOW + 8 * 3600) for n in range(9)]
    due = job("due", created_at=50, end=NOW - 1800, spread=300, checked=NOW - 300)
    ranked = Adaptive(dwell).rank(situation([*quiet, due], allowance=1))
    assert [Probe("detail", job_id="due")] == ranked


def test_stale_jobs_come_first() -> None:
    """A page whose jobs have gone unchecked past max_staleness outranks likely changes."""
    dwell = DwellTimes(DWELL)
    stale = [job(f"r{n}", created_at=n, end=NOW + 8 * 3600, checked=NOW - 7200) for n in range(10)]
    busy = [job(f"q{n}", "QUEUED", created_at=100 + n) for n in range(4)]
    ranked = Adaptive(dwell).rank(situation(stale + busy, allowance=1))
    assert [Probe("page", "RUNNING", 0)] == ranked


def test_a_job_its_page_missed_does_not_make_the_page_urgent() -> None:
    """A stale job its predicted page did not show leaves that page to ordinary odds."""
    dwell = DwellTimes(DWELL)
    missed = replace(job("r0", end=NOW + 8 * 3600, checked=NOW - 7200), page_missed=True)
    busy = [job(f"q{n}", "QUEUED", created_at=100 + n) for n in range(4)]
    ranked = Adaptive(dwell).rank(situation([missed, *busy], allowance=1))
    assert [Probe("page", "QUEUED", 0)] == ranked


def test_new_jobs_listed_by_the_first_status_page() -> None:
    """New jobs still QUEUED show on its first page: once that page is ranked, the
    new-jobs listing is worth little; when it has not been made for max_staleness, it
    comes first (only it moves the watermark)."""
    dwell = DwellTimes(DWELL)
    busy = [job(f"q{n}", "QUEUED", created_at=100 + n) for n in range(3)]
    ranked = Adaptive(dwell).rank(situation(busy, allowance=1, new_rate=0.1))
    assert [Probe("page", "QUEUED", 0)] == ranked
    overdue = situation(busy, allowance=1, new_rate=0.1, new_checked_at=NOW - 7200)
    assert [NEW] == Adaptive(dwell).rank(overdue)


def test_the_new_jobs_listing_reaches_back_over_the_short_lived_statuses() -> None:
    """With room to reach back, one new-jobs listing checks the eight QUEUED and
    VALIDATING jobs (the newest) instead of two status pages; the quiet runs older than
    them are not worth widening it further."""
    dwell = DwellTimes(DWELL)
    quiet = [job(f"r{n}", created_at=n, end=NOW + 8 * 3600) for n in range(30)]
    busy = [job(f"q{n}", "QUEUED", created_at=100 + n) for n in range(4)]
    busy += [job(f"v{n}", "VALIDATING", created_at=200 + n) for n in range(4)]
    s = situation(quiet + busy, allowance=1, new_rate=0.05, reach_room=10)
    ranked = Adaptive(dwell).rank(s)
    assert [NEW] == ranked
    assert 100 == ranked[0].reach
    # Without room, the same jobs take their status pages, as before.
    no_room = Adaptive(dwell).rank(replace(s, allowance=3, reach_room=0))
    assert {Probe("page", "QUEUED", 0), Probe("page", "VALIDATING", 0), NEW} == set(no_room)
    assert all(p.reach is None for p in no_room)


def test_the_reach_is_bounded_by_its_room_and_covers_what_it_shows() -> None:
    """Only ``reach_room`` of the newest jobs are reached over (four stale jobs of three
    statuses): the two older ones need their pages, and the QUEUED page, all of whose
    jobs the listing covers, is not made."""
    dwell = DwellTimes(DWELL)
    stale = [
        job(name, status, created_at=created, checked=NOW - 7200)
        for name, status, created in [
            ("q1", "QUEUED", 8),
            ("v1", "VALIDATING", 7),
            ("d1", "VALIDATED", 6),
            ("q0", "QUEUED", 5),
            ("v0", "VALIDATING", 4),
            ("d0", "VALIDATED", 3),
        ]
    ]
    ranked = Adaptive(dwell).rank(situation(stale, allowance=5, reach_room=4))
    assert (NEW, 5) == (ranked[0], ranked[0].reach)
    assert {Probe("page", "VALIDATING", 0), Probe("page", "VALIDATED", 0)} == set(ranked[1:])
    assert 3 == len(ranked)


def test_a_reach_is_not_part_of_the_probe() -> None:
    """The wider new-jobs listing is the same listing: one entry in ``probed``."""
    assert NEW == Probe("new", reach=5)
    assert 1 == len({NEW: 1.0, Probe("new", reach=5): 2.0})


def test_round_robin_makes_the_oldest_listing_first() -> None:
    """The uniform policy ignores likelihoods: every listing in turn, never made first."""
    jobs = [job(f"r{n}", created_at=n) for n in range(15)]
    jobs += [job("q", "QUEUED", created_at=100)]
    probed = {NEW: NOW - 30, Probe("page", "QUEUED", 0): NOW - 90}
    ranked = RoundRobin().rank(situation(jobs, probed=probed))
    assert [
        Probe("page", "RUNNING", 0),
        Probe("page", "RUNNING", 1),
        Probe("page", "QUEUED", 0),
        NEW,
    ] == ranked


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["QUEUED", "VALIDATING", "RUNNING", "PAUSED"]),
            st.integers(0, 10_000),
            st.floats(0, 20_000),
            st.one_of(st.none(), st.floats(-20_000, 20_000)),
        ),
        max_size=60,
    ),
    st.integers(0, 12),
)
def test_rankings_are_sound(
    raw: list[tuple[str, int, float, float | None]], allowance: int
) -> None:
    """Whatever the jobs: no probe twice, details only of followed jobs, pages only of
    listable statuses; round robin offers every listing exactly once."""
    jobs = [
        replace(
            job(
                f"j{n}",
                status,
                created_at=created,
                checked=None if n % 7 == 0 else NOW - ago,
                end=None if end is None else NOW + end,
            ),
            listable=status != "PAUSED",
        )
        for n, (status, created, ago, end) in enumerate(raw)
    ]
    s = situation(jobs, allowance=allowance, new_rate=0.01, reach_room=allowance)
    ranked = Adaptive(DwellTimes(DWELL)).rank(s)
    assert len(ranked) == len(set(ranked))
    ids = {j.job_id for j in jobs}
    listable = {j.status for j in jobs if j.listable}
    for probe in ranked:
        assert probe.reach is None or probe.reach in {j.created_at for j in jobs}
        assert probe.kind != "detail" or probe.job_id in ids
        assert probe.kind != "page" or probe.status in listable | {"QUEUED"}
    everything = RoundRobin().rank(s)
    assert 1 + sum(len(chunks) for chunks in s.layout.values()) == len(everything)
    assert len(everything) == len(set(everything))


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_allowance_is_one_interval_share_and_refills() -> None:
    """A cycle every 30 s plans with half the minute's budget; unspent credit does not pile
    up past that share; it refills with time."""
    clock = FakeTime()
    budget = RequestBudget(12, interval=30, clock=clock, sleep=clock.sleep)
    assert 6 == budget.allowance()
    clock.now += 600
    assert 6 == budget.allowance()


async def test_the_window_never_holds_more_than_the_budget() -> None:
    """Requests past the budget wait until the oldest of the last minute leaves it."""
    clock = FakeTime()
    budget = RequestBudget(5, interval=60, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(12):
        await budget.acquire()
        sent.append(clock.now)
        clock.now += 1
    assert all(sum(1 for t in sent if s <= t < s + 60) <= 5 for s in sent)
    assert 2 == len(clock.slept)  # after the 5th and the 10th


async def test_spending_beyond_the_credit_leaves_less_for_the_next_cycles() -> None:
    """A paced full listing that spent more than its share is paid back by later cycles."""
    clock = FakeTime()
    budget = RequestBudget(10, interval=30, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await budget.acquire()
    clock.now += 30
    assert 0 == budget.allowance()
    clock.now += 60
    assert 5 == budget.allowance()


def test_a_budget_below_one_is_refused() -> None:
    """Zero requests a minute would follow nothing."""
    with pytest.raises(ValueError, match="at least 1"):
        RequestBudget(0)
