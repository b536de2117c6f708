"""The Slack sink: validation of its config, composing, and the two delivery modes
(incoming webhook; bot token with one thread per job)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import httpx
import structlog

from watcher import __version__
from watcher.abc import SinkState
from watcher.deliver.exchange import Answer, post, refusal
from watcher.deliver.redact import Scrubber, redact_url
from watcher.deliver.retry import Verdict
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.render.templates import MessageTemplates
from watcher.sinks.slack.blocks import Formatter, Message, section
from watcher.sinks.slack.meaning import severity
from watcher.sinks.slack.mrkdwn import MAX_TEXT, clean, multiline

log = structlog.get_logger(__name__)

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

_WEBHOOK_READ_LIMIT = 4096  # Slack answers "ok" or an error word
_API_READ_LIMIT = 1_000_000  # chat.postMessage echoes the whole message back
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TS = re.compile(r"\d{1,20}\.\d{1,20}")
_ACCEPTED_MEMORY = 4096


class SlackSink:
    """Posts transitions to Slack: incoming webhook (``webhook_url``) or bot (``token`` +
    ``channel``, threaded per job via ``state``).

    Webhook answers: 2xx done; 429 (``Retry-After`` honoured) and 5xx retryable; other
    statuses final with Slack's reason. Bot answers: ``{"ok": true}`` done; ``ok: false``
    retryable for rate limits and Slack's own failures, final otherwise; HTTP 429 and 5xx
    retryable. Transport errors and timeouts are retryable. ``final_errors`` counts final
    errors by reason.
    """

    def __init__(
        self,
        name: str,
        *,
        client: httpx.AsyncClient,
        webhook_url: Secret | None = None,
        token: Secret | None = None,
        channel: str | None = None,
        api_url: str = "https://slack.com/api",
        state: SinkState | None = None,
        templates: MessageTemplates | None = None,
        job_url_template: str | None = None,
        job_links: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.name = name
        where = f"slack {name!r}"
        bot = token is not None or channel is not None
        if (webhook_url is None) == (not bot):
            raise ValueError(f"{where}: set either webhook_url, or token and channel")
        if bot and (token is None or not token.get() or not channel):
            raise ValueError(f"{where}: bot mode needs both token and channel")
        if not timeout > 0:
            raise ValueError(f"{where}: timeout must be positive")
        url = webhook_url.get() if webhook_url is not None else api_url.rstrip("/")
        what = "webhook_url" if webhook_url is not None else "api_url"
        shown = redact_url(url)
        if urlsplit(url).scheme.lower() not in ("http", "https") or shown == "<invalid url>":
            raise ValueError(f"{where}: {what} must be http(s)://host/…")
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"{where}: {what} is not a valid URL") from None
        if job_url_template is not None:
            try:
                sample = job_url_template.format(source="ft", job_id="job-1")
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"{where}: job_url_template: use only {{source}} and {{job_id}} ({exc!r})"
                ) from None
            if urlsplit(sample).scheme.lower() not in ("http", "https"):
                raise ValueError(f"{where}: job_url_template must give an http(s) URL")
        self.mode = "bot" if bot else "webhook"
        self.channel = channel
        self.final_errors: Counter[str] = Counter()
        self._client = client
        self._state = state
        self._templates = templates
        self._format = Formatter(job_url_template, job_links=job_links)
        self._timeout = timeout
        if webhook_url is not None:
            self._url = url
            self._where = f"{where} ({shown})"
        else:
            self._url = f"{url}/chat.postMessage"
            self._where = f"{where} ({redact_url(url)}, channel {clean(channel, 80)!r})"
        self._token = token
        self._scrubber = scrubber or Scrubber.of_secrets(webhook_url, token)
        self._locks: dict[str, anyio.Lock] = {}
        self._accepted: OrderedDict[tuple[str, ...], None] = OrderedDict()

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client and the state belong to the caller."""

    # -- composing --------------------------------------------------------------------------

    def compose(self, batch: Sequence[Envelope]) -> Message:
        """The message for ``batch``: the user's ``text`` template when it renders something,
        else the built-in layout (single or grouped)."""
        if self._templates is not None:
            try:
                rendered = self._templates.render("text", batch)
            except ValueError as exc:
                self.final_errors["template"] += 1
                raise DeliveryError(f"slack {self.name!r}: {exc}", retryable=False) from None
            if rendered is not None and rendered.strip():
                text = multiline(rendered, MAX_TEXT)
                return Message(text=text, blocks=[section(text)])
        if len(batch) == 1:
            return self._format.single(batch[0])
        return self._format.grouped(batch)

    def preview(self, batch: Sequence[Envelope]) -> dict[str, Any]:
        """The Block Kit payload :meth:`send` would post for ``batch`` (nothing is sent)."""
        return self.compose(batch).payload()

    # -- sending ----------------------------------------------------------------------------

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Webhook: one message for the whole batch. Bot: one message per job (threaded),
        one for the transitions about no job; a failure raises :class:`DeliveryError` and
        the messages already accepted are not posted again by this instance on retry."""
        if not batch:
            return
        if self.mode == "webhook":
            await self._send_webhook(batch)
            return
        groups: dict[tuple[str, str] | None, list[Envelope]] = {}
        for envelope in batch:
            t = envelope.transition
            groups.setdefault((t.source, t.job_id) if t.job_id else None, []).append(envelope)
        parts = [(key, envelopes, tuple(e.transition.id for e in envelopes))
                 for key, envelopes in groups.items()]  # fmt: skip
        accepted: list[tuple[str, ...]] = []
        try:
            for key, envelopes, ids in parts:
                if ids in self._accepted:
                    continue  # a retry of a partly delivered batch: this part got through
                if key is None or self._state is None:
                    await self._post_api(envelopes, thread_ts=None, broadcast=False)
                else:
                    await self._post_threaded(key, envelopes)
                accepted.append(ids)
        except BaseException:
            # Remembered only across a failure, so that the dispatcher's retry makes
            # progress instead of re-posting (and re-hitting a rate limit) from the start.
            for ids in accepted:
                self._accepted[ids] = None
            while len(self._accepted) > _ACCEPTED_MEMORY:
                self._accepted.popitem(last=False)
            raise
        for _, _, ids in parts:
            self._accepted.pop(ids, None)

    async def _send_webhook(self, batch: Sequence[Envelope]) -> None:
        message = self.compose(batch)
        answer = await self._post(message.payload(), _WEBHOOK_READ_LIMIT)
        if answer.verdict is Verdict.DONE:
            log.debug("slack_delivered", sink=self.name, mode="webhook", transitions=len(batch))
            return
        excerpt = self._scrubber.excerpt(answer.text())
        error = refusal(answer, where=self._where, excerpt=excerpt, now=time.time())
        if error.retryable:
            raise error
        status = answer.status
        word = excerpt if _REASON.fullmatch(excerpt) else f"http_{status}"
        self._final(
            word, str(error), broken=word in BROKEN_DESTINATION or status in (401, 403, 404, 410)
        )

    async def _post_threaded(self, key: tuple[str, str], envelopes: Sequence[Envelope]) -> None:
        source, job_id = key
        state_key = f"thread:{source}:{job_id}"
        state = self._state
        assert state is not None
        async with self._lock(state_key):
            try:
                thread = await state.get_sink_state(self.name, state_key)
            except Exception as exc:  # the store's own failure: try again later
                raise DeliveryError(
                    f"{self._where}: thread state unavailable ({type(exc).__name__})",
                    retryable=True,
                ) from None
            if thread is not None and not _TS.fullmatch(thread):
                thread = None
            failed = any(severity(e.transition) == 0 for e in envelopes)
            ts = await self._post_api(envelopes, thread_ts=thread, broadcast=failed)
            if thread is None and ts is not None:
                try:
                    await state.put_sink_state(self.name, state_key, ts)
                except Exception as exc:  # posted: losing the thread is better than a duplicate
                    log.warning(
                        "slack_thread_not_saved",
                        sink=self.name,
                        job_id=job_id,
                        error=type(exc).__name__,
                    )

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)

    async def _post_api(
        self, envelopes: Sequence[Envelope], *, thread_ts: str | None, broadcast: bool
    ) -> str | None:
        """``chat.postMessage``; the new message's ``ts`` (``None`` if Slack gave none)."""
        message = self.compose(envelopes)
        payload: dict[str, Any] = {"channel": self.channel, **message.payload()}
        if thread_ts is not None:
            payload["thread_ts"] = thread_ts
            if broadcast:
                payload["reply_broadcast"] = True
        answer = await self._post(payload, _API_READ_LIMIT)
        reply: Any = None
        with suppress(UnicodeDecodeError, ValueError):
            reply = json.loads(answer.body.decode("utf-8"))
        error = reply.get("error") if isinstance(reply, dict) else None
        # Only Slack-shaped words name a reason (they key ``final_errors`` and the logs).
        word = f"http_{answer.status}" if answer.verdict is not Verdict.DONE else "unknown_error"
        if isinstance(error, str) and _REASON.fullmatch(error):
            word = error
        excerpt = self._scrubber.scrub(word)
        if answer.verdict is not Verdict.DONE:
            refused = refusal(answer, where=self._where, excerpt=excerpt, now=time.time())
            if refused.retryable:
                raise refused
            broken = word in BROKEN_DESTINATION or answer.status in (401, 403)
            self._final(word, str(refused), broken=broken)
        if not isinstance(reply, dict):
            # Posted or not, we cannot tell: a duplicate beats a lost alert.
            raise DeliveryError(f"{self._where}: unreadable answer", retryable=True)
        if reply.get("ok") is True:
            ts = reply.get("ts")
            log.debug(
                "slack_delivered",
                sink=self.name,
                mode="bot",
                transitions=len(envelopes),
                threaded=thread_ts is not None,
            )
            return ts if isinstance(ts, str) and _TS.fullmatch(ts) else None
        reason = f"{self._where}: HTTP {answer.status}: {excerpt}"
        if word in RETRYABLE_ERRORS:
            retry_after = answer.retry_after(now=time.time())
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        self._final(word, reason, broken=word in BROKEN_DESTINATION)

    def _final(self, word: str, reason: str, *, broken: bool) -> NoReturn:
        self.final_errors[word] += 1
        if broken:
            log.error(
                "slack_destination_broken",
                sink=self.name,
                reason=word,
                hint="Slack refuses this sink's destination; fix its URL, token or channel",
            )
        else:
            log.warning("slack_rejected", sink=self.name, reason=word)
        raise DeliveryError(reason, retryable=False)

    def _encode(self, payload: Mapping[str, Any]) -> bytes:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()

    async def _post(self, payload: Mapping[str, Any], read_limit: int) -> Answer:
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": f"watcher/{__version__}",
        }
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get()}"
        return await post(
            self._client,
            self._url,
            content=self._encode(payload),
            headers=headers,
            deadline_seconds=self._timeout,
            where=self._where,
            scrubber=self._scrubber,
            read_limit=read_limit,
        )
