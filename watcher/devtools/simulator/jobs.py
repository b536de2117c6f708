"""Simulated fine-tuning jobs: what to create (:class:`JobSpec`), their state (:class:`SimJob`)
and the JSON shapes the real API sends for them (reference §4, §6, §7, §8).

The JSON follows the OpenAPI schema closely enough for the official SDK 1.x to parse every
standard job. Suffixes, models and job types are kept as given, hostile or not.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from watcher.model.statuses import FINE_TUNING_STATUSES, FINE_TUNING_TERMINAL

# The simulator speaks for the API: its statuses and its terminal set (without watcher's
# own DELETED, a word the API never sends).
STATUSES = FINE_TUNING_STATUSES
TERMINAL = FINE_TUNING_TERMINAL

EventsOrder = Literal["oldest_first", "newest_first"]
EVENTS_ORDERS: tuple[EventsOrder, ...] = ("oldest_first", "newest_first")

DEFAULT_MODELS = {"classifier": "ministral-3b-latest"}
DEFAULT_MODEL = "open-mistral-7b"

# Training steps between two scripted checkpoints.
STEPS_PER_CHECKPOINT = 10

_BEFORE_RUNNING = ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")
# The statuses a job has passed through when it is first seen in a given status.
_HISTORY: dict[str, tuple[str, ...]] = {
    "QUEUED": ("QUEUED",),
    "STARTED": ("QUEUED", "STARTED"),
    "VALIDATING": ("QUEUED", "VALIDATING"),
    "VALIDATED": ("QUEUED", "VALIDATING", "VALIDATED"),
    "FAILED_VALIDATION": ("QUEUED", "VALIDATING", "FAILED_VALIDATION"),
    "RUNNING": _BEFORE_RUNNING,
    "SUCCESS": (*_BEFORE_RUNNING, "SUCCESS"),
    "FAILED": (*_BEFORE_RUNNING, "FAILED"),
    "CANCELLATION_REQUESTED": (*_BEFORE_RUNNING, "CANCELLATION_REQUESTED"),
    "CANCELLED": (*_BEFORE_RUNNING, "CANCELLATION_REQUESTED", "CANCELLED"),
}
# Entering one of these fills the job metadata (it is null until validation completes).
_VALIDATED_OR_LATER = frozenset({"VALIDATED", "RUNNING", "SUCCESS"})


def history_path(status: str) -> tuple[str, ...]:
    """The statuses a job created directly in ``status`` has gone through, oldest first."""
    return _HISTORY.get(status, ("QUEUED", status))


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What to create: one job and its script.

    ``steps`` are ``(status, seconds after creation)`` pairs, non-decreasing in time;
    ``checkpoints`` are spread over the RUNNING phase. ``status`` is the status the job is
    created in; statuses before it form its event history. ``create_after`` only matters for
    scheduled (scenario) jobs. All delays are divided by the simulator's speed.
    """

    name: str | None = None
    job_type: str = "completion"
    model: str | None = None
    suffix: str | None = None
    status: str = "QUEUED"
    create_after: float = 0.0
    steps: tuple[tuple[str, float], ...] = ()
    checkpoints: int = 0
    auto_start: bool = True
    events_order: EventsOrder = "oldest_first"
    frozen: bool = False
    created_by_me: bool = True
    wandb_project: str | None = None
    wandb_name: str | None = None
    repository: str | None = None  # "owner/name" of a GitHub repository (completion jobs)


