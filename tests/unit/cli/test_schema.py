"""``watcher schema``: the JSON Schemas describe what watcher really sends and reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests import REPO
from tests.factories import T0, history, job
from watcher.cli.schema import config_schema, events_schema
from watcher.detect.diff import diff
from watcher.render.templates import SAMPLES
from watcher.sources.fine_tuning import KIND


@pytest.mark.parametrize("name", list(SAMPLES))
def test_samples_match_the_events_schema(name: str) -> None:
    """Every sample payload validates against the events schema."""
    payload = SAMPLES[name].payload(detected_at=T0)
    jsonschema.validate(payload, events_schema())


def test_real_diff_payloads_match() -> None:
    """Payloads of a job's real transitions (statuses, checkpoints, model) validate."""
    current = job(
        status="SUCCESS",
        events=history("QUEUED", "RUNNING", "SUCCESS"),
        checkpoints=[(1, T0 + 1, {"train_loss": "NaN", "valid_loss": 0.0})],
        fine_tuned_model="ft:x",
        modified_at=T0 + 20,
    )
    _, out = diff(None, current, source="ft", kind=KIND)
    assert 5 == len(out)
    for transition in out:
        jsonschema.validate(transition.payload(T0), events_schema())


def test_a_wrong_payload_does_not_match() -> None:
    """The schema is not a formality: a bad type or timestamp fails it."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"type": "Failed!", "timestamp": "yesterday", "data": {}}, events_schema()
        )


def test_config_schema_accepts_the_example_and_refuses_typos(tmp_path: Path) -> None:
    """The example config, as loaded, validates; a misspelt key does not."""
    from watcher.config import load_config

    env = {
        "MISTRAL_API_KEY": "k",
        "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "STATE_DIR": str(tmp_path),
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/x",
        "PAGERDUTY_ROUTING_KEY": "R0123456789",
    }
    (tmp_path / "smtp_password").write_text("pw")
    config = load_config(REPO / "config" / "watcher.example.yaml", env=env)
    loaded = json.loads(config.model_dump_json(by_alias=True, exclude_none=True))
    jsonschema.validate(loaded, config_schema())
    loaded["sources"][0]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(loaded, config_schema())


def test_schema_command_prints_json() -> None:
    """``watcher schema events`` prints the versioned schema."""
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "schema", "events"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout)["$id"].startswith("urn:watcher:schema:events:v")


WORKFLOW_SAMPLES = [name for name in SAMPLES if SAMPLES[name].type.startswith("workflow.")]


def test_every_workflow_kind_has_a_sample() -> None:
    """Executions' statuses and facts, activities' facts: each has a sample to render."""
    kinds = {SAMPLES[name].type for name in WORKFLOW_SAMPLES}
    assert {
        "workflow.execution.running",
        "workflow.execution.failed",
        "workflow.execution.completed",
        "workflow.execution.timed_out",
        "workflow.execution.retrying",
        "workflow.execution.continued_as_new",
        "workflow.execution.retry_storm",
        "workflow.activity.retrying",
        "workflow.activity.failed",
    } <= kinds


@pytest.mark.parametrize(
    ("sample", "path", "value"),
    [
        pytest.param("workflow_failed", ("job", "workflow_name"), None, id="no workflow name"),
        pytest.param("workflow_failed", ("job", "attempt"), "two", id="attempt not an int"),
        pytest.param("workflow_failed", ("failure", "message"), 3, id="failure not text"),
        pytest.param("activity_failed", ("activity", "attempt"), [1], id="activity attempt"),
        pytest.param("retry_storm", ("activity", "retries"), "many", id="retries"),
        pytest.param("continued_as_new", ("new_run_id",), {"id": 1}, id="new run id"),
        pytest.param("workflow_running", ("job", "created_at"), "yesterday", id="created_at"),
    ],
)
def test_workflow_payloads_have_their_shape(
    sample: str, path: tuple[str, ...], value: object
) -> None:
    """A ``workflow.*`` event whose job or facts have the wrong shape fails the schema."""
    payload = SAMPLES[sample].payload(detected_at=T0)
    node = payload["data"]
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, events_schema())


def test_other_families_are_not_held_to_the_workflow_shape() -> None:
    """A fine-tuning job needs no workflow_name: the workflow shape is for workflow.* only."""
    payload = SAMPLES["failed"].payload(detected_at=T0)
    assert "workflow_name" not in payload["data"]["job"]
    jsonschema.validate(payload, events_schema())
    payload["type"] = "workflow.execution.failed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, events_schema())
