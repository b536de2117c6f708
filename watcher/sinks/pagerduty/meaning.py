"""What a transition means to PagerDuty: trigger, acknowledge or resolve which alert (its
``dedup_key``), with which severity word, under which one-line summary. Pure, no I/O.

The ``dedup_key`` of each incident is decided here only: the transitions that open, close
and acknowledge it (``watcher.action.acknowledged``) all name it the same way."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from watcher.model import types
from watcher.model.statuses import CANCELLED, FAILED, SUCCEEDED
from watcher.model.transitions import Transition
from watcher.render import workflows
from watcher.render.text import clean, exact

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
TRIGGER_STATUSES = FAILED
# A job that ended well, or was cancelled on purpose, needs nobody any more: each family's
# word for it (fine-tuning and batch SUCCESS/CANCELLED, Workflows COMPLETED/CANCELED).
DEFAULT_RESOLVE_ON = ("SUCCESS", "CANCELLED", "COMPLETED", "CANCELED")
# A user's list naming one family's word also means the other families' (resolve_on:
# [SUCCESS] resolves a COMPLETED execution too), so lists written before Workflows still work.
SYNONYMS = (SUCCEEDED, CANCELLED)
DEFAULT_SEVERITY: Mapping[str, str] = {
    "failed": "error",
    "failed_validation": "error",
    "timeout_exceeded": "error",
    "timed_out": "error",
    "terminated": "error",
    "retry_storm": "error",
    "activity_failed": "error",
    "stalled": "warning",
    "overrun": "warning",
    "unreachable": "critical",
    "retired": "info",
}
TIME_ALERTS = types.TIME_ALERTS
SOURCE_TRIGGERS = {types.SOURCE_UNREACHABLE: "unreachable", types.SOURCE_RETIRED: "retired"}
SOURCE_RESOLVE = types.SOURCE_RECOVERED
# Workflows facts that page, as their own kind word (one alert per execution with its
# failures: dedup_key watcher/{source}/{execution_id}).
WORKFLOW_TRIGGERS = {
    f"{types.WORKFLOW_EXECUTION}.{types.RETRY_STORM}": "retry_storm",
    f"{types.WORKFLOW_ACTIVITY}.{types.ACTIVITY_FAILED}": "activity_failed",
}

MAX_SUMMARY = 1024  # PagerDuty's limit for payload.summary
MAX_DEDUP_KEY = 255  # PagerDuty's limit for dedup_key
MAX_FAILURE = 200  # characters of a workflow's failure message in the summary

Action = Literal["trigger", "resolve", "acknowledge"]


@dataclass(frozen=True)
class Decision:
    """What one transition means to PagerDuty: an action on an alert, and why."""

    action: Action
    dedup_key: str
    kind: str  # the severity lookup word: a status (lowercase) or stalled, unreachable, …


def sanitize(value: object, limit: int | None = None) -> str:
    """One line: control and format characters become word breaks (as in every event)."""
    return clean(value, limit, mark=" ")


def _short_id(job_id: str) -> str:
    text = sanitize(job_id)
    return text if len(text) <= 9 else text[:8] + "…"


def dedup_key(*parts: str) -> str:
    """``watcher/part/part…``, at most 255 characters (a hash stands in for the overflow).

    Each part is exact (:func:`exact`): ids that differ only in invisible characters (or
    hold a ``/``) get a hash of the raw id, so two jobs never share an incident."""
    key = "/".join(("watcher", *(exact(p, reserved="/") or "-" for p in parts)))
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]
    return f"{key[: MAX_DEDUP_KEY - 33]}~{digest}"


def alert_key(source: str, job_id: str, rule: str, since: object = None) -> str:
    """The ``dedup_key`` of a time alert's incident: one per job, rule and spell (``since``,
    when the condition says when it began)."""
    parts = [source, job_id, rule]
    if since:
        parts.append(str(since))
    return dedup_key(*parts)


def resolving(statuses: Any) -> frozenset[str]:
    """The statuses that resolve, from a ``resolve_on`` list (``None``: the defaults), with
    the other families' words for what it names (:data:`SYNONYMS`)."""
    chosen = {s.strip().upper() for s in (DEFAULT_RESOLVE_ON if statuses is None else statuses)}
    for words in SYNONYMS:
        if chosen & words:
            chosen |= words
    return frozenset(chosen)


def family(transition: Transition) -> str:
    """``fine-tuning``, ``batch`` or ``workflow`` (the type's first word), for the summary."""
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


