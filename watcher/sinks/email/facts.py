"""What one transition says in an email: its tag, label and (label, value) fact rows, and
the loss chart of its job (text sparklines, inline SVG), every value one clean line."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition, rfc3339
from watcher.render import charts, text, workflows
from watcher.render.actions import action_line
from watcher.render.links import JobLinks
from watcher.render.text import duration, finite, number

log = structlog.get_logger(__name__)

MAX_ROWS = 60  # facts per transition
ARROW = "\u2192"
_TYPE_PREFIXES = ("fine_tuning.job.", "batch.job.", "workflow.execution.", "workflow.", "watcher.")
_COUNTERS = ("total_requests", "completed_requests", "succeeded_requests", "failed_requests")


def clean(value: object, limit: int = 120) -> str:
    """``value`` as one line of at most ``limit`` characters; invisible characters become
    word breaks (a header must never gain a line)."""
    return text.clean(value, limit, mark=" ")


def _first_finite(*values: Any) -> float | None:
    return next((n for n in map(finite, values) if n is not None), None)


def _time(value: Any) -> str | None:
    moment = finite(value)
    if moment is None:
        return None
    try:
        return rfc3339(moment)
    except (OverflowError, OSError, ValueError):
        return None


def tag(transition: Transition) -> str:
    """``FAILED`` for a status change, else the type's own words: ``STALLED``,
    ``CHECKPOINT``, ``MODEL READY``, ``SOURCE RETIRED``."""
    if transition.status is not None:
        return clean(transition.status, 40).upper() or "UNKNOWN"
    kind = transition.type
    for prefix in _TYPE_PREFIXES:
        if kind.startswith(prefix):
            kind = kind[len(prefix) :]
            break
    return clean(re.sub(r"[._]+", " ", kind), 40).upper() or "EVENT"


def label(transition: Transition) -> str:
    """The fine-tuned model, else the model, else the job id; then the suffix in brackets.
    A Workflows execution: its workflow (deployment), and the activity a fact is about."""
    view = workflows.read(transition)
    if view is not None:
        return _workflow_label(transition, view)
    job = transition.job
    name = job.get("fine_tuned_model") or job.get("model") or transition.job_id
    text = clean(name, 80) if name else ""
    suffix = job.get("suffix")
    if suffix:
        text = f"{text} ({clean(suffix, 40)})".strip()
    if not text:
        text = clean(transition.source, 40)
    return text


def _workflow_label(transition: Transition, view: workflows.WorkflowView) -> str:
    name = clean(view.workflow, 80) if view.workflow else clean(transition.job_id, 80)
    if view.deployment:
        name = f"{name} ({clean(view.deployment, 40)})".strip()
    if view.activity:
        name = f"{name}: {clean(view.activity, 60)}".strip()
    return name or clean(transition.source, 40)


class _Rows(list[tuple[str, str]]):
    """Fact rows: empty values skipped, at most ``MAX_ROWS``, each value one clean line."""

    def add(self, name: str, value: Any, limit: int = 160) -> None:
        if value is None or value == "" or len(self) >= MAX_ROWS:
            return
        shown = value if isinstance(value, str) else number(value, 40)
        self.append((name, clean(shown, limit)))


def _job_rows(rows: _Rows, envelope: Envelope) -> None:
    """Who the job is, where its status went, when, and how long it took."""
    transition = envelope.transition
    job = transition.job
    rows.add("Source", transition.source, 80)
    rows.add("Job", transition.job_id or job.get("id"), 120)
    rows.add("Model", job.get("model"))
    rows.add("Suffix", job.get("suffix"), 80)
    rows.add("Job type", job.get("job_type"), 60)
    rows.add("Endpoint", job.get("endpoint"), 80)
    if transition.status is not None:
        before = clean(transition.previous_status, 40) if transition.previous_status else "new"
        rows.add("Status", f"{before} {ARROW} {clean(transition.status, 40)}")
    elif job.get("status"):
        rows.add("Job status", job.get("status"), 40)
    if transition.occurred_at is not None:
        rows.add("Occurred", _time(transition.occurred_at))
    else:
        rows.add("Detected", _time(envelope.detected_at))
    if transition.status is not None:
        start = _first_finite(job.get("started_at"), job.get("created_at"))
        end = _first_finite(job.get("completed_at"), transition.occurred_at)
        if start is not None and end is not None and end >= start:
            rows.add("Duration", duration(end - start))


def _outcome_rows(rows: _Rows, transition: Transition) -> None:
    """What the job produced and cost: model, tokens, cost, requests, its first errors."""
    job = transition.job
    details = transition.details
    ready = details.get("fine_tuned_model") or job.get("fine_tuned_model")
    rows.add("Fine-tuned model", ready, 200)
    rows.add("Trained tokens", job.get("trained_tokens"))
    metadata = job.get("metadata")
    if isinstance(metadata, Mapping):
        cost = metadata.get("cost")
        if cost is not None:
            currency = metadata.get("cost_currency")
            rows.add("Cost", f"{number(cost, 40)} {clean(currency, 8)}" if currency else cost)
        expected = finite(metadata.get("expected_duration_seconds"))
        if expected is not None and expected >= 0:
            rows.add("Expected duration", duration(expected))
    if any(name in job for name in _COUNTERS):
        counted = [
            f"{name.removesuffix('_requests')} {number(job.get(name), 40)}"
            for name in _COUNTERS
            if job.get(name) is not None
        ]
        rows.add("Requests", ", ".join(counted))
    errors = job.get("errors")
    for item in errors[:3] if isinstance(errors, list) else []:
        if isinstance(item, Mapping) and item.get("message"):
            count = item.get("count")
            suffix = f" (\u00d7{number(count, 40)})" if count not in (None, 1) else ""
            rows.add("Error", f"{clean(item['message'], 200)}{suffix}", 220)


def _detail_rows(rows: _Rows, details: Mapping[str, Any]) -> None:
    """What is specific to the kind of transition: checkpoint, progress, alert, event."""
    checkpoint = details.get("checkpoint")
    if isinstance(checkpoint, Mapping):
        rows.add("Checkpoint step", checkpoint.get("step_number"))
        metrics = checkpoint.get("metrics")
        if isinstance(metrics, Mapping):
            for key, value in list(metrics.items())[:10]:
                rows.add(clean(key, 40), "-" if value is None else value)
    progress = details.get("progress")
    if isinstance(progress, Mapping):
        rows.add(
            "Progress",
            f"{number(progress.get('percent'), 40)}% ({number(progress.get('processed'), 40)}/"
            f"{number(progress.get('total'), 40)} requests)",
        )
    ratio = finite(details.get("failed_ratio"))
    if ratio is not None:
        rows.add("Failed share", f"{ratio:.1%}")
    alert = details.get("alert")
    if isinstance(alert, Mapping):
        for key, value in list(alert.items())[:10]:
            if value is not None and not isinstance(value, Mapping | list):
                rows.add(f"Alert {clean(key, 40)}", value)
    event = details.get("event")
    if isinstance(event, Mapping) and event.get("name"):
        rows.add("Event", event.get("name"), 80)
    rows.add("Reason", details.get("reason"), 300)
    rows.add("Since", details.get("since"), 40)


def _workflow_rows(rows: _Rows, envelope: Envelope, view: workflows.WorkflowView) -> None:
    """A Workflows execution: the workflow, the run, the attempt, the failure, the tree."""
    transition = envelope.transition
    rows.add("Source", transition.source, 80)
    for row in workflows.rows(view):
        rows.add(row.name, row.value, workflows.MAX_FAILURE + 20)
    if transition.occurred_at is not None:
        rows.add("Occurred", _time(transition.occurred_at))
    else:
        rows.add("Detected", _time(envelope.detected_at))


def facts(envelope: Envelope, links: JobLinks | None = None) -> list[tuple[str, str]]:
    """The (label, value) rows that describe one transition, each value one clean line."""
    transition = envelope.transition
    rows = _Rows()
    view = workflows.read(transition, envelope.detected_at)
    if view is not None:
        _workflow_rows(rows, envelope, view)
    else:
        _job_rows(rows, envelope)
    _outcome_rows(rows, transition)
    rows.add("Action", action_line(transition), 400)  # who did what (watcher.action.*)
    _detail_rows(rows, transition.details)
    url = links.url(transition) if links is not None and transition.job_id else None
    if url is not None:
        rows.add("Link", url, 2000)
    rows.add("Transition", transition.id, 80)
    return list(rows)


def loss_series(job: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """``{"train_loss": [(step, loss), …], "valid_loss": …}`` from the view's ``loss_curve``
    as :func:`watcher.render.charts.loss_series` reads it (malformed points and the API's
    ``0.0`` "no validation" placeholders skipped), non-finite values left out too (the chart
    cannot place them); empty series dropped."""
    curve = job.get("loss_curve")
    if not isinstance(curve, list):
        return {}
    series = {
        name: [(step, value) for step, value in points if finite(value) is not None]
        for name, points in charts.loss_series(curve).items()
    }
    return {name: points for name, points in series.items() if points}


def _chart_function(name: str) -> Callable[..., Any] | None:
    """``watcher.render.charts.<name>`` when that module is there (charts are optional)."""
    try:
        module = importlib.import_module("watcher.render.charts")
    except ImportError:
        return None
    function = getattr(module, name, None)
    return function if callable(function) else None


def svg_for(job: Mapping[str, Any]) -> str | None:
    """An inline ``<svg>`` loss chart, or ``None`` (no curve, no chart module, or it failed:
    a chart is never a reason not to send the alert)."""
    series = loss_series(job)
    draw = _chart_function("svg_chart")
    if not series or draw is None:
        return None
    try:
        svg = draw(series)
    except Exception:  # a chart bug must not block the alert
        log.warning("email_chart_failed", exc_info=True)
        return None
    if not isinstance(svg, str):
        return None
    stripped = svg.strip()
    lowered = stripped.lower()
    if not lowered.startswith("<svg") or not lowered.endswith("</svg>") or "<script" in lowered:
        return None
    return stripped


def sparklines(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``("Train loss", "█▆▄▃▂ 2.31 → 1.28")`` rows for the text part (when available)."""
    series = loss_series(job)
    spark = _chart_function("sparkline")
    if not series or spark is None:
        return []
    rows = []
    for name, points in series.items():
        values = [value for _, value in points]
        try:
            line = spark(values)
        except Exception:  # a chart bug must not block the alert
            log.warning("email_chart_failed", exc_info=True)
            return []
        if not isinstance(line, str):
            return []
        title = name.replace("_", " ").capitalize()
        trend = f"{number(values[0], 40)} {ARROW} {number(values[-1], 40)}"
        rows.append((title, f"{clean(line, 200)} {trend}"))
    return rows
