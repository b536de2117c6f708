"""What a transition says to a Slack reader: its label, emoji, severity and facts (escaped
mrkdwn lines)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher.model import types
from watcher.model.statuses import FAILED
from watcher.model.transitions import Transition
from watcher.render import workflows
from watcher.render.actions import action_line
from watcher.render.text import duration, finite
from watcher.sinks.slack import workflow
from watcher.sinks.slack.mrkdwn import ARROW, clean, code, escape, number, safe

PREFIXES = (*(f"{prefix}." for prefix in types.JOB_PREFIXES), "watcher.")

_STATUS_EMOJI = {
    "FAILED": ":x:",
    "FAILED_VALIDATION": ":x:",
    "TIMEOUT_EXCEEDED": ":x:",
    "CANCELLATION_REQUESTED": ":octagonal_sign:",
    "CANCELLED": ":no_entry_sign:",
    "SUCCESS": ":white_check_mark:",
    "RUNNING": ":arrow_forward:",
    "STARTED": ":arrow_forward:",
    "QUEUED": ":inbox_tray:",
    "VALIDATING": ":mag:",
    "VALIDATED": ":mag:",
}
_KIND_EMOJI = {
    "stalled": ":hourglass:",
    "overrun": ":stopwatch:",
    "checkpoint": ":chart_with_downwards_trend:",
    "model_ready": ":package:",
    "progress": ":bar_chart:",
    "errors_rising": ":warning:",
    "source.retired": ":no_entry:",
    "source.unreachable": ":rotating_light:",
    "source.recovered": ":large_green_circle:",
    "digest": ":newspaper:",
    "heartbeat": ":heartbeat:",
}


# Workflows executions by tone (:func:`watcher.render.workflows.tone`), a few kinds apart.
_WORKFLOW_EMOJI = {
    "failure": ":x:",
    "warning": ":warning:",
    "success": ":white_check_mark:",
    "cancelled": ":no_entry_sign:",
    "resolved": ":large_green_circle:",
    "info": ":information_source:",
}
_WORKFLOW_KIND_EMOJI = {
    "running": ":arrow_forward:",
    "retrying": ":repeat:",
    "activity.retrying": ":repeat:",
    "continued_as_new": ":fast_forward:",
    "stalled": ":hourglass:",
    "overrun": ":stopwatch:",
}
_WORKFLOW_SEVERITY = {"failure": 0, "warning": 1, "cancelled": 2}


def _workflow_label(view: workflows.WorkflowView) -> str:
    """A label that groups alike: the status, or the fact's words (no attempt numbers)."""
    if view.kind == workflows.CONTINUED_AS_NEW:
        return "continued as new"
    if view.status_change:
        return clean(view.status, 40)
    return clean(view.kind.replace(".", " ").replace("_", " "), 60)


def _kind(transition: Transition) -> str:
    for prefix in PREFIXES:
        if transition.type.startswith(prefix):
            return transition.type[len(prefix) :]
    return transition.type


def label(transition: Transition) -> str:
    """The entered status (``FAILED``) or the fact (``stalled``, ``source retired``)."""
    view = workflows.read(transition)
    if view is not None:
        return _workflow_label(view)
    if transition.status is not None:
        return clean(transition.status, 40)
    return clean(_kind(transition).replace(".", " ").replace("_", " "), 60)


def severity(transition: Transition) -> int:
    """0 a failure, 1 a warning or an alert, 2 a cancellation, 3 the rest."""
    view = workflows.read(transition)
    if view is not None:
        return _WORKFLOW_SEVERITY.get(workflows.tone(view), 3)
    status = (transition.status or "").upper()
    kind = _kind(transition)
    if status in FAILED:
        return 0
    if kind.endswith("resolved") or kind == "source.recovered":
        return 3
    if "alert" in transition.details or kind in (
        "source.unreachable",
        "source.retired",
        "errors_rising",
    ):
        return 1
    if status.startswith("CANCEL"):
        return 2
    return 3


def emoji(transition: Transition) -> str:
    view = workflows.read(transition)
    if view is not None:
        tone = workflows.tone(view)
        if tone in ("failure", "resolved"):
            return _WORKFLOW_EMOJI[tone]
        return _WORKFLOW_KIND_EMOJI.get(view.kind, _WORKFLOW_EMOJI[tone])
    if transition.status is not None:
        return _STATUS_EMOJI.get(transition.status.upper(), ":information_source:")
    kind = _kind(transition)
    if kind.endswith(".resolved"):
        return ":large_green_circle:"
    return _KIND_EMOJI.get(kind, ":warning:" if "alert" in transition.details else ":bell:")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def requests_of(job: Mapping[str, Any]) -> str | None:
    """Batch counters: ``450 / 1000 processed, 12 failed``."""
    if "total_requests" not in job:
        return None
    total = job.get("total_requests")
    failed = job.get("failed_requests")
    succeeded = job.get("succeeded_requests")
    done: Any = job.get("completed_requests")
    if isinstance(succeeded, int) and isinstance(failed, int):
        done = succeeded + failed
    return f"{number(done)} / {number(total)} processed, {number(failed)} failed"


