"""Console sink: one human-readable line per transition, for terminals and journals.

Everything shown comes from a foreign API and is treated as hostile: control characters
(C0, C1, DEL), terminal escape sequences, line and paragraph separators and Unicode format
characters (bidi overrides, zero-width marks) are removed or replaced, and every field is
capped, so that a job suffix cannot recolour the terminal, fake a line or reorder the text.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import anyio
import anyio.to_thread

from watcher.exceptions import DeliveryError
from watcher.model import types
from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition, rfc3339
from watcher.render import text, workflows
from watcher.render.actions import action_line
from watcher.render.charts import valid_loss
from watcher.render.text import ELLIPSIS as _ELLIPSIS
from watcher.render.text import number

_ARROW = "\u2192"
_MAX_LINE = 400


def clean(value: object, limit: int = 64) -> str:
    """``value`` as one line of at most ``limit`` characters; a character that should not
    be there shows as ``?``."""
    return text.clean(value, limit, mark="?")


def _job_label(job: Mapping[str, Any]) -> str:
    model = job.get("model")
    suffix = job.get("suffix")
    label = clean(model, 64) if model else ""
    if suffix:
        label = f"{label} ({clean(suffix, 40)})".strip()
    return label


def _job_id(transition: Transition) -> str:
    job_id = transition.job_id or transition.job.get("id")
    if not job_id:
        return "-"
    text = clean(job_id, 64)
    return text if len(text) <= 9 else text[:8] + _ELLIPSIS


def _describe_workflow(view: workflows.WorkflowView) -> str:
    """``RUNNING → FAILED attempt 2 (child of p in root r): KeyError: 'customer'``."""
    if view.status_change:
        before = clean(view.previous_status, 40) if view.previous_status else "new"
        said = f"{before} {_ARROW} {clean(view.status, 40)}"
    else:
        said = workflows.what(view)
    if view.kind == workflows.CONTINUED_AS_NEW and view.new_run_id:
        said += f" run {clean(view.run_id, 40)} {_ARROW} {clean(view.new_run_id, 40)}"
    if view.attempt is not None and view.status_change:
        said += f" attempt {view.attempt}"
    if view.retries is not None:
        said += f" {view.retries} retries"
        if view.within_seconds is not None:
            said += f" within {text.duration(view.within_seconds)}"
    lineage = workflows.lineage(view)
    if lineage:
        said += f" ({clean(lineage, 200)})"
    if view.failure is not None:
        said += f": {clean(view.failure, 160)}"
    return said


def _describe(transition: Transition) -> str:
    view = workflows.read(transition)
    if view is not None and not workflows.is_time_alert(view):
        return _describe_workflow(view)
    details = transition.details
    kind = transition.type
    acted = action_line(transition)
    if acted is not None:
        return acted
    if transition.is_status_change:
        before = clean(transition.previous_status, 40) if transition.previous_status else "new"
        return f"{before} {_ARROW} {clean(transition.status, 40)}"
    if kind.endswith(".checkpoint"):
        checkpoint = details.get("checkpoint")
        checkpoint = checkpoint if isinstance(checkpoint, Mapping) else {}
        parts = [f"step {number(checkpoint.get('step_number'))}"]
        metrics = checkpoint.get("metrics")
        if isinstance(metrics, Mapping):
            # valid_loss 0.0 is the API's "no validation at this step": shown as "-".
            shown = [(k, valid_loss(v) if k == "valid_loss" else v) for k, v in metrics.items()]
            parts += [f"{clean(k, 32)}={number(v)}" for k, v in shown[:8]]
        return " ".join(parts)
    if kind.endswith(".model_ready"):
        model = details.get("fine_tuned_model") or transition.job.get("fine_tuned_model")
        return f"model ready: {clean(model, 120)}"
    if kind.endswith(".progress"):
        progress = details.get("progress")
        progress = progress if isinstance(progress, Mapping) else {}
        return (
            f"progress {number(progress.get('milestone'))}%: "
            f"{number(progress.get('processed'))}/{number(progress.get('total'))} requests"
        )
    if kind.endswith(".errors_rising"):
        errors = details.get("errors")
        first = errors[0] if isinstance(errors, list) and errors else {}
        message = first.get("message") if isinstance(first, Mapping) else None
        ratio = details.get("failed_ratio")
        share = f"{ratio:.0%}" if isinstance(ratio, float) else "?"
        return f"errors rising: {share} of requests failed" + (
            f" ({clean(message, 120)})" if message else ""
        )
    if kind == types.SOURCE_RETIRED:
        return f"source retired: {clean(details.get('reason', 'the API answers 410 Gone'), 200)}"
    if kind.endswith(".event"):
        event = details.get("event")
        name = event.get("name") if isinstance(event, Mapping) else None
        return f"event {clean(name, 64)}" if name else "event"
    alert = details.get("alert")
    if isinstance(alert, Mapping):
        facts = " ".join(
            f"{clean(k, 24)}={clean(v if isinstance(v, str) else number(v), 60)}"
            for k, v in list(alert.items())[:6]
            if v is not None and not isinstance(v, Mapping | list)
        )
        return f"{clean(kind, 80)}: {facts}"
    digest = details.get("digest")
    if isinstance(digest, Mapping) and isinstance(digest.get("sources"), Mapping):
        parts = []
        for name, counts in list(digest["sources"].items())[:5]:
            if isinstance(counts, Mapping):
                parts.append(
                    f"{clean(name, 40)}: {number(counts.get('succeeded'))} ok, "
                    f"{number(counts.get('failed'))} failed, "
                    f"{number(counts.get('running_now'))} running"
                )
        return "digest " + "; ".join(parts)
    reason = details.get("reason")
    return clean(kind, 80) + (f": {clean(reason, 200)}" if reason else "")


def format_line(envelope: Envelope) -> str:
    """``2026-11-27T03:04:05Z  ft  3b9c1e7a…  RUNNING → FAILED  open-mistral-7b (bot)``."""
    transition = envelope.transition
    moment = transition.occurred_at if transition.occurred_at is not None else envelope.detected_at
    try:
        when = rfc3339(moment)
    except (OverflowError, OSError, ValueError):
        when = "????-??-??T??:??:??Z"
    fields = [when, clean(transition.source, 40), _job_id(transition), _describe(transition)]
    label = _job_label(transition.job) if transition.job_id or transition.job else ""
    view = workflows.read(transition)
    if view is not None and view.workflow:
        label = clean(view.workflow, 64)
        if view.deployment:
            label += f" ({clean(view.deployment, 40)})"
    if label:
        fields.append(label)
    line = "  ".join(fields)
    if len(line) > _MAX_LINE:
        line = line[: _MAX_LINE - 1] + _ELLIPSIS
    return line


def _encodable(line: str, encoding: str | None) -> str:
    """``line`` as the stream can write it (an ASCII terminal gets ``->`` and ``...``)."""
    if not encoding:
        return line
    try:
        line.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        line = line.replace(_ARROW, "->").replace(_ELLIPSIS, "...")
        try:
            return line.encode(encoding, errors="replace").decode(encoding)
        except LookupError:
            return line.encode("ascii", errors="replace").decode("ascii")
    return line


class ConsoleSink:
    """Writes one line per transition to ``stream`` (``sys.stdout`` when not given)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream
        self._lock = anyio.Lock()

    def preview(self, batch: Sequence[Envelope]) -> str:
        """The lines :meth:`send` would write for ``batch`` (nothing is written)."""
        return "\n".join(format_line(envelope) for envelope in batch)

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Write and flush each line; a closed stream is final, other I/O errors retryable."""
        if not batch:
            return
        lines = [format_line(envelope) for envelope in batch]
        async with self._lock:
            # In a worker thread: a stalled terminal or pipe must not freeze the event loop.
            await anyio.to_thread.run_sync(self._write, lines)

    def _write(self, lines: Sequence[str]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            encoding = getattr(stream, "encoding", None)
            for line in lines:
                stream.write(_encodable(line, encoding) + "\n")
                stream.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: I/O on a closed file
            raise DeliveryError(
                f"console {self.name!r}: output closed ({type(exc).__name__})", retryable=False
            ) from None
        except OSError as exc:
            raise DeliveryError(
                f"console {self.name!r}: write failed ({type(exc).__name__})", retryable=True
            ) from None

    async def aclose(self) -> None:
        """Nothing to release: the stream belongs to the caller."""
