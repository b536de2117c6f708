"""The retry decision over every status code, Retry-After in all its forms, and the backoff's
bounds and jitter (no clock, no network: ``now`` and the random source are passed in)."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.deliver.retry import Verdict, backoff, classify, parse_retry_after

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
CAP = 3600.0


def expected_verdict(code: int) -> Verdict:
    """The table the module promises, written out by class: 2xx done; 408, 425, 429 and
    every 5xx retried; every other code (1xx, 3xx, the rest of 4xx) final."""
    if code // 100 == 2:
        return Verdict.DONE
    if code // 100 == 5 or code in {408, 425, 429}:
        return Verdict.RETRY
    return Verdict.FINAL


def test_every_status_code_gets_its_verdict() -> None:
    """Each status from 100 to 599 gets the verdict of the table, none forgotten."""
    codes = range(100, 600)
    assert {c: expected_verdict(c) for c in codes} == {c: classify(c) for c in codes}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(100, Verdict.FINAL, id="100 continue"),
        pytest.param(199, Verdict.FINAL, id="199 below 2xx"),
        pytest.param(200, Verdict.DONE, id="200 ok"),
        pytest.param(202, Verdict.DONE, id="202 accepted"),
        pytest.param(204, Verdict.DONE, id="204 no content"),
        pytest.param(299, Verdict.DONE, id="299 last 2xx"),
        pytest.param(300, Verdict.FINAL, id="300 first 3xx"),
        pytest.param(304, Verdict.FINAL, id="304 not modified"),
        pytest.param(400, Verdict.FINAL, id="400 bad request"),
        pytest.param(401, Verdict.FINAL, id="401 unauthorized"),
        pytest.param(404, Verdict.FINAL, id="404 not found"),
        pytest.param(407, Verdict.FINAL, id="407 next to 408"),
        pytest.param(408, Verdict.RETRY, id="408 request timeout"),
        pytest.param(409, Verdict.FINAL, id="409 next to 408"),
        pytest.param(410, Verdict.FINAL, id="410 gone"),
        pytest.param(424, Verdict.FINAL, id="424 next to 425"),
        pytest.param(425, Verdict.RETRY, id="425 too early"),
        pytest.param(426, Verdict.FINAL, id="426 next to 425"),
        pytest.param(428, Verdict.FINAL, id="428 next to 429"),
        pytest.param(429, Verdict.RETRY, id="429 too many requests"),
        pytest.param(430, Verdict.FINAL, id="430 next to 429"),
        pytest.param(499, Verdict.FINAL, id="499 last 4xx"),
        pytest.param(500, Verdict.RETRY, id="500 first 5xx"),
        pytest.param(503, Verdict.RETRY, id="503 unavailable"),
        pytest.param(599, Verdict.RETRY, id="599 last 5xx"),
        pytest.param(600, Verdict.FINAL, id="600 past the range"),
        pytest.param(0, Verdict.FINAL, id="0 no status"),
    ],
)
def test_verdict_at_the_edges(code: int, expected: Verdict) -> None:
    """The codes next to each boundary of the table fall on the right side of it."""
    assert expected == classify(code)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("5", 5.0, id="integer"),
        pytest.param("120", 120.0, id="two minutes"),
        pytest.param("  7 ", 7.0, id="padded"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("3600", 3600.0, id="exactly the cap"),
    ],
)
def test_retry_after_in_seconds(header: str | None, expected: float | None) -> None:
    """Delta-seconds are read as seconds from now."""
    assert expected == parse_retry_after(header, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Tue, 14 Nov 2023 22:13:30 GMT", id="IMF-fixdate"),
        pytest.param("Tuesday, 14-Nov-23 22:13:30 GMT", id="RFC 850"),
        pytest.param("Tue Nov 14 22:13:30 2023", id="asctime"),
        pytest.param("Tue, 14 Nov 2023 22:13:30 +0000", id="numeric zone"),
        pytest.param("Tue, 14 Nov 2023 23:13:30 +0100", id="other zone"),
    ],
)
def test_retry_after_as_an_http_date(header: str) -> None:
    """Each of the three HTTP date forms (RFC 9110 5.6.7), ten seconds after ``now``."""
    assert 10.0 == parse_retry_after(header, now=NOW)


@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """The process runs in New York time (UTC-5 in November) for the test's duration."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Tue Nov 14 22:13:30 2023", id="asctime"),
        pytest.param("Tue, 14 Nov 2023 22:13:30 -0000", id="unknown zone"),
        pytest.param("Tue, 14 Nov 2023 22:13:30 GMT", id="IMF-fixdate"),
    ],
)
@pytest.mark.usefixtures("far_from_utc")
def test_an_http_date_is_gmt_whatever_the_hosts_zone(header: str) -> None:
    """A date without an explicit offset is GMT by the HTTP rules, not the host's local time
    (read as local time, a 10 s wait became the one-hour cap on a host at UTC-5)."""
    assert 10.0 == parse_retry_after(header, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("soon", id="a word"),
        pytest.param("5 seconds", id="with a unit"),
        pytest.param("0x10", id="hexadecimal"),
        pytest.param("nan", id="NaN"),
        pytest.param("Mon, 99 Foo 2023 22:13:20 GMT", id="impossible date"),
        pytest.param("Tue, 14 Nov 2023", id="date without time"),
        pytest.param("\x00\xff", id="binary"),
    ],
)
def test_garbage_retry_after_is_ignored(header: str) -> None:
    """An unreadable header gives no wait of its own (the backoff alone decides)."""
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("-5", id="negative seconds"),
        pytest.param("-0.5", id="negative fraction"),
        pytest.param("-inf", id="minus infinity"),
        pytest.param("Tue, 14 Nov 2023 22:13:10 GMT", id="ten seconds ago"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", id="years ago"),
    ],
)
def test_negative_or_past_retry_after_means_now(header: str) -> None:
    """A wait that is already over (a past date, a negative number) asks for no wait."""
    assert 0.0 == parse_retry_after(header, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("3601", id="just past the cap"),
        pytest.param("86400", id="a day"),
        pytest.param("99999999999999999999999999", id="more digits than a long"),
        pytest.param("1e308", id="largest float"),
        pytest.param("1e999", id="overflowing float"),
        pytest.param("inf", id="infinity"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="the last year"),
        pytest.param("Wed, 15 Nov 2023 22:13:20 GMT", id="tomorrow"),
    ],
)
def test_huge_retry_after_is_capped_at_an_hour(header: str) -> None:
    """A hostile or broken peer cannot park us for more than an hour."""
    assert CAP == parse_retry_after(header, now=NOW)


