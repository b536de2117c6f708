"""Links per source, from the config to the message: ``sources[].job_url_template`` reaches
Slack and email through ``build_sink(..., job_links=)``; a sink's own template is
deprecated (a warning at load) and links fine-tuning jobs only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from structlog.testing import capture_logs

from tests.unit.sinks.workflow_cases import workflow
from watcher.cli.previews import render
from watcher.config import Config, validate_config
from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition
from watcher.render.workflow_samples import EXECUTION_ID, ROOT_ID
from watcher.sinks import build_sink
from watcher.sinks.email import EmailSink
from watcher.sinks.slack import SlackSink

WF_TEMPLATE = "https://console.example/workflows/{workflow_name}/{job_id}?root={root_execution_id}"


class NoState:
    async def get_sink_state(self, sink: str, key: str) -> str | None:
        return None

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        return None


def config(tmp_path: Path, sink: dict[str, Any]) -> Config:
    """Three sources (fine-tuning without a template, batch and workflows with their own)
    and one sink named ``out``."""
    source = {"base_url": "http://127.0.0.1:1", "api_key": "k"}
    return validate_config(
        {
            "sources": [
                {"name": "ft", "kind": "mistral-fine-tuning", **source},
                {
                    "name": "b",
                    "kind": "mistral-batch",
                    "job_url_template": "https://console.example/batch/{job_id}",
                    **source,
                },
                {
                    "name": "wf",
                    "kind": "mistral-workflows",
                    "job_url_template": WF_TEMPLATE,
                    **source,
                },
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "out", **sink}],
        }
    )


def links_of(config: Config) -> dict[str, str]:
    """What the daemon passes: each source's template, by source name."""
    return {s.name: s.job_url_template for s in config.sources if s.job_url_template}


def job(type_: str, source: str) -> Envelope:
    transition = Transition(
        id=f"t-{source}", type=type_, source=source, job_id="j/1", job={"id": "j/1"}
    )
    return Envelope(transition=transition, detected_at=0.0)


def shown_by(sink: object, envelope: Envelope) -> str:
    """What a person reads: Slack's payload, or the email's text part (decoded)."""
    if isinstance(sink, EmailSink):
        text = sink.build([envelope]).get_body(("plain",))
        assert text is not None
        return str(text.get_content())
    assert isinstance(sink, SlackSink)
    return json.dumps(sink.preview([envelope]))


SLACK = {
    "kind": "slack",
    "webhook_url": "https://hooks.slack.example/x",
    "job_url_template": "https://console.example/ft/{job_id}",
}
EMAIL = {
    "kind": "email",
    "host": "127.0.0.1",
    "tls": "none",
    "from": "w@example.com",
    "to": ["o@example.com"],
    "job_url_template": "https://console.example/ft/{job_id}",
}


@pytest.mark.parametrize("sink", [SLACK, EMAIL], ids=["slack", "email"])
async def test_each_source_links_its_own_jobs(tmp_path: Path, sink: dict[str, Any]) -> None:
    """A batch job and an execution take their source's template, a fine-tuning job the
    sink's own; an unknown source's batch job gets none."""
    loaded = config(tmp_path, sink)
    async with httpx.AsyncClient() as client:
        built = build_sink(loaded.sinks[0], client, NoState(), job_links=links_of(loaded))
        shown = {
            name: shown_by(built, envelope)
            for name, envelope in {
                "ft": job("fine_tuning.job.failed", "ft"),
                "b": job("batch.job.failed", "b"),
                "other": job("batch.job.failed", "other"),
                "wf": workflow("workflow_failed"),
            }.items()
        }

    assert "https://console.example/ft/j%2F1" in shown["ft"]
    assert "https://console.example/batch/j%2F1" in shown["b"]
    assert "console.example" not in shown["other"]
    expected = f"https://console.example/workflows/support-workflow/{EXECUTION_ID}?root={ROOT_ID}"
    assert expected in shown["wf"]


@pytest.mark.parametrize("sink", [SLACK, EMAIL], ids=["slack", "email"])
def test_sink_level_template_is_deprecated_at_load(tmp_path: Path, sink: dict[str, Any]) -> None:
    """A sink's own job_url_template is accepted, with a warning naming the new home."""
    with capture_logs() as logs:
        config(tmp_path, sink)
    [warning] = [entry for entry in logs if entry["event"] == "config_deprecated"]
    assert "warning" == warning["log_level"]
    assert "sinks[out].job_url_template" == warning["option"]
    assert "sources[].job_url_template" in warning["hint"]


def test_no_warning_without_a_sink_level_template(tmp_path: Path) -> None:
    """A config with links on its sources only loads silently."""
    with capture_logs() as logs:
        config(tmp_path, {k: v for k, v in SLACK.items() if k != "job_url_template"})
    assert [] == [entry for entry in logs if entry["event"] == "config_deprecated"]


def test_render_uses_the_sources_links(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``watcher render`` shows the link a source's template gives (a sample of source wf)."""
    loaded = config(tmp_path, SLACK)
    assert 0 == render(loaded, "out", "workflow_failed")
    assert f"https://console.example/workflows/support-workflow/{EXECUTION_ID}" in (
        capsys.readouterr().out
    )
