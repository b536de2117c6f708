"""The admin API's request bodies: a JSON object with known keys, or a 400 naming the field
(:class:`BadRequest`)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request


class BadRequest(ValueError):
    """The admin request body is not usable; the message names the field."""


async def json_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object (empty: ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body: must be a JSON object")
    return body


def only(body: dict[str, Any], allowed: frozenset[str] | set[str]) -> None:
    """Refuse a key not in ``allowed``."""
    for key in body:
        if key not in allowed:
            raise BadRequest(f"{key}: unknown field")
