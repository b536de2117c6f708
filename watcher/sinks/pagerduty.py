"""PagerDuty sink: Events API v2 alerts that open on failures and close on recovery.

Which transitions page and which resolve:

- **trigger**: a status change to FAILED, FAILED_VALIDATION or TIMEOUT_EXCEEDED (any case);
  a time alert (``<prefix>.stalled``, ``<prefix>.overrun``, repeats included);
  ``watcher.source.unreachable`` and ``watcher.source.retired``;
- **resolve**: a status change to one of ``resolve_on`` (default SUCCESS and CANCELLED:
  a job that ends well, or was cancelled on purpose, needs nobody any more);
  ``<prefix>.stalled.resolved``, ``<prefix>.overrun.resolved``; ``watcher.source.recovered``;
- everything else is accepted without a request.

The ``dedup_key`` is derived from the transition alone, so a restarted watcher resolves
what an earlier process triggered without remembering anything:

- ``watcher/{source}/{job_id}``: the job's status (failed, then succeeded or cancelled);
- ``watcher/{source}/{job_id}/{rule}/{since}``: one time alert (one rule, one spell of a
  status). A separate key, so that a stall resolving when the job *fails* does not close
  the failure's alert, and a spell resolving late does not close the next spell's;
- ``watcher/{source}/source``: the source itself (unreachable or retired, then recovered).

PagerDuty drops a resolve for a key with no open alert, so resolving a job that never
paged is harmless (it still costs one request against the integration's rate limit).

Answers (PagerDuty's documented retry table): 202 accepted; 400 final, with PagerDuty's
``message`` and ``errors``; 429 and 5xx retryable (``Retry-After`` honoured, 30 s at least
on 429 as PagerDuty advises); other 4xx and 3xx final; transport errors retryable. The
routing key travels only in the request body: it is never logged, and answers quoted in
errors are scrubbed of it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import structlog

from watcher import __version__
from watcher.deliver.exchange import post, refusal
from watcher.deliver.redact import Scrubber, redact_url
from watcher.deliver.retry import Verdict
from watcher.model import types
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.statuses import FAILED
from watcher.model.transitions import Transition
from watcher.render.text import clean

log = structlog.get_logger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
TRIGGER_STATUSES = FAILED
DEFAULT_RESOLVE_ON = ("SUCCESS", "CANCELLED")
DEFAULT_SEVERITY: Mapping[str, str] = {
    "failed": "error",
    "failed_validation": "error",
    "timeout_exceeded": "error",
    "stalled": "warning",
    "overrun": "warning",
    "unreachable": "critical",
    "retired": "info",
}
TIME_ALERTS = types.TIME_ALERTS
SOURCE_TRIGGERS = {types.SOURCE_UNREACHABLE: "unreachable", types.SOURCE_RETIRED: "retired"}
SOURCE_RESOLVE = types.SOURCE_RECOVERED

MAX_SUMMARY = 1024  # PagerDuty's limit for payload.summary
MAX_DEDUP_KEY = 255  # PagerDuty's limit for dedup_key
MAX_FIELD = 255  # our own cap for source, component, group, class
MAX_EVENT_BYTES = 500_000  # PagerDuty refuses events over 512 KB; keep a margin
RATE_LIMIT_WAIT = 30.0  # PagerDuty: "retry 3 times with each request being 30 seconds apart"

Action = Literal["trigger", "resolve"]


@dataclass(frozen=True)
class Decision:
    """What one transition means to PagerDuty: an action on an alert, and why."""

    action: Action
    dedup_key: str
    kind: str  # the severity lookup word: a status (lowercase) or stalled, unreachable, …


def _sanitize(value: object, limit: int | None = None) -> str:
    """One line: control and format characters become word breaks (as in every event)."""
    return clean(value, limit, mark=" ")


def _short_id(job_id: str) -> str:
    text = _sanitize(job_id)
    return text if len(text) <= 9 else text[:8] + "…"


def dedup_key(*parts: str) -> str:
    """``watcher/part/part…``, at most 255 characters (a hash stands in for the overflow)."""
    key = "/".join(("watcher", *(_sanitize(p) or "-" for p in parts)))
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
    return f"{key[: MAX_DEDUP_KEY - 33]}~{digest}"


def _family(transition: Transition) -> str:
    """``fine-tuning`` or ``batch`` (the type's first word), for the summary."""
    head = transition.type.split(".", 1)[0]
    return head.replace("_", "-") if head else "job"


def _time_alert(transition: Transition) -> tuple[str, bool] | None:
    """``("stalled", resolved?)`` for a time alert's type, else ``None``."""
    words = transition.type.lower().split(".")
    resolved = words[-1] == "resolved"
    if resolved:
        words = words[:-1]
    if len(words) >= 2 and words[-1] in TIME_ALERTS:
        return words[-1], resolved
    return None


def _alert_facts(transition: Transition) -> Mapping[str, Any]:
    alert = transition.details.get("alert")
    return alert if isinstance(alert, Mapping) else {}


def decide(transition: Transition, resolve_on: frozenset[str]) -> Decision | None:
    """The PagerDuty action for ``transition``, or ``None`` when it is not PagerDuty's."""
    source = transition.source
    if transition.type in SOURCE_TRIGGERS:
        return Decision("trigger", dedup_key(source, "source"), SOURCE_TRIGGERS[transition.type])
    if transition.type == SOURCE_RESOLVE:
        return Decision("resolve", dedup_key(source, "source"), "recovered")
    job_id = transition.job_id or str(transition.job.get("id") or "")
    if not job_id:
        return None
    time_alert = _time_alert(transition)
    if time_alert is not None:
        kind, resolved = time_alert
        facts = _alert_facts(transition)
        parts = [source, job_id, str(facts.get("rule") or kind)]
        if facts.get("since"):
            parts.append(str(facts["since"]))
        return Decision("resolve" if resolved else "trigger", dedup_key(*parts), kind)
    if transition.status is None:
        return None
    status = transition.status.strip().upper()
    if status in TRIGGER_STATUSES:
        return Decision("trigger", dedup_key(source, job_id), status.lower())
    if status in resolve_on:
        return Decision("resolve", dedup_key(source, job_id), status.lower())
    return None


def summary(transition: Transition, decision: Decision) -> str:
    """One line for the alert's title, at most 1024 characters, e.g.
    ``FAILED: fine-tuning job 3b9c1e7a… (open-mistral-7b, support-bot) on ft``."""
    source = _sanitize(transition.source)
    if decision.kind in ("unreachable", "retired"):
        reason = _sanitize(str(transition.details.get("reason") or ""))
        text = f"source {source} {decision.kind}" + (f": {reason}" if reason else "")
        return _sanitize(text, MAX_SUMMARY)
    job = transition.job
    job_id = transition.job_id or str(job.get("id") or "")
    labels = [_sanitize(str(job[k]), 80) for k in ("model", "suffix") if job.get(k)]
    what = f"{_family(transition)} job {_short_id(job_id)}"
    if labels:
        what += f" ({', '.join(labels)})"
    what += f" on {source}"
    if decision.kind in TIME_ALERTS:
        facts = _alert_facts(transition)
        held = _sanitize(str(facts.get("status") or job.get("status") or ""))
        since = _sanitize(str(facts.get("since") or ""))
        text = f"{decision.kind.upper()}: {what}"
        if held:
            text += f": {held}" + (f" since {since}" if since else "")
        return _sanitize(text, MAX_SUMMARY)
    return _sanitize(f"{_sanitize(transition.status or '').upper()}: {what}", MAX_SUMMARY)


class PagerDutySink:
    """Delivers paging transitions to the PagerDuty Events API v2 over a shared client.

    Stateless: the ``dedup_key`` of an alert is derived from the transitions that open and
    close it, so resolves work across restarts and replicas.
    """

    def __init__(
        self,
        name: str,
        *,
        client: httpx.AsyncClient,
        routing_key: Secret,
        url: str = EVENTS_URL,
        severity: Mapping[str, str] | None = None,
        resolve_on: Sequence[str] | None = None,
        timeout: float = 10.0,
        client_name: str | None = "watcher",
        client_url: str | None = None,
        clock: Callable[[], float] = time.time,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.name = name
        where = f"pagerduty {name!r}"
        self._redacted = redact_url(url)
        if urlsplit(url).scheme.lower() not in ("http", "https") or "<" in self._redacted:
            raise ValueError(f"{where}: url must be http(s)://host/…")
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"{where}: url is not a valid URL") from None
        if not timeout > 0:
            raise ValueError(f"{where}: timeout must be positive")
        key = routing_key.get()
        if not key.strip() or any(ch.isspace() for ch in key):
            raise ValueError(f"{where}: routing_key must be a non-empty token without spaces")
        self._severity = dict(DEFAULT_SEVERITY)
        for status_or_type, level in (severity or {}).items():
            if level.lower() not in SEVERITIES:
                raise ValueError(
                    f"{where}: severity[{status_or_type!r}] must be one of "
                    f"{', '.join(sorted(SEVERITIES))}"
                )
            self._severity[status_or_type.strip().lower()] = level.lower()
        chosen = DEFAULT_RESOLVE_ON if resolve_on is None else resolve_on
        self._resolve_on = frozenset(s.strip().upper() for s in chosen)
        if self._resolve_on & TRIGGER_STATUSES:
            clash = ", ".join(sorted(self._resolve_on & TRIGGER_STATUSES))
            raise ValueError(f"{where}: resolve_on lists {clash}, a status that triggers")
        self._url = url
        self._routing_key = routing_key
        self._client = client
        self._timeout = timeout
        self._client_name = client_name
        self._client_url = client_url
        self._clock = clock
        self._scrubber = scrubber or Scrubber.of_secrets(routing_key)

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Send each paging envelope in order; the first failure raises
        :class:`DeliveryError`. Envelopes that neither trigger nor resolve are accepted
        without a request; a re-send repeats the same ``dedup_key`` (PagerDuty merges it)."""
        for envelope in batch:
            decision = decide(envelope.transition, self._resolve_on)
            if decision is None:
                continue
            await self._send_one(envelope, decision)

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client is shared and owned by the caller."""

    def severity_of(self, transition: Transition, decision: Decision) -> str:
        """The configured level for the full type, else the status, else the kind word."""
        for candidate in (transition.type.lower(), decision.kind):
            level = self._severity.get(candidate)
            if level is not None:
                return level
        return "error"

    def event(self, envelope: Envelope, decision: Decision) -> dict[str, Any]:
        """The Events API v2 body for ``envelope``, routing key included."""
        transition = envelope.transition
        body: dict[str, Any] = {
            "routing_key": self._routing_key.get(),
            "event_action": decision.action,
            "dedup_key": decision.dedup_key,
        }
        if decision.action == "resolve":
            return body
        job = transition.job
        payload: dict[str, Any] = {
            "summary": summary(transition, decision),
            "source": _sanitize(transition.source, MAX_FIELD) or "watcher",
            "severity": self.severity_of(transition, decision),
            "timestamp": transition.payload(envelope.detected_at)["timestamp"],
        }
        job_type = job.get("job_type") or job.get("endpoint")
        optional = {
            "component": job.get("model"),
            "group": job_type if job_type else (_family(transition) if job else None),
            "class": transition.type,
        }
        for field_name, value in optional.items():
            if value:
                payload[field_name] = _sanitize(str(value), MAX_FIELD)
        payload["custom_details"] = {
            **transition.data(),
            "type": transition.type,
            "transition_id": transition.id,
        }
        body["payload"] = payload
        if self._client_name:
            body["client"] = self._client_name
        if self._client_url:
            body["client_url"] = self._client_url
        return body

    def preview(self, batch: Sequence[Envelope]) -> str | dict[str, Any]:
        """The event :meth:`send` would send for the first of ``batch``, its routing key
        hidden (nothing is sent); a sentence when PagerDuty would not hear about it."""
        decision = decide(batch[0].transition, self._resolve_on)
        if decision is None:
            return "(not sent: PagerDuty only hears about failures, stalls and their ends)"
        event = self.event(batch[0], decision)
        event["routing_key"] = "<secret>"
        return event

    def _encode(self, event: dict[str, Any]) -> bytes:
        raw = json.dumps(event, separators=(",", ":"), ensure_ascii=True, default=str).encode()
        if len(raw) <= MAX_EVENT_BYTES or "payload" not in event:
            return raw
        # A job carrying a huge error list must still page: keep what identifies it.
        details = event["payload"]["custom_details"]
        job = details.get("job") if isinstance(details.get("job"), Mapping) else {}
        keep = ("id", "status", "model", "job_type", "suffix", "fine_tuned_model")
        event["payload"]["custom_details"] = {
            **{k: details[k] for k in ("source", "status", "previous_status") if k in details},
            "occurred_at": details.get("occurred_at"),
            "type": details.get("type"),
            "transition_id": details.get("transition_id"),
            "job": {k: job[k] for k in keep if k in job},
            "truncated": True,
        }
        return json.dumps(event, separators=(",", ":"), ensure_ascii=True, default=str).encode()

    async def _send_one(self, envelope: Envelope, decision: Decision) -> None:
        transition = envelope.transition
        where = f"pagerduty {self.name!r} ({self._redacted})"
        answer = await post(
            self._client,
            self._url,
            content=self._encode(self.event(envelope, decision)),
            headers={
                "content-type": "application/json",
                "accept": "application/json",
                "user-agent": f"watcher/{__version__}",
            },
            deadline_seconds=self._timeout,
            where=where,
            scrubber=self._scrubber,
        )
        said = log.bind(
            sink=self.name,
            transition_id=transition.id,
            action=decision.action,
            dedup_key=decision.dedup_key,
            status_code=answer.status,
        )
        if answer.verdict is Verdict.DONE:
            said.debug("pagerduty_delivered", type=transition.type)
            return
        excerpt = self._reason(answer.text())
        error = refusal(
            answer, where=where, excerpt=excerpt, now=self._clock(), least_wait=RATE_LIMIT_WAIT
        )
        if not error.retryable:
            said.warning("pagerduty_rejected", reason=excerpt)
        raise error

    def _reason(self, text: str) -> str:
        """PagerDuty's ``message`` and ``errors`` when the body is its JSON, else an excerpt;
        one sanitized line of at most 200 characters, scrubbed of the routing key."""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and ("message" in parsed or "errors" in parsed):
            pieces = [str(parsed.get("message") or "")]
            errors = parsed.get("errors")
            if isinstance(errors, list):
                pieces += [str(e) for e in errors[:5]]
            elif errors:
                pieces.append(str(errors))
            text = "; ".join(p for p in pieces if p)
        return self._scrubber.excerpt(text)
