"""The digest's cron: crontab(5) as users write it (numbers, names, ranges, ``@`` aliases),
in the configured zone, across daylight saving changes, with a fixed clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.unit.config.sample import ENV, GOOD, write
from watcher.app.scheduling import CrontabTrigger
from watcher.config import load_config, summary
from watcher.config.cron import next_fire, standard, upcoming
from watcher.exceptions import ConfigError

PARIS = ZoneInfo("Europe/Paris")  # summer time 2026: from Sun 29 March to Sun 25 October


def local(times: list[datetime], zone: ZoneInfo = PARIS) -> list[str]:
    return [t.astimezone(zone).strftime("%a %d %H:%M %z") for t in times]


def fire_times(expression: str, zone: str, now: datetime, count: int) -> list[datetime]:
    """What APScheduler would run: the trigger asked as the scheduler asks, the clock fixed
    at ``now`` for the first, then at each fire time."""
    trigger = CrontabTrigger(expression, zone)
    out: list[datetime] = []
    previous = None
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        out.append(nxt)
        previous, now = nxt, nxt
    return out


def test_weekdays_from_numbers_across_spring_forward() -> None:
    """``0 9 * * 1-5`` in Paris: 09:00 local Monday to Friday, before and after the change
    (08:00 UTC, then 07:00 UTC), never on the weekend."""
    now = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)  # Thursday
    times = fire_times("0 9 * * 1-5", "Europe/Paris", now, 4)
    assert ["Fri 27 09:00 +0100", "Mon 30 09:00 +0200", "Tue 31 09:00 +0200"] == local(times[:3])
    assert [8, 7, 7, 7] == [t.astimezone(UTC).hour for t in times]


def test_numbers_names_and_sunday_mean_what_cron_means() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    weekdays = upcoming("0 9 * * 1-5", "Europe/Paris", now, 20)
    assert weekdays == upcoming("0 9 * * mon-fri", "Europe/Paris", now, 20)
    assert {t.isoweekday() for t in weekdays} == {1, 2, 3, 4, 5}
    sundays = upcoming("0 9 * * 0", "UTC", now, 3)
    assert sundays == upcoming("0 9 * * 7", "UTC", now, 3) == upcoming("0 9 * * SUN", "UTC", now, 3)
    assert {7} == {t.isoweekday() for t in sundays}
    assert ["Sun 01 09:00 +0000"] == local(sundays[:1], ZoneInfo("UTC"))


def test_daily_alias_across_fall_back() -> None:
    """``@daily``: local midnight, on either side of the October change."""
    now = datetime(2026, 10, 23, 21, 0, tzinfo=UTC)  # 23:00 in Paris
    times = fire_times("@daily", "Europe/Paris", now, 3)
    assert ["Sat 24 00:00 +0200", "Sun 25 00:00 +0200", "Mon 26 00:00 +0100"] == local(times)
    assert [timedelta(hours=24), timedelta(hours=25)] == [
        b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(times)
    ]


@pytest.mark.parametrize(
    ("alias", "fields"),
    [("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
     ("@annually", "0 0 1 1 *"), ("@hourly", "0 * * * *"), ("@MIDNIGHT", "0 0 * * *")],
)  # fmt: skip
def test_aliases(alias: str, fields: str) -> None:
    assert fields == standard(alias)


def test_a_skipped_time_fires_once_and_a_repeated_one_once() -> None:
    """02:30 does not exist on 29 March in Paris: the digest goes at the change (03:00);
    on 25 October it exists twice: one digest, not two."""
    spring = fire_times("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, tzinfo=UTC), 3)
    assert ["Sun 29 03:00 +0200", "Mon 30 02:30 +0200"] == local(spring[:2])
    autumn = fire_times("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert ["Sun 25 02:30 +0200", "Mon 26 02:30 +0100"] == local(autumn[:2])


def test_another_zone_has_its_own_change() -> None:
    """New York moves at 02:00 on Sunday 8 March 2026: 09:00 there is 14:00 UTC on the
    7th, 13:00 UTC from the 8th."""
    times = upcoming("0 9 * * *", "America/New_York", datetime(2026, 3, 6, 20, tzinfo=UTC), 3)
    assert [14, 13, 13] == [t.astimezone(UTC).hour for t in times]


def test_now_itself_fires_and_a_previous_fire_is_not_repeated() -> None:
    trigger = CrontabTrigger("0 9 * * *", "UTC")
    nine = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    assert nine == trigger.get_next_fire_time(None, nine)
    assert nine + timedelta(days=1) == trigger.get_next_fire_time(nine, nine)
    assert nine + timedelta(days=1) == next_fire("0 9 * * *", "UTC", nine)


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("@reboot", "unknown alias"),
        ("0 9 * *", "5 fields"),
        ("61 * * * *", "not a crontab expression"),
        ("0 9 * * FUNDAY", "not a crontab expression"),
        ("0 9 31 2 *", "not a crontab expression"),
    ],
)
def test_mistakes_are_config_errors(tmp_path: Path, cron: str, says: str) -> None:
    extra = f"digest: {{cron: '{cron}', sinks: [console]}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, GOOD + extra), env=ENV)
    assert "digest.cron" == caught.value.path
    assert says in caught.value.message


def test_check_config_summary_shows_the_next_local_times(tmp_path: Path) -> None:
    extra = "digest: {cron: '0 9 * * 1-5', timezone: Europe/Paris, sinks: [console]}\n"
    config = load_config(write(tmp_path, GOOD + extra), env=ENV)
    told = summary(config, now=datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert (
        "digest: '0 9 * * 1-5' in Europe/Paris, next: Mon 2026-03-30 09:00 CEST, "
        "Tue 2026-03-31 09:00 CEST, Wed 2026-04-01 09:00 CEST"
    ) in told
