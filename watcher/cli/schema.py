"""JSON Schemas of the user's contract: the config file and the event payloads
(``watcher schema config|events``). Generated from pydantic models, versioned.

The events schema holds every family's payload; a ``workflow.*`` event (a Workflows
execution, or one of its activities) must also match ``$defs/WorkflowEvent``: its ``job`` is
the execution, and its facts (``failure``, ``attempt``, ``activity``, ``run_id``, …) have
their shapes."""

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
        description="fine_tuning.job.<status>, batch.job.<status>, "
        "workflow.execution.<status> (running, completed, failed, canceled, terminated, "
        "timed_out, …), workflow.execution.retrying|continued_as_new|retry_storm, "
        "workflow.activity.retrying|failed, *.checkpoint, *.model_ready, *.progress, "
        "*.errors_rising, *.stalled[.resolved], *.overrun[.resolved], watcher.source.*, "
        "watcher.digest, watcher.heartbeat, …",
    )
    timestamp: str = Field(pattern=DATE_TIME, description="when it happened (RFC 3339, UTC)")
    data: EventData


class Failure(BaseModel):
    """Why an attempt failed, as the execution's event stream said."""

    model_config = ConfigDict(extra="allow")

    message: str


class ExecutionMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    expected_duration_seconds: float | None = Field(
        None, description="the execution timeout configured for its workflow"
    )


class WorkflowExecutionView(BaseModel):
    """``data.job`` of a Workflows event: the execution as last seen (workflows reference
    §3), plus what only its event stream tells (``attempt``)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="the execution_id")
    status: str | None = Field(description="RUNNING, COMPLETED, FAILED, CANCELED, TERMINATED, …")
    run_id: str | None = Field(None, description="the current run (changes on continue-as-new)")
    workflow_name: str
    deployment_name: str | None = None
    start_time: str | None = Field(None, description="ISO 8601, as the API sends it")
    end_time: str | None = Field(None, description="ISO 8601; null while running")
    parent_execution_id: str | None = Field(None, description="set for a sub-workflow")
    root_execution_id: str | None = Field(None, description="equals id for a top-level run")
    attempt: int | None = Field(None, description="known only from the event stream")
    total_duration_ms: int | None = None
    user_id: str | None = None
    created_at: int = Field(description="Unix seconds")
    modified_at: int = Field(description="Unix seconds")
    metadata: ExecutionMetadata | None = None


class Activity(BaseModel):
    """The activity a ``workflow.activity.*`` or ``retry_storm`` event is about."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    attempt: int | None = Field(None, description="the failed attempt (1-indexed)")
    failure: Failure | None = None
    task_id: str | None = None
    retries: int | None = Field(None, description="retry_storm: retries counted")
    within_seconds: float | None = Field(None, description="retry_storm: within this window")


class WorkflowEventData(EventData):
    """``data`` of a Workflows event: ``job`` is the execution; the facts' own fields."""

    job: WorkflowExecutionView  # type: ignore[assignment]  # narrower than a job's
    failure: Failure | None = Field(None, description="why it failed, when the stream said")
    attempt: int | None = Field(None, description="the attempt this fact is about")
    run_id: str | None = Field(None, description="the run this fact happened in")
    new_run_id: str | None = Field(None, description="continued_as_new: the next run")
    activity: Activity | None = None
    rule: str | None = Field(None, description="retry_storm: the rule that fired")


class WorkflowEvent(BaseModel):
    """A ``workflow.*`` event: a Workflows execution (``workflow.execution.*``) or one of
    its activities (``workflow.activity.*``)."""

    type: str = Field(pattern=r"^workflow\.(execution|activity)\.[a-z0-9_]+(\.[a-z0-9_]+)*$")
    timestamp: str = Field(pattern=DATE_TIME)
    data: WorkflowEventData


WORKFLOW_TYPES = r"^workflow\."


def events_schema() -> dict[str, Any]:
    schema = Event.model_json_schema()
    workflow = WorkflowEvent.model_json_schema()
    defs = {**schema.pop("$defs", {}), **workflow.pop("$defs", {}), "WorkflowEvent": workflow}
    schema["$defs"] = defs
    schema["allOf"] = [
        {
            "if": {"properties": {"type": {"pattern": WORKFLOW_TYPES}}, "required": ["type"]},
            "then": {"$ref": "#/$defs/WorkflowEvent"},
        }
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:watcher:schema:events:v{SCHEMA_VERSION}",
        "version": SCHEMA_VERSION,
        **schema,
    }


# ``${VAR}`` in a value: the loader expands it before validating, so a string holding one
# stands for any value (a number, a boolean, a name).
VAR_STRING: dict[str, Any] = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*\}",
    "description": "${VAR}: expanded from the environment when the file is loaded",
}
_SCALARS = frozenset({"string", "number", "integer", "boolean"})
_KEEP = ("title", "description", "default", "examples")  # stay on the outside for editors
_NOT_EXPANDED = frozenset({"kind"})  # a discriminator: the loader needs it literal to choose


def config_schema() -> dict[str, Any]:
    """The config file as users write it: every secret key has its ``<key>_file``
    alternative (one of the two, never both), and a ``${VAR}`` string is accepted wherever a
    constrained value is (a number, a boolean, a pattern, a choice)."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    schema = _as_written(schema, None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:watcher:schema:config:v1",
        "description": "The watcher config file (YAML). Every secret may also be given as "
        "<key>_file (a path), and ${VAR} expands from the environment.",
        **schema,
    }


def _as_written(node: Any, key: str | None) -> Any:
    """``node`` (a JSON Schema) for the file before ``${VAR}`` and ``*_file`` are read."""
    if isinstance(node, list):
        return [_as_written(item, key) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for name, value in node.items():
        if name in ("properties", "$defs", "patternProperties"):
            out[name] = {k: _as_written(v, k if name == "properties" else None)
                         for k, v in value.items()}  # fmt: skip
        elif name in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[name] = _as_written(value, None if name != "anyOf" else key)
        else:
            out[name] = value
    if "properties" in out:
        _secret_files(out)
    if key in _NOT_EXPANDED or not _constrained_scalar(out):
        return out
    outer = {k: out.pop(k) for k in _KEEP if k in out}
    return {**outer, "anyOf": [out, VAR_STRING]}


def _constrained_scalar(node: dict[str, Any]) -> bool:
    """A value a ``${VAR}`` string would not match as it is (a plain string would)."""
    if "enum" in node or "const" in node:
        return True
    kind = node.get("type")
    if kind not in _SCALARS:
        return False
    return kind != "string" or any(k in node for k in ("pattern", "format", "minLength"))


def _secret_files(node: dict[str, Any]) -> None:
    """``<key>_file`` beside each secret ``<key>`` of an object: either one (a required
    secret needs one of them), never both."""
    from watcher.config import SECRET_FILE_KEYS

    properties: dict[str, Any] = node["properties"]
    required: list[str] = node.get("required", [])
    rules: list[dict[str, Any]] = []
    for secret in sorted(SECRET_FILE_KEYS & set(properties)):
        properties[f"{secret}_file"] = {
            "type": "string",
            "minLength": 1,
            "description": f"a file holding {secret} (relative to the config file's folder)",
        }
        rules.append({"not": {"required": [secret, f"{secret}_file"]}})
        if secret in required:
            required.remove(secret)
            rules.append({"anyOf": [{"required": [secret]}, {"required": [f"{secret}_file"]}]})
    if rules:
        node["allOf"] = [*node.get("allOf", []), *rules]
    if "required" in node and not required:
        del node["required"]
