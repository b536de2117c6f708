"""Webhook sink: one signed Standard Webhooks message per transition.

Each envelope is POSTed on its own (Standard Webhooks: one message per ``webhook-id``) with
``webhook-id`` (the transition id, stable across re-sends so that receivers can deduplicate),
``webhook-timestamp`` and, when a secret is configured, ``webhook-signature``. The body is the
compact JSON ``{"type", "timestamp", "data"}`` of DESIGN.md, "The user's contract".

The URL may carry credentials (userinfo, tokens in the path or query): errors and logs only
ever show :func:`redact_url`'s form, and response excerpts are scrubbed of every known secret.
"""

from __future__ import annotations

import base64
import json
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import httpx
import structlog
from standardwebhooks.webhooks import Webhook

from watcher import __version__
from watcher.abc import Envelope
from watcher.deliver.exchange import exchange
from watcher.deliver.redact import redact_url
from watcher.deliver.retry import Verdict, classify, parse_retry_after
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.model.webhooks import SECRET_PREFIX, check_headers, decode_secret

log = structlog.get_logger(__name__)

_BODY_READ_LIMIT = 4096  # enough for an excerpt; the rest of an error page is not read
_EXCERPT_CHARS = 200
_REDACTED = "<redacted>"
_WHITESPACE = re.compile(r"\s+")


def _sanitize(text: str) -> str:
    """One line of printable text: control, format and separator characters become spaces."""
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text
    )
    return _WHITESPACE.sub(" ", cleaned).strip()


class WebhookSink:
    """Delivers transitions as Standard Webhooks messages over a shared ``httpx`` client.

    2xx is accepted; 408, 425, 429 and 5xx are retryable (``Retry-After`` honoured);
    410 Gone and other statuses are final. Transport errors and timeouts are retryable.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: Secret | None,
        client: httpx.AsyncClient,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._redacted = redact_url(url)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or self._redacted == "<invalid url>":
            raise ValueError(f"webhook {name!r}: url must be http(s)://host/…")
        if not timeout > 0:
            raise ValueError(f"webhook {name!r}: timeout must be positive")
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"webhook {name!r}: url is not a valid URL") from None
        try:
            check_headers(headers or {})
        except ValueError as exc:
            raise ValueError(f"webhook {name!r}: {exc}") from None
        self._url = url
        self._webhook: Webhook | None = None
        if secret is not None:
            try:
                key = decode_secret(secret.get())
            except ValueError as exc:
                raise ValueError(f"webhook {name!r}: {exc}") from None
            self._webhook = Webhook(key)
        self._client = client
        self._timeout = timeout
        self._extra_headers = dict(headers or {})
        self._clock = clock
        self._sensitive = self._sensitive_strings(url, secret, self._extra_headers)

    @staticmethod
    def _sensitive_strings(
        url: str, secret: Secret | None, headers: Mapping[str, str]
    ) -> list[str]:
        """Strings that must never leave in an error: the URL's parts, secret, header values."""
        parts = urlsplit(url)
        found = [url, parts.username or "", parts.password or "", parts.query, parts.fragment]
        found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        found += [segment for segment in parts.path.split("/") if len(segment) >= 6]
        found += list(headers.values())
        if parts.username is not None or parts.password is not None:
            # httpx turns userinfo into Basic auth, which an error page may echo back.
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            found += [unquote(parts.password or ""), userinfo]
            found.append(base64.b64encode(userinfo.encode()).decode())
        if secret is not None:
            found += [secret.get(), secret.get().removeprefix(SECRET_PREFIX)]
        found += [quote(s, safe="") for s in found]
        # Longest first so that a secret containing another is replaced whole.
        return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, text: str, *extra: str) -> str:
        for value in sorted((*self._sensitive, *extra), key=len, reverse=True):
            if value:
                text = text.replace(value, _REDACTED)
        return text

    async def send(self, batch: Sequence[Envelope]) -> None:
        """POST each envelope in order; the first failure raises :class:`DeliveryError`.

        Messages sent before a failure were accepted; the dispatcher may send them again
        (at-least-once, same ``webhook-id``).
        """
        for envelope in batch:
            await self._send_one(envelope)

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client is shared and owned by the caller."""

    def _encode(self, envelope: Envelope) -> str:
        payload = envelope.transition.payload(envelope.detected_at)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates from hostile API strings cannot be UTF-8: escape everything.
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, default=str)
        return body

    async def _send_one(self, envelope: Envelope) -> None:
        transition = envelope.transition
        body = self._encode(envelope)
        timestamp = int(self._clock())
        headers = dict(self._extra_headers)
        headers.update(
            {
                "content-type": "application/json",
                "user-agent": f"watcher/{__version__}",
                "webhook-id": transition.id,
                "webhook-timestamp": str(timestamp),
            }
        )
        signature = ""
        if self._webhook is not None:
            moment = datetime.fromtimestamp(timestamp, tz=UTC)
            signature = self._webhook.sign(transition.id, moment, body)
            headers["webhook-signature"] = signature
        secret_parts = (signature, signature.partition(",")[2])
        where = f"webhook {self.name!r} ({self._redacted})"

        request = self._client.build_request(
            "POST",
            self._url,
            content=body.encode("utf-8"),
            headers=headers,
            timeout=httpx.Timeout(self._timeout),
        )
        status, answer_headers, raw = await exchange(
            self._client,
            request,
            deadline_seconds=self._timeout,
            where=where,
            describe=lambda text: self._scrub(_sanitize(text), *secret_parts)[:_EXCERPT_CHARS],
            read_limit=_BODY_READ_LIMIT,
        )
        verdict = classify(status)
        if verdict is Verdict.DONE:
            log.debug(
                "webhook_delivered",
                sink=self.name,
                transition_id=transition.id,
                type=transition.type,
                status_code=status,
            )
            return
        excerpt = self._scrub(
            _sanitize(raw[:_BODY_READ_LIMIT].decode("utf-8", errors="replace")), *secret_parts
        )[:_EXCERPT_CHARS]
        reason = f"{where}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(answer_headers.get("retry-after"), now=self._clock())
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        if status == 410:
            log.error(
                "webhook_gone",
                sink=self.name,
                url=self._redacted,
                transition_id=transition.id,
                status_code=status,
                hint="the receiver says this endpoint is gone for good; fix the sink's url",
            )
            raise DeliveryError(f"{where}: HTTP 410 Gone: endpoint removed", retryable=False)
        if 300 <= status < 400:
            reason = f"{where}: HTTP {status}: redirects are not followed; set the final url"
        raise DeliveryError(reason, retryable=False)
