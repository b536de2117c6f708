"""Routing: which sinks a transition reaches. Pure logic, no I/O.

Within one ``match`` the keys combine with AND and the listed values with OR (each value an
exact string or a glob pattern); an empty or absent ``match`` matches everything. Every
matching route applies, each sink once, unless a matching route says ``continue: false``,
which stops at it. A transition no route matches reaches no sink (it is still recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from watcher.config import MatchConfig, RouteConfig
from watcher.transitions import Transition


def _values(transition: Transition) -> dict[str, str | None]:
    return {"type": transition.type, "status": transition.status, "source": transition.source}


def matches(match: MatchConfig, transition: Transition) -> bool:
    values = _values(transition)
    for key, patterns in match.model_dump(exclude_none=True).items():
        value = values.get(key)
        if value is None or not any(fnmatchcase(value, pattern) for pattern in patterns):
            return False
    return True


@dataclass(frozen=True)
class Router:
    routes: Sequence[RouteConfig]

    def explain(self, transition: Transition) -> list[tuple[int, RouteConfig]]:
        """The routes that apply to ``transition``, in order (index, route)."""
        applied = []
        for index, route in enumerate(self.routes):
            if matches(route.match, transition):
                applied.append((index, route))
                if not route.continue_:
                    break
        return applied

    def sinks_for(self, transition: Transition) -> list[str]:
        """The union of the sinks of every applying route, each once, in route order."""
        out: list[str] = []
        for _, route in self.explain(transition):
            out.extend(s for s in route.sinks if s not in out)
        return out
