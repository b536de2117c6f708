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
DETECTED_AT = 1751013605.0  # when the samples were seen

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


# A run's training curve as the diff derives it from checkpoints: [step, train, valid];
# 0.0 for valid_loss is the API's "no validation at this step".
_CURVE = [
    [10, 2.412, 0.0], [20, 1.983, 2.051], [30, 1.611, 1.702], [40, 1.284, 1.397],
    [50, 1.102, 1.233], [60, 0.981, 1.158], [70, 0.903, 1.121], [80, 0.861, 1.104],
]  # fmt: skip
_MODEL = "ft:open-mistral-7b:abc:20250627:3b9c1e7a"


def _sample(
    type_: str, previous: str | None, status: str | None, job: dict[str, Any] | None = None,
    **details: Any,
) -> Transition:  # fmt: skip
    return Transition(
        id=f"wt_sample_{type_.rsplit('.', 1)[-1]}",
        type=type_,
        source="ft",
        job_id=_JOB_ID,
        status=status,
        previous_status=previous,
        occurred_at=1751013600,
        job={**_JOB, "status": status or "RUNNING", **(job or {})},
        details=details,
    )


_BATCH_ID = "b7e2d9c4-1f3a-4c5e-8d6b-0a9f8e7d6c5b"
# A batch job as the batch source sees it: 168 h is the API's longest timeout.
_BATCH_JOB: dict[str, Any] = {
    "id": _BATCH_ID,
    "status": "TIMEOUT_EXCEEDED",
    "model": "mistral-small-latest",
    "endpoint": "/v1/chat/completions",
    "agent_id": None,
    "input_files": ["5c1e0d2a-7b3f-4e9a-a1c2-3d4e5f6a7b8c"],
    "metadata": {"team": "support", "job_type": "nightly-eval"},
    "created_at": 1750408800,
    "started_at": 1750409100,
    "completed_at": 1751013600,
    "modified_at": 1751013600,
    "total_requests": 12000,
    "completed_requests": 9874,
    "succeeded_requests": 9810,
    "failed_requests": 64,
    "errors": [{"message": "Rate limit exceeded for model mistral-small-latest", "count": 64}],
    "output_file": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    "error_file": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
}

SAMPLES: dict[str, Transition] = {
    "failed": _sample("fine_tuning.job.failed", "RUNNING", "FAILED", {"loss_curve": _CURVE[:5]}),
    "running": _sample(
        "fine_tuning.job.running", "QUEUED", "RUNNING", {"loss_curve": _CURVE[:6]}
    ),
    "success": _sample(
        "fine_tuning.job.success", "RUNNING", "SUCCESS",
        {"fine_tuned_model": _MODEL, "loss_curve": _CURVE},
    ),
    "queued": _sample("fine_tuning.job.queued", None, "QUEUED"),
    "cancelled": _sample("fine_tuning.job.cancelled", "CANCELLATION_REQUESTED", "CANCELLED"),
    "checkpoint": _sample(
        "fine_tuning.job.checkpoint",
        None,
        None,
        {"loss_curve": _CURVE[:4]},
        checkpoint={"step_number": 40, "created_at": 1751013000,
                    "metrics": {"train_loss": 1.284, "valid_loss": 1.397}},
    ),
    "model_ready": _sample(
        "fine_tuning.job.model_ready", None, None,
        {"status": "SUCCESS", "fine_tuned_model": _MODEL, "loss_curve": _CURVE},
        fine_tuned_model=_MODEL,
    ),
    # Stuck in QUEUED for 2 h 10 min: the job, the alert and the limit say the same.
    "stalled": _sample(
        "fine_tuning.job.stalled", None, None,
        {"status": "QUEUED", "created_at": 1751005800, "modified_at": 1751005800},
        alert={"rule": "stalled", "status": "QUEUED", "since": "2025-06-27T06:30:00Z",
               "limit_seconds": 7200},
    ),
    "timeout": Transition(
        id="wt_sample_timeout_exceeded", type="batch.job.timeout_exceeded", source="batch",
        job_id=_BATCH_ID, status="TIMEOUT_EXCEEDED", previous_status="RUNNING",
        occurred_at=1751013600, job=_BATCH_JOB,
    ),
    "retired": Transition(
        id="wt_sample_retired", type="watcher.source.retired", source="ft",
        details={"reason": "list answers 410 Gone: the API was retired"},
    ),
}  # fmt: skip
# The samples a config's templates were checked against before Workflows: templates are
# still checked against these when a config loads, so that a template written for
# fine-tuning jobs (``{{ t.job.model }}`` behind ``{% if t.job %}``) keeps its config valid.
# The batch timeout is checked in the shape it had then (a batch job has no ``suffix``).
CLASSIC = tuple(SAMPLES)
_CHECKED_AS = {"timeout": _sample("batch.job.timeout_exceeded", "RUNNING", "TIMEOUT_EXCEEDED")}
SAMPLES.update(workflow_samples.SAMPLES)


def sample_envelopes(name: str) -> list[Envelope]:
    """The named sample as a batch of one (``KeyError`` for an unknown name)."""
    return [Envelope(transition=SAMPLES[name], detected_at=DETECTED_AT)]


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
                sample = _CHECKED_AS.get(name, SAMPLES[name])
                try:
                    self.render(part, [Envelope(transition=sample, detected_at=DETECTED_AT)])
                except ValueError as exc:
                    raise ValueError(f"{exc} (with the {name!r} sample)") from None
