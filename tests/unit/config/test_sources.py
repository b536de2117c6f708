"""The sources: section: a bad base URL is refused at its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from .sample import refused


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        pytest.param(
            ("base_url: http://127.0.0.1:8765", "base_url: http://127.0.0.1:99999"),
            "sources[0].base_url",
            "http:// or https://",
            id="source port out of range",
        ),
    ],
)
def test_broken_sources_name_the_field(
    tmp_path: Path, edit: tuple[str, str], path: str, message: str
) -> None:
    """A source whose base URL is not a usable http(s) URL is refused at its field."""
    error = refused(tmp_path, edit)
    assert path == error.path
    assert message in error.message


def test_a_link_template_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    """A misspelt placeholder would leave a broken link in every message: refused, with the
    known ones named; a placeholder in the host is fine."""
    from watcher.config import validate_config
    from watcher.exceptions import ConfigError

    def load(template: str) -> None:
        validate_config(
            {
                "sources": [{"name": "wf", "kind": "mistral-workflows", "api_key": "k",
                             "job_url_template": template}],
                "sinks": [{"name": "console", "kind": "console"}],
            },
            env={},
        )  # fmt: skip

    load("https://{workflow_name}.console.example/runs/{run_id}?root={root_execution_id}")
    with pytest.raises(ConfigError) as refused_link:
        load("https://console.example/{job}")
    assert "sources[0].job_url_template" == refused_link.value.path
    assert "unknown placeholder {job}" in refused_link.value.message
    assert "{job_id}" in refused_link.value.message


def test_templates_must_fit_workflows_when_a_workflows_source_is_configured() -> None:
    """A template written for jobs with a model loads beside a batch source, and is refused
    (at the sink's templates, saying why) once a Workflows source would feed it."""
    from watcher.config import validate_config
    from watcher.exceptions import ConfigError

    template = {"text": "{% if t.job %}{{ t.job.model or 'no model' }}{% endif %}"}

    def load(kind: str) -> None:
        validate_config(
            {
                "sources": [{"name": "s", "kind": kind, "api_key": "k"}],
                "sinks": [{"name": "c", "kind": "console", "templates": template}],
            },
            env={},
        )

    load("mistral-batch")
    with pytest.raises(ConfigError) as refused_template:
        load("mistral-workflows")
    assert "sinks[0].templates" == refused_template.value.path
    assert "workflow" in refused_template.value.message
    assert "a Workflows source is configured" in refused_template.value.message
