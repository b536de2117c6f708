"""What a strict receiver reads: a JSON body in valid UTF-8 whose strings hold no lone
surrogate (``"\\ud800"`` is valid JSON but no UTF-8 string: Go, Rust and most databases
refuse it). The fakes refuse anything else with a 400, as such receivers do."""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Unreadable(ValueError):
    """A body a strict receiver refuses; ``str()`` says why."""


def strict_json(body: bytes) -> Any:
    """``body`` parsed, or :class:`Unreadable` (invalid UTF-8, invalid JSON, NaN, or a lone
    surrogate in a key or a string)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Unreadable("invalid UTF-8") from None

    def refuse(constant: str) -> Any:
        raise Unreadable(f"not JSON: {constant}")

    try:
        parsed = json.loads(text, parse_constant=refuse)
    except ValueError as exc:
        raise Unreadable(str(exc) if isinstance(exc, Unreadable) else "invalid JSON") from None
    pending: list[Any] = [parsed]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise Unreadable("lone surrogate")
    return parsed
