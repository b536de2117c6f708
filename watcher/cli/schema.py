"""JSON Schemas of the user's contract: the config file and the event payloads
(``watcher schema config|events``). Generated from pydantic models, versioned."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watcher.config import Config
from watcher.model.transitions import SCHEMA_VERSION

DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


class JobView(BaseModel):
    """The job as last seen. Fine-tuning jobs add model, job_type, suffix,
    fine_tuned_model, metadata, loss_curve; batch jobs their counters, started_at,
    completed_at, errors, endpoint."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    created_at: int = Field(description="Unix seconds")
    modified_at: int = Field(description="Unix seconds")


class EventData(BaseModel):
    """``data``: always ``source`` and ``job`` (for job facts); a status change adds
    ``status``, ``previous_status`` and ``occurred_at``; each type adds its own fields
    (``checkpoint``, ``fine_tuned_model``, ``progress``, ``alert``, ``digest``, ``reason``…)."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="the source's name in the config ('watcher' for digests)")
    job: JobView | dict[str, Any] = Field(description="the job as last seen; {} for source facts")
    status: str | None = Field(None, description="the status this transition entered (raw)")
    previous_status: str | None = Field(None, description="null for a job's first status")
    occurred_at: str | None = Field(None, pattern=DATE_TIME, description="RFC 3339, UTC")


class Event(BaseModel):
    """A webhook body (Standard Webhooks): ``webhook-id`` is the transition id."""

    type: str = Field(
        pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$",
        description="fine_tuning.job.<status>, batch.job.<status>, *.checkpoint, "
        "*.model_ready, *.progress, *.errors_rising, *.stalled[.resolved], watcher.source.*, "
        "watcher.digest, watcher.heartbeat, …",
    )
    timestamp: str = Field(pattern=DATE_TIME, description="when it happened (RFC 3339, UTC)")
    data: EventData


def events_schema() -> dict[str, Any]:
    schema = Event.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:watcher:schema:events:v{SCHEMA_VERSION}",
        "version": SCHEMA_VERSION,
        **schema,
    }


def config_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:watcher:schema:config:v1",
        "description": "The watcher config file (YAML). Every secret may also be given as "
        "<key>_file (a path), and ${VAR} expands from the environment.",
        **schema,
    }