def alert_facts(transition: Transition) -> Mapping[str, Any]:
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
        facts = alert_facts(transition)
        key = alert_key(source, job_id, str(facts.get("rule") or kind), facts.get("since"))
        return Decision("resolve" if resolved else "trigger", key, kind)
    if transition.type in WORKFLOW_TRIGGERS:
        return Decision("trigger", dedup_key(source, job_id), WORKFLOW_TRIGGERS[transition.type])
    if transition.status is None:
        return None
    status = transition.status.strip().upper()
    if status in TRIGGER_STATUSES:
        return Decision("trigger", dedup_key(source, job_id), status.lower())
    if status in resolve_on:
        return Decision("resolve", dedup_key(source, job_id), status.lower())
    return None


def decisions(transition: Transition, resolve_on: frozenset[str]) -> list[Decision]:
    """Every PagerDuty action ``transition`` means: :func:`decide`'s one (or none), and for
    an acknowledgement one ``acknowledge`` per alert it names (``details.alerts``: each
    with the ``rule`` and ``since`` its trigger carried)."""
    if transition.type == types.TEST:
        # `watcher test-sink`: a real incident, resolved at once, so that the routing key
        # and the way to PagerDuty are proven (accepted without a request would prove nothing).
        key = dedup_key("watcher", f"test-{transition.id}")
        return [Decision("trigger", key, "info"), Decision("resolve", key, "info")]
    if transition.type != types.ACTION_ACKNOWLEDGED:
        decision = decide(transition, resolve_on)
        return [] if decision is None else [decision]
    alerts = transition.details.get("alerts")
    if not transition.job_id or not isinstance(alerts, list):
        return []
    return [
        Decision(
            "acknowledge",
            alert_key(transition.source, transition.job_id, str(a["rule"]), a.get("since")),
            "acknowledged",
        )
        for a in alerts
        if isinstance(a, Mapping) and a.get("rule")
    ]


def _workflow_what(transition: Transition, view: workflows.WorkflowView, source: str) -> str:
    """``workflow execution 019b2bd7… (support-workflow, prod) on wf``."""
    job_id = transition.job_id or str(transition.job.get("id") or "")
    labels = [sanitize(v, 80) for v in (view.workflow, view.deployment) if v]
    what = f"workflow execution {_short_id(job_id)}"
    if labels:
        what += f" ({', '.join(labels)})"
    return what + f" on {source}"


def _workflow_tail(view: workflows.WorkflowView) -> str:
    """``: activity charge_card failed (attempt 3): <failure> [child of p in root r]``."""
    tail = ""
    if view.activity_fact or view.kind == types.RETRY_STORM:
        tail += f": {sanitize(workflows.what(view), 120)}"
        if view.retries is not None:
            tail += f" ({view.retries} retries)"
    elif view.attempt is not None:
        tail += f" (attempt {view.attempt})"
    if view.failure is not None:
        tail += f": {sanitize(view.failure, MAX_FAILURE)}"
    lineage = workflows.lineage(view)
    if lineage:
        tail += f" [{sanitize(lineage)}]"
    return tail


def summary(transition: Transition, decision: Decision) -> str:
    """One line for the alert's title, at most 1024 characters, e.g.
    ``FAILED: fine-tuning job 3b9c1e7a… (open-mistral-7b, support-bot) on ft``."""
    source = sanitize(transition.source)
    if transition.type == types.TEST:
        reason = sanitize(str(transition.details.get("reason") or "watcher test-sink"))
        return sanitize(f"TEST (resolved at once): {reason}", MAX_SUMMARY)
    if decision.kind in ("unreachable", "retired"):
        reason = sanitize(str(transition.details.get("reason") or ""))
        text = f"source {source} {decision.kind}" + (f": {reason}" if reason else "")
        return sanitize(text, MAX_SUMMARY)
    job = transition.job
    job_id = transition.job_id or str(job.get("id") or "")
    view = workflows.read(transition)
    if view is not None:
        what = _workflow_what(transition, view, source)
    else:
        labels = [sanitize(str(job[k]), 80) for k in ("model", "suffix") if job.get(k)]
        what = f"{family(transition)} job {_short_id(job_id)}"
        if labels:
            what += f" ({', '.join(labels)})"
        what += f" on {source}"
    if decision.kind in TIME_ALERTS:
        facts = alert_facts(transition)
        held = sanitize(str(facts.get("status") or job.get("status") or ""))
        since = sanitize(str(facts.get("since") or ""))
        text = f"{decision.kind.upper()}: {what}"
        if held:
            text += f": {held}" + (f" since {since}" if since else "")
        return sanitize(text, MAX_SUMMARY)
    head = sanitize(transition.status or decision.kind.replace("_", " ")).upper()
    tail = _workflow_tail(view) if view is not None else ""
    return sanitize(f"{head}: {what}{tail}", MAX_SUMMARY)
