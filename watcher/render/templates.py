"""User templates for messages (Jinja2, sandboxed) and the sample transitions they are
checked against.

A sink renders its own built-in message; a user may override its ``subject``, ``text`` or
``html`` with a template in the config. Templates are compiled and rendered against every
sample when the config is loaded, so that a mistake is a config error (exit 2, the sink and
line named), never a crash at 3 a.m. ``html`` templates autoescape; ``subject`` and ``text``
do not (the sink escapes for its own medium).

Context of every template: ``transitions`` (a list of payload ``data`` dicts, each with
``type``, ``id`` and ``timestamp`` added, and ``status``/``previous_status`` present, ``None``
when the fact is not a status change), ``t`` (the first of them), ``count``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition
from watcher.render import workflow_samples

MAX_RENDERED = 100_000  # characters; a template is not a way to build megabytes

_JOB_ID = "3b9c1e7a-5d42-4f0e-9a61-2c8d7e4f1a90"
_JOB: dict[str, Any] = {
    "id": _JOB_ID,
    "model": "open-mistral-7b",
    "job_type": "completion",
    "suffix": "support-bot",
    "fine_tuned_model": None,
    "created_at": 1751010000,
    "modified_at": 1751013600,
    "metadata": {"cost": 4.1, "cost_currency": "EUR", "expected_duration_seconds": 900},
}


def _sample(type_: str, previous: str | None, status: str | None, **details: Any) -> Transition:
    job = {**_JOB, "status": status or "RUNNING"}
    return Transition(
        id=f"wt_sample_{type_.rsplit('.', 1)[-1]}",
        type=type_,
        source="ft",
        job_id=_JOB_ID,
        status=status,
        previous_status=previous,
        occurred_at=1751013600,
        job=job,
        details=details,
    )


SAMPLES: dict[str, Transition] = {
    "failed": _sample("fine_tuning.job.failed", "RUNNING", "FAILED"),
    "success": _sample(
        "fine_tuning.job.success", "RUNNING", "SUCCESS"
    ),
    "queued": _sample("fine_tuning.job.queued", None, "QUEUED"),
    "cancelled": _sample("fine_tuning.job.cancelled", "CANCELLATION_REQUESTED", "CANCELLED"),
    "checkpoint": _sample(
        "fine_tuning.job.checkpoint",
        None,
        None,
        checkpoint={"step_number": 40, "created_at": 1751013000,
                    "metrics": {"train_loss": 1.284, "valid_loss": 1.397}},
    ),
    "model_ready": _sample(
        "fine_tuning.job.model_ready", None, None,
        fine_tuned_model="ft:open-mistral-7b:abc:20250627:3b9c1e7a",
    ),
    "stalled": _sample(
        "fine_tuning.job.stalled", None, None,
        alert={"rule": "stalled", "status": "QUEUED", "since": "2025-06-27T07:40:00Z",
               "limit_seconds": 7200},
    ),
    "timeout": _sample("batch.job.timeout_exceeded", "RUNNING", "TIMEOUT_EXCEEDED"),
    "retired": Transition(
        id="wt_sample_retired", type="watcher.source.retired", source="ft",
        details={"reason": "list answers 410 Gone: the API was retired"},
    ),
}  # fmt: skip
# The samples a config's templates were checked against before Workflows: templates are
# still checked against these when a config loads, so that a template written for
# fine-tuning jobs (``{{ t.job.model }}`` behind ``{% if t.job %}``) keeps its config valid.
CLASSIC = tuple(SAMPLES)
SAMPLES.update(workflow_samples.SAMPLES)


def sample_envelopes(name: str) -> list[Envelope]:
    """The named sample as a batch of one (``KeyError`` for an unknown name)."""
    return [Envelope(transition=SAMPLES[name], detected_at=1751013605.0)]


def context(batch: Sequence[Envelope]) -> dict[str, Any]:
    items = []
    for envelope in batch:
        payload = envelope.transition.payload(envelope.detected_at)
        # status and previous_status exist (None) on every item, so that one template
        # serves status changes and other facts alike; a typo still fails (StrictUndefined).
        items.append(
            {
                "status": None,
                "previous_status": None,
                **payload["data"],
                "type": payload["type"],
                "id": envelope.transition.id,
                "timestamp": payload["timestamp"],
            }
        )
    return {"transitions": items, "t": items[0] if items else {}, "count": len(items)}


class MessageTemplates:
    """The user's templates of one sink; each part is ``None`` when not overridden."""

    PARTS = ("subject", "text", "html")

    def __init__(self, sink: str, sources: Mapping[str, str | None]) -> None:
        self.sink = sink
        plain = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
        html = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        self._templates = {}
        for part, source in sources.items():
            if source is None:
                continue
            env = html if part == "html" else plain
            try:
                self._templates[part] = env.from_string(source)
            except TemplateSyntaxError as exc:
                raise ValueError(f"{part} template, line {exc.lineno}: {exc.message}") from None

    def __bool__(self) -> bool:
        return bool(self._templates)

    def render(self, part: str, batch: Sequence[Envelope]) -> str | None:
        """The rendered part, or ``None`` when the user did not override it.

        Raises ``ValueError`` naming the part when rendering fails (a delivery error for
        the dispatcher: final, with the reason)."""
        template = self._templates.get(part)
        if template is None:
            return None
        try:
            text = template.render(context(batch))
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f", line {line}" if line else ""
            raise ValueError(f"{part} template{where}: {exc}") from None
        if part == "subject":
            text = " ".join(text.split())  # a header: one line
        return text[:MAX_RENDERED]

    def check(self, samples: Iterable[str] | None = None) -> None:
        """Render every part against every sample (or those named); ``ValueError`` names the
        first failure."""
        for name in SAMPLES if samples is None else samples:
            for part in self._templates:
                try:
                    self.render(part, sample_envelopes(name))
                except ValueError as exc:
                    raise ValueError(f"{exc} (with the {name!r} sample)") from None
