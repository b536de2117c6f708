"""The field types every section of the config shares: durations, names, URLs, lists.

Each type validates one rule and says which in its ``ValueError``; :mod:`.loader` turns that
into a :class:`~watcher.exceptions.ConfigError` naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_DURATION = 3650 * 86400.0


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host and a valid port, or ``ValueError``."""
    import httpx2 as httpx  # lazy: httpx2 is heavy and the CLI's light commands load the config too

    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ValueError("must be a valid http:// or https:// URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a bare number."""
    if isinstance(value, bool):
        raise ValueError("invalid duration (use e.g. 30s, 5m, 1h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text or _DURATION.sub("", text) != "" or not _DURATION.match(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"invalid duration {value[:40]!r} (use e.g. 30s, 5m, 1h)"
                ) from None
        else:
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError("invalid duration (use e.g. 30s, 5m, 1h)")
    if not seconds > 0 or seconds != seconds:
        raise ValueError("duration must be positive")
    if seconds > MAX_DURATION:
        raise ValueError("duration must be at most 3650d")
    return seconds


def parse_wait(value: Any) -> float:
    """A duration that may be zero (``0``, ``0s``): no wait at all."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration(value)


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$|^\d+(\.\d+)?$"},
    ],
    "description": "seconds, or a duration such as 250ms, 30s, 5m, 1h30m, 2d",
}


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value[:64]!r}") from None
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]  # an IANA name such as Europe/Paris
Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
Wait = Annotated[
    float, BeforeValidator(parse_wait), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_STR_LIST_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "a list of strings, or one string",
}
StrList = Annotated[
    list[str], BeforeValidator(_listify), WithJsonSchema(_STR_LIST_SCHEMA, mode="validation")
]


class ConfigModel(BaseModel):
    """A section of the config: unknown keys are errors, values never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
