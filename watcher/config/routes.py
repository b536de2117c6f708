"""The ``routes:`` section: which transitions reach which sinks, and when sinks stay quiet."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from watcher.config.fields import ConfigModel, StrList, TimeZone


class MatchConfig(ConfigModel):
    """Keys combine with AND, listed values with OR; values are exact strings or globs. A key
    the transition has no value for never matches (``workflow`` on a batch job)."""

    type: StrList | None = None
    status: StrList | None = None
    previous_status: StrList | None = None
    source: StrList | None = None
    job_type: StrList | None = None
    model: StrList | None = None
    suffix: StrList | None = None
    # Workflows executions: the job's workflow_name, deployment_name, root_execution_id,
    # parent_execution_id, and the activity a fact is about (``details.activity.name``).
    workflow: StrList | None = None
    deployment: StrList | None = None
    root_execution_id: StrList | None = None
    parent_execution_id: StrList | None = None
    activity: StrList | None = None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class MuteWindow(ConfigModel):
    """When a route's sinks stay quiet: on ``days`` (default every day), ``between``
    ``HH:MM-HH:MM`` (default all day; may wrap past midnight), in ``timezone``."""

    days: StrList = list(WEEKDAYS)  # noqa: RUF012 (a pydantic field)
    between: str = "00:00-24:00"
    timezone: TimeZone = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for day in value:
            day = day.strip().lower()[:3]
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r} (use mon..sun)")
            out.append(day)
        return out

    @field_validator("between")
    @classmethod
    def _between(cls, value: str) -> str:
        if not _CLOCK.match(value.replace(" ", "")):
            raise ValueError("must be HH:MM-HH:MM, e.g. 22:00-07:00")
        return value.replace(" ", "")


class RouteConfig(ConfigModel):
    match: MatchConfig = MatchConfig()
    sinks: Annotated[StrList, Field(min_length=1)]
    continue_: bool = Field(True, alias="continue")
    mute: list[MuteWindow] = []  # noqa: RUF012 (a pydantic field)
