"""render/links.py: a job's link comes from its source's template; a sink's own template
(deprecated) only links fine-tuning jobs of sources without one."""

from __future__ import annotations

import pytest

from tests.unit.sinks.workflow_cases import workflow
from watcher.model.transitions import Transition
from watcher.render.links import JobLinks, fill
from watcher.render.workflow_samples import EXECUTION_ID, ROOT_ID, RUN_ID

SINK_LEVEL = "https://sink.example/{source}/{job_id}"


def job(type_: str, source: str = "ft", job_id: str = "j-1") -> Transition:
    return Transition(id="t", type=type_, source=source, job_id=job_id, job={"id": job_id})


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        pytest.param("fine_tuning.job.failed", "https://sink.example/ft/j-1", id="fine-tuning"),
        pytest.param("fine_tuning.job.stalled", "https://sink.example/ft/j-1", id="ft alert"),
        pytest.param("batch.job.failed", None, id="batch: none"),
        pytest.param("workflow.execution.failed", None, id="workflow: none"),
    ],
)
def test_sink_level_template_links_fine_tuning_jobs_only(type_: str, expected: str | None) -> None:
    """The sink's own template links fine-tuning jobs, never a batch job or an execution."""
    assert expected == JobLinks({}, SINK_LEVEL).url(job(type_))


def test_a_sources_own_template_wins_for_every_family() -> None:
    """A source's template applies to its jobs whatever their family, before the sink's."""
    links = JobLinks({"b": "https://batch.example/jobs/{job_id}"}, SINK_LEVEL)
    assert "https://batch.example/jobs/j-1" == links.url(job("batch.job.failed", "b"))
    assert "https://batch.example/jobs/j-1" == links.url(job("fine_tuning.job.failed", "b"))
    assert "https://sink.example/ft/j-1" == links.url(job("fine_tuning.job.failed", "ft"))
    assert None is links.url(job("batch.job.failed", "other"))


def test_workflow_placeholders_are_filled_and_quoted() -> None:
    """Executions fill {workflow_name}, {run_id}, {root_execution_id}, each quoted whole."""
    template = (
        "https://console.example/{source}/{workflow_name}/{job_id}"
        "?run={run_id}&root={root_execution_id}"
    )
    envelope = workflow("workflow_failed", job={"workflow_name": "a/b?c=d#e f"})
    expected = (
        f"https://console.example/wf/a%2Fb%3Fc%3Dd%23e%20f/{EXECUTION_ID}"
        f"?run={RUN_ID}&root={ROOT_ID}"
    )
    assert expected == JobLinks({"wf": template}).url(envelope.transition)


def test_hostile_ids_cannot_leave_their_place() -> None:
    """An id with slashes, a scheme or markup stays one encoded path segment."""
    transition = job("batch.job.failed", "s p", 'javascript:x/../"<b>|')
    url = fill("https://x.example/{source}/{job_id}", transition)
    assert "https://x.example/s%20p/javascript%3Ax%2F..%2F%22%3Cb%3E%7C" == url


@pytest.mark.parametrize(
    ("template", "transition"),
    [
        pytest.param("https://x/{run_id}", job("batch.job.failed"), id="not a workflow"),
        pytest.param(
            "https://x/{run_id}",
            workflow("workflow_failed", job={"run_id": None}).transition,
            id="no run yet",
        ),
        pytest.param("{job_id}", job("batch.job.failed", job_id="https://evil"), id="no scheme"),
        pytest.param("https://x/{job}", job("batch.job.failed"), id="unknown placeholder"),
        pytest.param("https://x/" + "p" * 3000 + "/{job_id}", job("batch.job.failed"), id="long"),
    ],
)
def test_no_link_rather_than_a_broken_one(template: str, transition: Transition) -> None:
    """A placeholder without a value, a result that is not http(s), or too long: no link."""
    assert None is fill(template, transition)


def test_no_job_no_link() -> None:
    """Transitions about no job (source health, digests) get no link."""
    transition = Transition(id="t", type="watcher.source.retired", source="ft")
    assert None is JobLinks({"ft": "https://x/{source}"}, SINK_LEVEL).url(transition)
