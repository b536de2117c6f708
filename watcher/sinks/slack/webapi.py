"""Slack's Web API as the bot sees it: one method call (``chat.postMessage``,
``chat.update``) and the meaning of its answer.

``{"ok": true}`` is done; ``ok: false`` is retryable for rate limits and Slack's own
failures (``Retry-After`` honoured), final otherwise; HTTP 429 and 5xx retryable; an answer
that cannot be read is retryable (posted or not, we cannot tell: a duplicate beats a lost
alert). Only Slack-shaped words name a reason, and they are scrubbed of the sink's secrets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from typing import Any, NoReturn

import httpx2 as httpx

from watcher import __version__
from watcher.deliver.exchange import post, refusal
from watcher.deliver.redact import Scrubber
from watcher.deliver.retry import Verdict
from watcher.exceptions import DeliveryError
from watcher.model import fitting
from watcher.model.secrets import Secret

# ok:false errors that say "not now" rather than "never".
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable"}
)
# Final errors that mean the destination itself is broken: a human must fix the config.
BROKEN_DESTINATION = frozenset(
    {
        "action_prohibited", "no_service", "no_active_hooks", "channel_not_found",
        "channel_is_archived", "is_archived", "invalid_token", "invalid_auth", "not_authed",
        "token_revoked", "token_expired", "account_inactive", "team_disabled", "missing_scope",
        "not_in_channel", "no_permission", "restricted_action", "posting_to_general_channel_denied",
    }
)  # fmt: skip

REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
_READ_LIMIT = 1_000_000  # chat.postMessage echoes the whole message back

# (word, reason, broken) -> never returns: the sink counts and logs a final error.
Final = Callable[[str, str, bool], NoReturn]


def encode(payload: Mapping[str, Any]) -> bytes:
    """The request body: compact JSON in valid UTF-8 (a lone surrogate, invalid anywhere,
    becomes U+FFFD rather than an escape a strict receiver refuses)."""
    return fitting.encode(payload)


class WebApi:
    """Calls ``{api_url}/{method}`` with the bot token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        api_url: str,
        token: Secret,
        *,
        where: str,
        timeout: float,
        scrubber: Scrubber,
        final: Final,
    ) -> None:
        self._client = client
        self._base = api_url.rstrip("/")
        self._token = token
        self._where = where
        self._timeout = timeout
        self._scrubber = scrubber
        self._final = final

    async def call(
        self, method: str, payload: Mapping[str, Any], *, tolerate: Collection[str] = ()
    ) -> dict[str, Any]:
        """Slack's answer when ``ok`` (or ``ok: false`` with an error in ``tolerate``);
        :class:`DeliveryError` otherwise."""
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": f"watcher/{__version__}",
            "authorization": f"Bearer {self._token.get()}",
        }
        answer = await post(
            self._client,
            f"{self._base}/{method}",
            content=encode(payload),
            headers=headers,
            deadline_seconds=self._timeout,
            where=self._where,
            scrubber=self._scrubber,
            read_limit=_READ_LIMIT,
        )
        reply: Any = None
        with suppress(UnicodeDecodeError, ValueError):
            reply = json.loads(answer.body.decode("utf-8"))
        error = reply.get("error") if isinstance(reply, dict) else None
        word = f"http_{answer.status}" if answer.verdict is not Verdict.DONE else "unknown_error"
        if isinstance(error, str) and REASON.fullmatch(error):
            word = error
        excerpt = self._scrubber.scrub(word)
        if answer.verdict is not Verdict.DONE:
            refused = refusal(answer, where=self._where, excerpt=excerpt, now=time.time())
            if refused.retryable:
                raise refused
            broken = word in BROKEN_DESTINATION or answer.status in (401, 403)
            self._final(word, str(refused), broken)
        if not isinstance(reply, dict):
            raise DeliveryError(f"{self._where}: unreadable answer", retryable=True)
        if reply.get("ok") is True or word in tolerate:
            return reply
        reason = f"{self._where}: {method}: HTTP {answer.status}: {excerpt}"
        if word in RETRYABLE_ERRORS:
            retry_after = answer.retry_after(now=time.time())
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        self._final(word, reason, word in BROKEN_DESTINATION)
