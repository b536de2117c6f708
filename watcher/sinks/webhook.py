"""Webhook sink: one signed Standard Webhooks message per transition.

Each envelope is POSTed on its own (Standard Webhooks: one message per ``webhook-id``) with
``webhook-id`` (the transition id, stable across re-sends so that receivers can deduplicate),
``webhook-timestamp`` and, when a secret is configured, ``webhook-signature``. The body is the
compact JSON ``{"type", "timestamp", "data"}`` of README.md, "Webhook format", in valid UTF-8
(lone surrogates from a hostile API replaced by U+FFFD) and at most ``max_body`` bytes: a
bigger one has its ``data`` trimmed field by field (long strings cut with "…", long lists and
objects shortened, what identifies the job kept) and says so with ``data.truncated: true``.

The URL may carry credentials (userinfo, tokens in the path or query): errors and logs only
ever show :func:`redact_url`'s form, and response excerpts are scrubbed of every known secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx2 as httpx
import structlog
from standardwebhooks.webhooks import Webhook

from watcher import __version__
from watcher.deliver.exchange import post, refusal
from watcher.deliver.redact import Scrubber, redact_url
from watcher.deliver.retry import Verdict
from watcher.exceptions import DeliveryError
from watcher.model.fitting import encode, encode_safe, fit
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.transitions import json_safe
from watcher.model.webhooks import check_headers, decode_secret

log = structlog.get_logger(__name__)

DEFAULT_MAX_BODY = 256 * 1024  # bytes; receivers commonly refuse 1 MB, some 256 KB
MIN_BODY = 4096  # what the smallest trimmed body (the job's identity) always fits in


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
        scrubber: Scrubber | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.name = name
        if max_body < MIN_BODY:
            raise ValueError(f"webhook {name!r}: max_body must be at least {MIN_BODY} bytes")
        self._max_body = max_body
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
        self._scrubber = scrubber or Scrubber.of_secrets(
            url, secret, plain=self._extra_headers.values()
        )

    async def send(self, batch: Sequence[Envelope]) -> None:
        """POST each envelope in order; the first failure raises :class:`DeliveryError`.

        Messages sent before a failure were accepted; the dispatcher may send them again
        (at-least-once, same ``webhook-id``).
        """
        for envelope in batch:
            await self._send_one(envelope)

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client is shared and owned by the caller."""

    def _encode(self, envelope: Envelope) -> bytes:
        """The body: valid UTF-8, at most ``max_body`` bytes (``data`` trimmed and marked
        ``truncated`` when the whole would not fit)."""
        payload = envelope.transition.payload(envelope.detected_at)
        # `data` comes out of json_safe already, the timestamp is ASCII: only the type is
        # left to make safe, not the whole payload walked again.
        payload["type"] = json_safe(payload["type"])
        body = encode_safe(payload)
        if len(body) <= self._max_body:
            return body
        data = payload["data"]
        room = self._max_body - len(encode({**payload, "data": {}})) - len(',"truncated":true')
        fitted, _ = fit(data, room)
        log.warning(
            "webhook_body_trimmed",
            sink=self.name,
            transition_id=envelope.transition.id,
            size=len(body),
            max_body=self._max_body,
        )
        return encode({**payload, "data": {**fitted, "truncated": True}})

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
            signature = self._webhook.sign(transition.id, moment, body.decode("utf-8"))
            headers["webhook-signature"] = signature
        where = f"webhook {self.name!r} ({self._redacted})"

        scrubber = self._scrubber.also(signature, signature.partition(",")[2])
        answer = await post(
            self._client,
            self._url,
            content=body,
            headers=headers,
            deadline_seconds=self._timeout,
            where=where,
            scrubber=scrubber,
        )
        about = {"sink": self.name, "transition_id": transition.id, "status_code": answer.status}
        if answer.verdict is Verdict.DONE:
            log.debug("webhook_delivered", type=transition.type, **about)
            return
        if answer.status == 410:
            hint = "the receiver says this endpoint is gone for good; fix the sink's url"
            log.error("webhook_gone", url=self._redacted, hint=hint, **about)
            raise DeliveryError(f"{where}: HTTP 410 Gone: endpoint removed", retryable=False)
        excerpt = scrubber.excerpt(answer.text())
        raise refusal(answer, where=where, excerpt=excerpt, now=self._clock())
