"""The digest's schedule: a crontab line as users write it (crontab(5)), read by
`cronsim <https://pypi.org/project/cronsim/>`_ in the configured time zone.

Numbers, names (``MON-FRI``, ``JAN``), ranges, steps, lists, Sunday as 0 or 7, and the
``@`` aliases (``@daily``, ``@weekly``, …) mean what they mean to cron. Times are local to
the zone, daylight saving time included, as Debian's cron does it: a time the clock skips
(02:30 on the spring-forward night) fires once at the change, a time the clock repeats
(02:30 on the fall-back night) fires once, the first time.

APScheduler 3's own ``CronTrigger`` counts weekdays from 0 = Monday and has no aliases: a
crontab's ``1-5`` would silently mean Tuesday to Saturday there, hence this module.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

# crontab(5)'s aliases; @reboot has no meaning for a schedule that runs in a daemon.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def standard(expression: str) -> str:
    """The five fields of ``expression`` (an alias spelled out), or ``ValueError`` saying
    what is wrong."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        fields = ALIASES.get(text.lower())
        if fields is None:
            known = ", ".join(sorted(ALIASES))
            raise ValueError(f"not a crontab expression: unknown alias {text[:20]!r} ({known})")
        return fields
    if len(text.split(" ")) != 5:
        raise ValueError(
            "not a crontab expression: it has 5 fields: minute hour day-of-month month day-of-week "
            "(e.g. '0 9 * * 1-5'), or an alias such as @daily"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ValueError(f"not a crontab expression: {exc}") from None
    return text


def next_fire(expression: str, zone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` (an aware datetime) that ``expression``
    names, in ``zone``; returned in that zone."""
    local = after.astimezone(ZoneInfo(zone))
    return next(CronSim(standard(expression), local))


def upcoming(expression: str, zone: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (for ``check-config`` and tests)."""
    out: list[datetime] = []
    moment = after
    for _ in range(count):
        moment = next_fire(expression, zone, moment)
        out.append(moment)
    return out