@given(st.text(max_size=40))
def test_any_header_gives_none_or_a_wait_within_the_cap(header: str) -> None:
    """Whatever the peer sends, the answer is None or a wait from 0 to one hour, no error."""
    wait = parse_retry_after(header, now=NOW)
    assert wait is None or (0.0 <= wait <= CAP and not math.isnan(wait))


@given(st.integers(min_value=0, max_value=10**30))
def test_whole_seconds_are_read_exactly_up_to_the_cap(seconds: int) -> None:
    """Delta-seconds of any size give themselves, or the cap past it."""
    assert min(float(seconds), CAP) == parse_retry_after(str(seconds), now=NOW)


@given(st.integers(min_value=-(10**8), max_value=10**8))
def test_an_http_date_gives_its_distance_from_now(offset: int) -> None:
    """An IMF-fixdate ``n`` seconds away gives ``n`` when ahead, 0 when past, capped."""
    header = format_datetime(datetime.fromtimestamp(NOW + offset, UTC), usegmt=True)
    assert min(max(float(offset), 0.0), CAP) == parse_retry_after(header, now=NOW)


class Extreme(random.Random):
    """A random source that always draws the lowest (or highest) value it is allowed."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("attempt", "expected_full"),
    [
        pytest.param(0, 1.0, id="first retry"),
        pytest.param(1, 2.0, id="second"),
        pytest.param(2, 4.0, id="third"),
        pytest.param(5, 32.0, id="sixth"),
        pytest.param(6, 60.0, id="capped"),
        pytest.param(10_000, 60.0, id="huge attempt"),
    ],
)
def test_backoff_doubles_up_to_the_cap(attempt: int, expected_full: float) -> None:
    """The ceiling doubles from ``base`` each attempt until ``cap``; equal jitter keeps the
    delay between half that ceiling and the ceiling itself."""
    high = backoff(attempt, base=1.0, cap=60.0, rng=Extreme(high=True))
    low = backoff(attempt, base=1.0, cap=60.0, rng=Extreme(high=False))
    assert (expected_full / 2, expected_full) == (low, high)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=86_400.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_its_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    """Any attempt, base and cap: the delay lies in [ceiling / 2, ceiling], with ceiling the
    smaller of the cap and ``base * 2 ** attempt``; it never exceeds the cap."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling <= cap


def test_backoff_jitter_spreads_over_the_upper_half() -> None:
    """Many draws spread over the upper half of the ceiling, not onto one value: replicas
    failing together do not retry together."""
    rng = random.Random(42)
    delays = [backoff(3, base=1.0, cap=60.0, rng=rng) for _ in range(2000)]
    assert (True, True) == (min(delays) >= 4.0, max(delays) <= 8.0)
    assert (True, True) == (min(delays) < 4.2, max(delays) > 7.8)
    assert 1000 < len(set(delays))


def test_backoff_with_one_seed_repeats_itself() -> None:
    """The same random source gives the same delays: a seeded test is reproducible."""
    first = [backoff(n, base=0.5, cap=30.0, rng=random.Random(7)) for n in range(8)]
    again = [backoff(n, base=0.5, cap=30.0, rng=random.Random(7)) for n in range(8)]
    assert first == again


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(None, 4.0, id="absent: the backoff"),
        pytest.param(0.0, 4.0, id="now: the backoff"),
        pytest.param(3.0, 4.0, id="shorter: the backoff"),
        pytest.param(30.0, 30.0, id="longer: the peer's wish"),
        pytest.param(CAP, CAP, id="an hour, past the cap: still honoured"),
    ],
)
def test_backoff_never_waits_less_than_retry_after(
    retry_after: float | None, expected: float
) -> None:
    """The delay is the longer of the backoff and what the peer asked for, even past ``cap``
    (the hour cap on Retry-After itself bounds it)."""
    assert expected == backoff(
        2, base=1.0, cap=10.0, retry_after=retry_after, rng=Extreme(high=True)
    )


@given(
    attempt=st.integers(min_value=0, max_value=100),
    header=st.one_of(st.none(), st.text(max_size=20), st.integers(-100, 10**6).map(str)),
)
def test_backoff_after_any_header_is_finite_and_bounded(attempt: int, header: str | None) -> None:
    """Whatever Retry-After said, the resulting delay is a finite number from 0 to one hour."""
    delay = backoff(
        attempt,
        base=0.2,
        cap=60.0,
        retry_after=parse_retry_after(header, now=NOW),
        rng=random.Random(attempt),
    )
    assert (True, True) == (math.isfinite(delay), 0.0 < delay <= CAP)