def cost_of(job: Mapping[str, Any]) -> str | None:
    metadata = _mapping(job.get("metadata"))
    cost = finite(metadata.get("cost"))
    if cost is None:
        return None
    currency = metadata.get("cost_currency")
    return f"{cost:.4g}" + (f" {safe(currency, 8)}" if currency else "")


def _fact(key: object, value: Any) -> str:
    """``limit 2h 0m``, ``status QUEUED``: one scalar rule fact (``""`` for the rest)."""
    if value is None or isinstance(value, Mapping | list):
        return ""
    name = clean(key, 32)
    seconds = finite(value)
    if name.endswith("_seconds") and seconds is not None:
        return f"{escape(name.removesuffix('_seconds'))} {duration(seconds)}"
    shown = safe(value, 80) if isinstance(value, str) else number(value)
    return f"{escape(name)} {shown}"


def _workflow_lines(transition: Transition) -> list[str]:
    """A Workflows failure, as a code block (it is too long for a field)."""
    view = workflows.read(transition)
    shown = workflow.failure(view) if view is not None else None
    return [shown] if shown is not None else []


def _acted(transition: Transition) -> list[str]:
    """Who did what, for a ``watcher.action.*`` transition (plain text)."""
    line = action_line(transition)
    return [line] if line is not None else []


def facts(transition: Transition) -> list[str]:
    """Lines of mrkdwn (escaped) with what is specific to this kind of transition."""
    details = transition.details
    kind = _kind(transition)
    lines = _workflow_lines(transition) + [escape(line) for line in _acted(transition)]
    checkpoint = _mapping(details.get("checkpoint"))
    if checkpoint:
        parts = [f"step *{number(checkpoint.get('step_number'))}*"]
        metrics = _mapping(checkpoint.get("metrics"))
        parts += [f"{safe(k, 32)} `{number(v)}`" for k, v in list(metrics.items())[:8]]
        lines.append("Checkpoint: " + " \u00b7 ".join(parts))
    ready = details.get("fine_tuned_model")
    if kind == "model_ready" and ready:
        lines.append(f"Model ready: {code(ready, 160)}")
    progress = _mapping(details.get("progress"))
    if progress:
        lines.append(
            f"Progress {number(progress.get('percent', progress.get('milestone')))}%: "
            f"{number(progress.get('processed'))} / {number(progress.get('total'))} requests"
        )
    if "failed_ratio" in details:
        ratio = finite(details.get("failed_ratio"))
        share = f"{ratio:.0%}" if ratio is not None else "?"
        lines.append(
            f"Errors rising: {share} of processed requests failed "
            f"({number(details.get('failed_requests'))} / "
            f"{number(details.get('processed_requests'))})"
        )
        errors = details.get("errors")
        for error in (errors if isinstance(errors, list) else [])[:3]:
            error = _mapping(error)
            if error.get("message"):
                lines.append(
                    f"> {safe(error.get('message'), 200)} (\u00d7{number(error.get('count'))})"
                )
    alert = _mapping(details.get("alert"))
    if alert:
        shown = [_fact(k, v) for k, v in list(alert.items())[:12] if k != "rule"]
        head = f"Rule *{safe(alert.get('rule'), 60)}*" if alert.get("rule") else "Alert"
        lines.append(head + ": " + " \u00b7 ".join(s for s in shown if s))
    event = _mapping(details.get("event"))
    if event.get("name"):
        lines.append(f"Event: {code(event.get('name'), 64)}")
    digest = _mapping(details.get("digest"))
    if digest:
        lines.append(f"Period: {safe(digest.get('from'), 30)} {ARROW} {safe(digest.get('to'), 30)}")
        for name, counts in list(_mapping(digest.get("sources")).items())[:40]:
            counts = _mapping(counts)
            cost = ", ".join(
                f"{number(total)} {safe(currency, 8)}"
                for currency, total in list(_mapping(counts.get("cost")).items())[:4]
            )
            lines.append(
                f"*{safe(name, 40)}*: {number(counts.get('created'))} created, "
                f"{number(counts.get('succeeded'))} succeeded, "
                f"{number(counts.get('failed'))} failed, "
                f"{number(counts.get('cancelled'))} cancelled, "
                f"{number(counts.get('running_now'))} running now"
                + (f"; cost {cost}" if cost else "")
            )
    if kind == "heartbeat":
        for name, health in list(_mapping(details.get("sources")).items())[:40]:
            health = _mapping(health)
            state = (
                "retired"
                if health.get("retired")
                else ("failing" if health.get("failing") else "ok")
            )
            last = safe(health.get("last_poll_ok"), 30)
            lines.append(f"*{safe(name, 40)}*: {state}, last good poll {last}")
    if details.get("reason"):
        lines.append(f"Reason: {safe(details.get('reason'), 500)}")
    if "down_seconds" in details:
        down = finite(details.get("down_seconds"))
        lines.append(f"Down for {duration(down) if down is not None else '?'}")
    return lines
