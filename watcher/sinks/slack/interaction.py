"""A click on a card's button, from Slack's request to a checked :class:`Click` and the
words answered to the person: no I/O here (the endpoint, Socket Mode and the actions live
in :mod:`watcher.app.slack_actions`).

- :class:`Verifier`: Slack's request signing (``X-Slack-Signature`` = ``v0=`` HMAC-SHA256
  of ``v0:{timestamp}:{body}`` with the signing secret, checked by ``slack_sdk``'s
  ``SignatureVerifier`` with a constant-time compare), a timestamp within 5 minutes either
  way, and no replay: a (timestamp, signature) pair is accepted once.
- :func:`parse_form` / :func:`parse_payload`: the ``block_actions`` payload, read
  defensively (it is the wire's, signed or not), into a :class:`Click`.
- :class:`Gate`: who may press what, from the sink's ``actions`` config.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_sdk.signature import Clock, SignatureVerifier

from watcher.model.secrets import Secret
from watcher.sinks.slack.card import BUTTONS, CANCEL, read_value
from watcher.sinks.slack.mrkdwn import clean, escape

MAX_BODY = 64 * 1024  # an interaction payload is a few KB; more is not Slack
WINDOW = 300.0  # seconds a request's timestamp may be off (Slack's advice: 5 minutes)
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REPLAY_MEMORY = 100_000


class Rejected(Exception):
    """A request refused before any action: ``status`` 401 (not Slack's) or 400 (not a
    click we understand); ``why`` is one word for the logs."""

    def __init__(self, status: int, why: str) -> None:
        self.status = status
        self.why = why
        super().__init__(f"{status} {why}")


class _Clock(Clock):
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock()


class Verifier:
    """Checks requests against one or more signing secrets (several Slack sinks); tells
    which one signed it (its index)."""

    def __init__(self, secrets: Sequence[Secret], *, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._verifiers = [SignatureVerifier(s.get(), clock=_Clock(clock)) for s in secrets]
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> int:
        """The index of the secret that signed the request; :class:`Rejected` (401)
        otherwise, or for a stale, future or replayed one."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            raise Rejected(401, "unsigned")
        now = self.clock()
        if abs(now - int(timestamp)) > WINDOW:
            raise Rejected(401, "stale_timestamp")
        signed = [
            i for i, v in enumerate(self._verifiers) if v.is_valid(body, timestamp, signature)
        ]
        if not signed:
            raise Rejected(401, "bad_signature")
        index = signed[0]
        self._forget(now)
        if (timestamp, signature) in self._seen:
            raise Rejected(401, "replayed")
        self._seen[(timestamp, signature)] = int(timestamp) + WINDOW
        return index

    def _forget(self, now: float) -> None:
        while self._seen and (
            next(iter(self._seen.values())) < now - WINDOW or len(self._seen) > _REPLAY_MEMORY
        ):
            self._seen.popitem(last=False)


@dataclass(frozen=True)
class Click:
    """A button pressed on a job's card: which, on which job, by whom, where."""

    action: str  # an action_id of :data:`watcher.sinks.slack.card.BUTTONS`
    source: str
    job_id: str
    user_id: str
    user_name: str | None
    channel_id: str | None
    response_url: str | None

    @property
    def by(self) -> str:
        """``slack:<name or id>`` for the audit: cleaned, one word."""
        name = clean(self.user_name or self.user_id, 64)
        name = re.sub(r"[^\w.@-]+", "_", name).strip("_") or self.user_id
        return f"slack:{name}"


def parse_form(body: bytes) -> Click:
    """The click in Slack's form body (``payload=<json>``); :class:`Rejected` (400)."""
    if len(body) > MAX_BODY:
        raise Rejected(413, "too_large")
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "not_a_form") from None
    raw = form.get("payload")
    if raw is None or len(raw) != 1:
        raise Rejected(400, "no_payload")
    try:
        payload = json.loads(raw[0])
    except (ValueError, RecursionError):
        raise Rejected(400, "not_json") from None
    return parse_payload(payload)


def _str(node: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, str) else None


def parse_payload(payload: Any) -> Click:
    """The click in an interaction payload (already JSON: Socket Mode gives it so)."""
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise Rejected(400, "not_block_actions")
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise Rejected(400, "no_action")
    action = actions[0].get("action_id")
    if action not in BUTTONS:
        raise Rejected(400, "unknown_action")
    job = read_value(actions[0].get("value"))
    if job is None:
        raise Rejected(400, "bad_value")
    user = _str(payload, "user", "id")
    if user is None or not _ID.fullmatch(user):
        raise Rejected(400, "no_user")
    channel = _str(payload, "channel", "id") or _str(payload, "container", "channel_id")
    if channel is not None and not _ID.fullmatch(channel):
        raise Rejected(400, "bad_channel")
    name = _str(payload, "user", "username") or _str(payload, "user", "name")
    url = _str(payload, "response_url")
    if url is not None and len(url) > 2000:
        url = None
    return Click(
        action=str(action),
        source=job[0],
        job_id=job[1],
        user_id=user,
        user_name=name,
        channel_id=channel,
        response_url=url,
    )


@dataclass(frozen=True)
class Gate:
    """Who may press what on one sink's cards: ``allowed_users`` / ``allowed_channels``
    (``None``: anyone / anywhere), *Cancel job* only with ``cancel``, and only jobs of the
    configured ``sources``."""

    sources: Collection[str]
    allowed_users: Collection[str] | None = None
    allowed_channels: Collection[str] | None = None
    cancel: bool = False

    def refusal(self, click: Click) -> tuple[str, str] | None:
        """(why, words for the person) when ``click`` may not act, else ``None``. Whether
        the store knows the job is the caller's to check (:func:`unknown_job`)."""
        if self.allowed_users is not None and click.user_id not in self.allowed_users:
            return "user_not_allowed", "You are not allowed to act on these alerts."
        if self.allowed_channels is not None and click.channel_id not in self.allowed_channels:
            return "channel_not_allowed", "Actions are not allowed from this channel."
        if click.action == CANCEL and not self.cancel:
            return "cancel_disabled", "Cancelling jobs from Slack is turned off here."
        if click.source not in self.sources:
            return "unknown_source", unknown_job(click)[1]
        return None


def unknown_job(click: Click) -> tuple[str, str]:
    return "unknown_job", (
        f"watcher knows no job `{escape(clean(click.job_id, 80))}` "
        f"on source `{escape(clean(click.source, 40))}`."
    )


def allowed_response_url(url: str | None, api_url: str) -> bool:
    """Only Slack's own ``response_url`` (``https://hooks.slack.com/…``), or one on the
    configured ``api_url``'s host (a Slack stand-in), gets our answer: a forged payload
    must not make watcher POST anywhere."""
    if url is None:
        return False
    try:
        parts, api = urlsplit(url), urlsplit(api_url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
        return True
    return (
        parts.scheme == api.scheme
        and parts.hostname is not None
        and parts.hostname == api.hostname
        and parts.port == api.port
    )


def answer(text: str) -> dict[str, Any]:
    """An ephemeral message for the ``response_url`` (only the clicker sees it)."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def outcome(ok: bool, message: str) -> str:
    """The action's own words (:class:`watcher.app.actions.Done`), as Slack text."""
    mark = ":white_check_mark:" if ok else ":warning:"
    return f"{mark} {escape(clean(message, 1000))}"
