"""The Slack sink: validation of its config, composing, and the two delivery modes
(incoming webhook; bot token with one thread per job)."""

from __future__ import annotations

import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import httpx2 as httpx
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
from watcher.render.text import exact
from watcher.sinks.slack.blocks import Formatter, Message, section
from watcher.sinks.slack.card import Buttons, card, latest
from watcher.sinks.slack.meaning import severity
from watcher.sinks.slack.mrkdwn import MAX_TEXT, clean, multiline
from watcher.sinks.slack.webapi import BROKEN_DESTINATION, REASON, WebApi, encode

log = structlog.get_logger(__name__)

_WEBHOOK_READ_LIMIT = 4096  # Slack answers "ok" or an error word
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
        buttons: Buttons | None = None,
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
        self._buttons = buttons or Buttons()
        self._api: WebApi | None = None
        if token is not None:
            self._api = WebApi(
                client,
                url,
                token,
                where=self._where,
                timeout=timeout,
                scrubber=self._scrubber,
                final=self._final,
            )
        self._locks: dict[str, anyio.Lock] = {}
        # Parts of batches Slack accepted before a later part failed (see :meth:`send`).
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
        """Webhook: one message for the whole batch. Bot: per job, its card (posted the first
        time, edited after) and one reply in its thread; one top-level message for the
        transitions about no job. A failure raises :class:`DeliveryError`, and the messages
        already accepted are not posted again by this instance on retry (the card's edit,
        which shows the batch's latest state, is redone: the last state wins)."""
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
                    await self._post_threaded(key, envelopes, ids, accepted)
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
            self._accepted.pop(("reply", *ids), None)

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
        word = excerpt if REASON.fullmatch(excerpt) else f"http_{status}"
        self._final(
            word, str(error), broken=word in BROKEN_DESTINATION or status in (401, 403, 404, 410)
        )

    async def _post_threaded(
        self,
        key: tuple[str, str],
        envelopes: Sequence[Envelope],
        ids: tuple[str, ...],
        accepted: list[tuple[str, ...]],
    ) -> None:
        """The job's card (posted, its ``ts`` kept as the thread's; or edited to the batch's
        latest state, or posted again if someone deleted it), then the batch's reply in its
        thread (a failure also broadcast to the channel)."""
        source, job_id = key
        # Exact: ids that differ only in invisible characters are two jobs, two threads
        # (a plain id keeps the key it always had).
        state_key = f"thread:{source}:{exact(job_id)}"
        state = self._state
        assert state is not None
        shown = latest(envelopes)
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
            if thread is None:
                thread = await self._new_card(state, state_key, shown or envelopes[-1])
            elif shown is not None and not await self._edit_card(thread, shown):
                thread = await self._new_card(state, state_key, shown)  # it was deleted
            reply = ("reply", *ids)
            if reply not in self._accepted:
                failed = any(severity(e.transition) == 0 for e in envelopes)
                await self._post_api(envelopes, thread_ts=thread, broadcast=failed)
                accepted.append(reply)

    async def _new_card(self, state: SinkState, state_key: str, shown: Envelope) -> str | None:
        """Post the job's card; its ``ts`` becomes the job's thread (``None``: Slack gave
        none, and the replies go top-level)."""
        message = card(self._format, shown, self._buttons)
        ts = await self._call("chat.postMessage", {"channel": self.channel, **message.payload()})
        if ts is not None:
            try:
                await state.put_sink_state(self.name, state_key, ts)
            except Exception as exc:  # posted: losing the thread is better than a duplicate
                log.warning(
                    "slack_thread_not_saved",
                    sink=self.name,
                    job_id=shown.transition.job_id,
                    error=type(exc).__name__,
                )
        return ts

    async def _edit_card(self, ts: str, shown: Envelope) -> bool:
        """``chat.update`` of the card to ``shown``; ``False`` when the card is gone. A rate
        limit raises a retryable :class:`DeliveryError`: the dispatcher tries again later."""
        message = card(self._format, shown, self._buttons)
        payload = {"channel": self.channel, "ts": ts, **message.payload()}
        payload.pop("unfurl_links", None)  # chat.update takes neither
        payload.pop("unfurl_media", None)
        assert self._api is not None
        reply = await self._api.call("chat.update", payload, tolerate={"message_not_found"})
        if reply.get("ok") is not True:
            log.warning("slack_card_gone", sink=self.name, job_id=shown.transition.job_id)
            return False
        log.debug("slack_card_edited", sink=self.name, job_id=shown.transition.job_id)
        return True

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
        """``chat.postMessage`` of the batch's message; the new message's ``ts``."""
        payload: dict[str, Any] = {"channel": self.channel, **self.compose(envelopes).payload()}
        if thread_ts is not None:
            payload["thread_ts"] = thread_ts
            if broadcast:
                payload["reply_broadcast"] = True
        ts = await self._call("chat.postMessage", payload)
        log.debug(
            "slack_delivered",
            sink=self.name,
            mode="bot",
            transitions=len(envelopes),
            threaded=thread_ts is not None,
        )
        return ts

    async def _call(self, method: str, payload: Mapping[str, Any]) -> str | None:
        """A Web API call that makes a message; the message's ``ts`` (``None`` if Slack
        gave none)."""
        assert self._api is not None
        reply = await self._api.call(method, payload)
        ts = reply.get("ts")
        return ts if isinstance(ts, str) and _TS.fullmatch(ts) else None

    def _final(self, word: str, reason: str, broken: bool) -> NoReturn:
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

    async def _post(self, payload: Mapping[str, Any], read_limit: int) -> Answer:
        """The incoming webhook's POST (its URL is the secret: no token)."""
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": f"watcher/{__version__}",
        }
        return await post(
            self._client,
            self._url,
            content=encode(payload),
            headers=headers,
            deadline_seconds=self._timeout,
            where=self._where,
            scrubber=self._scrubber,
            read_limit=read_limit,
        )
