"""The PagerDuty sink: one Events API v2 request per paging transition, over the daemon's
HTTP client; what each transition means is :mod:`.meaning`'s."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import structlog

from watcher import __version__
from watcher.deliver.exchange import post, refusal
from watcher.deliver.redact import Scrubber, redact_url
from watcher.deliver.retry import Verdict
from watcher.model import types
from watcher.model.fitting import encode, fit
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition
from watcher.render import workflows
from watcher.sinks.pagerduty.meaning import (
    DEFAULT_SEVERITY,
    EVENTS_URL,
    SEVERITIES,
    TRIGGER_STATUSES,
    Decision,
    decisions,
    family,
    resolving,
    sanitize,
    summary,
)

log = structlog.get_logger(__name__)

MAX_FIELD = 255  # our own cap for source, component, group, class
MAX_EVENT_BYTES = 500_000  # PagerDuty refuses events over 512 KB; keep a margin
RATE_LIMIT_WAIT = 30.0  # PagerDuty: "retry 3 times with each request being 30 seconds apart"
# A Workflows execution's tree, on top of the payload data (a failed child names its root).
_TREE = ("workflow_name", "deployment_name", "run_id", "parent_execution_id", "root_execution_id")


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
        self._resolve_on = resolving(resolve_on)
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
        :class:`DeliveryError`. Envelopes that neither trigger, acknowledge nor resolve are
        accepted without a request; a re-send repeats the same ``dedup_key`` (PagerDuty
        merges it)."""
        for envelope in batch:
            for decision in decisions(envelope.transition, self._resolve_on):
                await self._send_one(envelope, decision)

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client is shared and owned by the caller."""

    def severity_of(self, transition: Transition, decision: Decision) -> str:
        """The configured level for the full type, else the status, else the kind word
        (``watcher test-sink``'s incident: info)."""
        if transition.type == types.TEST:
            return "info"
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
        if decision.action != "trigger":  # resolve, acknowledge: the key says which alert
            return body
        job = transition.job
        payload: dict[str, Any] = {
            "summary": summary(transition, decision),
            "source": sanitize(transition.source, MAX_FIELD) or "watcher",
            "severity": self.severity_of(transition, decision),
            "timestamp": transition.payload(envelope.detected_at)["timestamp"],
        }
        job_type = job.get("job_type") or job.get("endpoint") or job.get("deployment_name")
        optional = {
            "component": job.get("model") or job.get("workflow_name"),
            "group": job_type if job_type else (family(transition) if job else None),
            "class": transition.type,
        }
        for field_name, value in optional.items():
            if value:
                payload[field_name] = sanitize(str(value), MAX_FIELD)
        details: dict[str, Any] = {
            **transition.data(),
            "type": transition.type,
            "transition_id": transition.id,
        }
        if workflows.is_workflow(transition):
            for key in _TREE:
                details.setdefault(key, job.get(key))
        payload["custom_details"] = details
        body["payload"] = payload
        if self._client_name:
            body["client"] = self._client_name
        if self._client_url:
            body["client_url"] = self._client_url
        return body

    def preview(self, batch: Sequence[Envelope]) -> str | dict[str, Any]:
        """The event :meth:`send` would send for the first of ``batch``, its routing key
        hidden (nothing is sent); a sentence when PagerDuty would not hear about it."""
        chosen = decisions(batch[0].transition, self._resolve_on)
        if not chosen:
            return "(not sent: PagerDuty only hears about failures, stalls and their ends)"
        event = self.event(batch[0], chosen[0])
        event["routing_key"] = "<secret>"
        return event

    def _encode(self, event: dict[str, Any]) -> bytes:
        """The event as valid UTF-8 JSON within :data:`MAX_EVENT_BYTES`: a job carrying a
        600 KB suffix, a huge error list or thousands of metadata keys must still page, so
        ``custom_details`` is trimmed field by field (:func:`fit`, marked ``truncated``)
        around the summary, key, severity and source, which are short already."""
        raw = encode(event)
        if len(raw) <= MAX_EVENT_BYTES or "payload" not in event:
            return raw
        payload = event["payload"]
        details = payload["custom_details"]
        payload["custom_details"] = {}
        room = MAX_EVENT_BYTES - len(encode(event)) - len(',"truncated":true')
        fitted, _ = fit(details, room)
        payload["custom_details"] = {**fitted, "truncated": True}
        return encode(event)

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
