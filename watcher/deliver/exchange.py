"""One HTTP exchange of an HTTP sink: shared by webhook, Slack and PagerDuty.

A single deadline covers the whole exchange (httpx's timeouts are per operation, so a peer
trickling bytes could otherwise hold a delivery for ever); the body is read only as far as an
excerpt and the remaining time allow (the status line decides); transport failures become
:class:`~watcher.exceptions.DeliveryError` with a message built by the sink, which knows its
secrets.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx

from watcher.exceptions import DeliveryError


async def exchange(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    deadline_seconds: float,
    where: str,
    describe: Callable[[str], str],
    read_limit: int,
) -> tuple[int, httpx.Headers, bytes]:
    """Send ``request``; the status, headers and at most ``read_limit`` bytes of the body.

    ``where`` names the sink in errors; ``describe`` turns an httpx error's text into what
    may be shown (sanitized, secrets scrubbed, capped)."""
    timeout = deadline_seconds
    deadline = anyio.current_time() + timeout
    try:
        with anyio.fail_after(timeout):
            response = await client.send(request, stream=True, follow_redirects=False)
    except TimeoutError:
        raise DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True) from None
    except httpx.UnsupportedProtocol:
        raise DeliveryError(f"{where}: unsupported protocol", retryable=False) from None
    except httpx.HTTPError as exc:
        detail = describe(str(exc))
        message = f"{where}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        raise DeliveryError(message, retryable=True) from None
    raw = b""
    try:
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) >= read_limit:
                    break
    except httpx.HTTPError:
        pass  # the status line decides; an unreadable body is no reason to retry
    finally:
        with anyio.CancelScope(shield=True):
            await response.aclose()
    return response.status_code, response.headers, raw[:read_limit]
