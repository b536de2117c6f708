"""Routing: which sinks a transition reaches. Pure logic, no I/O, no clock (``now`` is
passed in).

Within one ``match`` the keys combine with AND and the listed values with OR (each value an
exact string or a glob pattern); an empty or absent ``match`` matches everything. Every
matching route applies, each sink once, unless a matching route says ``continue: false``,
which stops at it. A route inside one of its ``mute`` windows still matches (and still
stops) but sends nothing. A transition no route matches reaches no sink (it is recorded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from watcher.config import WEEKDAYS, MatchConfig, MuteWindow, RouteConfig
from watcher.model.transitions import Transition


def values(transition: Transition) -> dict[str, str | None]:
    """What ``match`` keys compare with (``None``: the transition has none, e.g. ``workflow``
    for a batch job, whose view has no ``workflow_name``)."""
    job = transition.job

    def text(key: str) -> str | None:
        value = job.get(key)
        return value if isinstance(value, str) else None

    activity = transition.details.get("activity")
    name = activity.get("name") if isinstance(activity, Mapping) else None
    return {
        "type": transition.type,
        "status": transition.status,
        "previous_status": transition.previous_status,
        "source": transition.source,
        "job_type": text("job_type"),
        "model": text("model"),
        "suffix": text("suffix"),
        "workflow": text("workflow_name"),
        "deployment": text("deployment_name"),
        "root_execution_id": text("root_execution_id"),
        "parent_execution_id": text("parent_execution_id"),
        "activity": name if isinstance(name, str) else None,
    }


def fits(value: str | None, patterns: Sequence[str]) -> bool:
    """Whether ``value`` is one of ``patterns`` (exact strings or globs, case-sensitive); a
    missing value (``None``) fits none. Routes and silences match with this one rule."""
    return value is not None and any(fnmatchcase(value, pattern) for pattern in patterns)


def mismatches(match: MatchConfig, transition: Transition) -> list[str]:
    """The keys of ``match`` that ``transition`` fails, each with why (empty: it matches)."""
    have = values(transition)
    out = []
    for key, patterns in match.model_dump(exclude_none=True).items():
        value = have.get(key)
        if value is None:
            out.append(f"{key}: the transition has none (wanted {patterns})")
        elif not fits(value, patterns):
            out.append(f"{key}: {value!r} is not in {patterns}")
    return out


def matches(match: MatchConfig, transition: Transition) -> bool:
    return not mismatches(match, transition)


def muted(windows: Sequence[MuteWindow], now: float) -> bool:
    """Whether ``now`` falls in one of ``windows``."""
    for window in windows:
        local = datetime.fromtimestamp(now, tz=UTC).astimezone(ZoneInfo(window.timezone))
        start_text, end_text = window.between.split("-")
        start = int(start_text[:2]) * 60 + int(start_text[3:])
        end = int(end_text[:2]) * 60 + int(end_text[3:])
        minute = local.hour * 60 + local.minute
        day = WEEKDAYS[local.weekday()]
        previous_day = WEEKDAYS[(local.weekday() - 1) % 7]
        if start <= end:
            if day in window.days and start <= minute < end:
                return True
        elif (day in window.days and minute >= start) or (
            previous_day in window.days and minute < end
        ):
            return True  # a window past midnight belongs to the day it started
    return False


@dataclass(frozen=True)
class Decision:
    """What one route did with a transition, for ``routes explain``."""

    index: int
    route: RouteConfig
    matched: bool
    muted: bool
    why: list[str]


@dataclass(frozen=True)
class Router:
    routes: Sequence[RouteConfig]

    def decide(self, transition: Transition, now: float | None = None) -> list[Decision]:
        """Every route's decision, in order, up to the one that stopped routing."""
        out = []
        for index, route in enumerate(self.routes):
            why = mismatches(route.match, transition)
            quiet = not why and now is not None and muted(route.mute, now)
            out.append(Decision(index, route, not why, quiet, why))
            if not why and not route.continue_:
                break
        return out

    def explain(self, transition: Transition) -> list[tuple[int, RouteConfig]]:
        """The routes that apply to ``transition``, in order (index, route)."""
        return [(d.index, d.route) for d in self.decide(transition) if d.matched]

    def sinks_for(self, transition: Transition, now: float | None = None) -> list[str]:
        """The union of the sinks of every applying, unmuted route, each once, in order."""
        out: list[str] = []
        for decision in self.decide(transition, now):
            if decision.matched and not decision.muted:
                out.extend(s for s in decision.route.sinks if s not in out)
        return out
