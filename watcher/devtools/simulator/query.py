"""Query parameters validated the way FastAPI validates them, shared by the simulator's
``/v1`` routes: errors collect into a 422 ``{"detail": [{type, loc, msg, input, ctx?}]}``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request

from watcher.devtools.simulator.jobs import STATUSES

Answer = tuple[int, Any]
_Item = TypeVar("_Item")

MAX_PAGE_SIZE = 1000  # larger requests are capped silently (the real maximum is unconfirmed)

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Invalid(Exception):
    """Query validation errors, in FastAPI's ``detail`` list format."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = errors


def expected_values(values: Sequence[str]) -> str:
    """FastAPI's wording of an enum's values: ``'A', 'B' or 'C'``."""
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


class ListQuery:
    """The list route's query parameters, validated the way FastAPI would."""

    def __init__(self, request: Request) -> None:
        self.params = request.query_params
        self.errors: list[dict[str, Any]] = []

    def raise_errors(self) -> None:
        if self.errors:
            raise Invalid(self.errors)

    def page(self, items: Sequence[_Item], shown: Callable[[_Item], Any]) -> Answer:
        """The ``page``-th page of ``page_size`` items, once the whole query is valid."""
        page = self.integer("page", 0, minimum=0)
        size = min(self.integer("page_size", 100, minimum=1), MAX_PAGE_SIZE)
        self.raise_errors()
        start = page * size
        data = [shown(item) for item in items[start : start + size]]
        return 200, {"object": "list", "total": len(items), "data": data}

    def _error(self, name: str, kind: str, msg: str, value: str, **ctx: Any) -> None:
        error: dict[str, Any] = {"type": kind, "loc": ["query", name], "msg": msg, "input": value}
        if ctx:
            error["ctx"] = ctx
        self.errors.append(error)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self._error(
                name,
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                raw,
            )
            return default
        if value < minimum:
            self._error(
                name,
                "greater_than_equal",
                f"Input should be greater than or equal to {minimum}",
                raw,
                ge=minimum,
            )
            return default
        if maximum is not None and value > maximum:
            self._error(
                name,
                "less_than_equal",
                f"Input should be less than or equal to {maximum}",
                raw,
                le=maximum,
            )
            return default
        return value

    def invalid(self, name: str, msg: str, value: str) -> None:
        """Record a ``value_error`` on ``name`` (a value FastAPI's types accept but the
        route does not)."""
        self._error(name, "value_error", msg, value)

    def boolean(self, name: str) -> bool:
        raw = self.params.get(name)
        if raw is None or raw.lower() in _FALSE:
            return False
        if raw.lower() in _TRUE:
            return True
        self._error(
            name, "bool_parsing", "Input should be a valid boolean, unable to interpret input", raw
        )
        return False

    def status(self) -> str | None:
        raw = self.params.get("status")
        if raw is None or raw in STATUSES:
            return raw
        expected = expected_values(STATUSES)
        self._error("status", "enum", f"Input should be {expected}", raw, expected=expected)
        return None

    def statuses(self, name: str, allowed: Sequence[str]) -> list[str] | None:
        """A multi-valued enum parameter sent as repeated keys (``?s=A&s=B``); None if absent.

        Errors are located by index, like FastAPI's for a list parameter.
        """
        raw = self.params.getlist(name)
        if not raw:
            return None
        expected = expected_values(allowed)
        for index, value in enumerate(raw):
            if value not in allowed:
                self.errors.append(
                    {
                        "type": "enum",
                        "loc": ["query", name, index],
                        "msg": f"Input should be {expected}",
                        "input": value,
                        "ctx": {"expected": expected},
                    }
                )
        return [value for value in raw if value in allowed]

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        raw = self.params.get(name)
        if raw is None:
            return default
        if raw in allowed:
            return raw
        expected = expected_values(allowed)
        self._error(name, "enum", f"Input should be {expected}", raw, expected=expected)
        return default

    def timestamp(self, name: str) -> float | None:
        """Unix seconds from an ISO-8601 date-time, a date, or a number; naive means UTC."""
        raw = self.params.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            pass
        else:
            if math.isfinite(value):
                return value
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            self._error(name, "datetime_from_date_parsing", "Input should be a valid datetime", raw)
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