@dataclass(eq=False, kw_only=True)
class SimJob:
    """The state of one simulated job; rendered to API JSON by :meth:`summary`/:meth:`detailed`."""

    id: str
    name: str | None
    job_type: str
    model: str
    suffix: str | None
    auto_start: bool
    events_order: EventsOrder
    frozen: bool
    created_by_me: bool
    planned_checkpoints: int
    created_at: int
    modified_at: int
    status: str = ""
    training_files: list[str] = field(default_factory=list)
    validation_files: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    fine_tuned_model: str | None = None
    integrations: list[dict[str, Any]] = field(default_factory=list)
    repositories: list[dict[str, Any]] = field(default_factory=list)
    trained_tokens: int | None = None
    metadata: dict[str, Any] | None = None
    cost: float = 0.0
    events: list[tuple[int, str]] = field(default_factory=list)  # (created_at, status)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    generation: int = 0  # bumped when the script is replaced; stale scheduled steps are dropped

    @property
    def is_classifier(self) -> bool:
        return self.job_type == "classifier"

    def apply_status(self, status: str, at: int) -> str | None:
        """Enter ``status`` at ``at`` (Unix seconds); returns the previous status or None."""
        previous = self.status or None
        self.status = status
        self.modified_at = at
        self.events.append((at, status))
        if status in _VALIDATED_OR_LATER and self.metadata is None:
            self.metadata = self._metadata()
        if status == "RUNNING":
            for integration in self.integrations:
                integration["url"] = (
                    f"https://wandb.ai/sim/{integration['project']}/runs/{self.id[:8]}"
                )
        if status == "SUCCESS":
            if self.fine_tuned_model is None:
                self.fine_tuned_model = self._fine_tuned_model(at)
            self.trained_tokens = self._train_tokens()
        elif status in TERMINAL and self.checkpoints and self.trained_tokens is None:
            self.trained_tokens = self.checkpoints[-1]["step_number"] * _TOKENS_PER_STEP
        return previous

    def add_checkpoint(self, at: int) -> dict[str, Any]:
        """Append the next checkpoint; ``modified_at`` stays as it is, like the real API's."""
        index = len(self.checkpoints) + 1
        step = (self.checkpoints[-1]["step_number"] if self.checkpoints else 0) + (
            STEPS_PER_CHECKPOINT
        )
        train_loss = round(2.0 / (1 + 0.3 * index) + 0.05, 6)
        validated = index % 2 == 0
        checkpoint = {
            "metrics": {
                "train_loss": train_loss,
                # Steps without validation report 0.0, not null (reference §6).
                "valid_loss": round(train_loss * 1.08, 6) if validated else 0.0,
                "valid_mean_token_accuracy": round(1.2 + 0.05 * index, 6) if validated else 0.0,
            },
            "step_number": step,
            "created_at": at,
        }
        self.checkpoints.append(checkpoint)
        return checkpoint

    def summary(self) -> dict[str, Any]:
        """The job as a list item: no events, no checkpoints."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "job",
            "job_type": self.job_type,
            "auto_start": self.auto_start,
            "model": self.model,
            "status": self.status,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
            "training_files": list(self.training_files),
            "validation_files": list(self.validation_files),
            "hyperparameters": dict(self.hyperparameters),
            "fine_tuned_model": self.fine_tuned_model,
            "suffix": self.suffix,
            "integrations": [dict(i) for i in self.integrations],
            "trained_tokens": self.trained_tokens,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
        }
        if not self.is_classifier:
            body["repositories"] = [dict(r) for r in self.repositories]
        return body

    def detailed(self) -> dict[str, Any]:
        """The job as the single-job GET returns it, with events and checkpoints."""
        body = self.summary()
        events = [
            {"name": "status-updated", "created_at": at, "data": {"status": status}}
            for at, status in self.events
        ]
        if self.events_order == "newest_first":
            events.reverse()
        body["events"] = events
        body["checkpoints"] = [
            {**c, "metrics": dict(c["metrics"])}
            for c in sorted(self.checkpoints, key=lambda c: c["step_number"], reverse=True)
        ]
        if self.is_classifier:
            body["classifier_targets"] = [
                {
                    "name": "intent",
                    "labels": ["billing", "technical", "other"],
                    "weight": 1.0,
                    "loss_function": "single_class",
                }
            ]
        return body

    def _train_tokens(self) -> int:
        return int(self.hyperparameters.get("training_steps") or 0) * _TOKENS_PER_STEP

    def _metadata(self) -> dict[str, Any]:
        train_tokens = self._train_tokens()
        return {
            "expected_duration_seconds": 60 * max(1, self.planned_checkpoints) + 240,
            "cost": self.cost,
            "cost_currency": "EUR",
            "train_tokens_per_step": _TOKENS_PER_STEP,
            "train_tokens": train_tokens,
            "data_tokens": train_tokens // 2,
            "estimated_start_time": None,
        }

    def _fine_tuned_model(self, at: int) -> str:
        day = datetime.fromtimestamp(at, UTC).strftime("%Y%m%d")
        prefix = "ft:classifier" if self.is_classifier else "ft"
        return f"{prefix}:{self.model}:sim:{day}:{self.id[:8]}"


_TOKENS_PER_STEP = 131_072


def new_job(spec: JobSpec, rng: random.Random, *, created_at: int) -> SimJob:
    """A job in no status yet, with the fields the real API fills at creation."""
    job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    classifier = spec.job_type == "classifier"
    steps = STEPS_PER_CHECKPOINT * max(spec.checkpoints, 10)
    hyperparameters: dict[str, Any] = {
        "training_steps": steps,
        "learning_rate": 0.0001,
        "weight_decay": 0.1,
        "warmup_fraction": 0.05,
        "epochs": None,
        "seq_len": 32768,
    }
    if not classifier:
        hyperparameters["fim_ratio"] = 0.9
    job = SimJob(
        id=job_id,
        name=spec.name,
        job_type=spec.job_type,
        model=spec.model
        if spec.model is not None
        else DEFAULT_MODELS.get(spec.job_type, DEFAULT_MODEL),
        suffix=spec.suffix,
        auto_start=spec.auto_start,
        events_order=spec.events_order,
        frozen=spec.frozen,
        created_by_me=spec.created_by_me,
        planned_checkpoints=spec.checkpoints,
        created_at=created_at,
        modified_at=created_at,
        training_files=[str(uuid.UUID(int=rng.getrandbits(128), version=4))],
        hyperparameters=hyperparameters,
        cost=round(rng.uniform(0.5, 20.0), 2),
    )
    if spec.wandb_project is not None:
        job.integrations.append(
            {
                "type": "wandb",
                "project": spec.wandb_project,
                "name": spec.wandb_name,
                "run_name": None,
                "url": None,
            }
        )
    if spec.repository is not None and not classifier:
        owner, _, name = spec.repository.partition("/")
        job.repositories.append(
            {
                "type": "github",
                "name": name or owner,
                "owner": owner if name else "sim",
                "ref": "main",
                "weight": 1.0,
                "commit_id": hashlib.sha1(
                    spec.repository.encode(), usedforsecurity=False
                ).hexdigest(),
            }
        )
    return job
