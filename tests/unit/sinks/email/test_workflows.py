"""The email of a Workflows execution: subject with the workflow and what happened, the
fact rows (workflow, run, attempt, duration, failure, root), links per source, hostile
values; and one delivered through a real SMTP server."""

from __future__ import annotations

import re

import pytest

from tests.unit.sinks.email.support import (
    DETECTED,
    RECIPIENTS,
    Recorder,
    envelope,
    make_sink,
    parts,
    smtp_server,
)
from tests.unit.sinks.workflow_cases import HOSTILE, KINDS, hostile, workflow
from watcher.render.workflow_samples import EXECUTION_ID, PARENT_ID, ROOT_ID, RUN_ID

WF_LINK = "https://console.example/wf/{workflow_name}/{job_id}?run={run_id}"


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("workflow_running", "[RUNNING] support-workflow (prod)"),
        ("workflow_failed", "[FAILED] support-workflow (prod)"),
        ("workflow_completed", "[COMPLETED] support-workflow (prod)"),
        ("workflow_timed_out", "[TIMED_OUT] support-workflow (prod)"),
        ("workflow_retrying", "[RETRYING] support-workflow (prod)"),
        ("continued_as_new", "[CONTINUED AS NEW] support-workflow (prod)"),
        ("activity_retrying", "[ACTIVITY RETRYING] support-workflow (prod): charge_card"),
        ("activity_failed", "[ACTIVITY FAILED] support-workflow (prod): charge_card"),
        ("retry_storm", "[RETRY STORM] support-workflow (prod): charge_card"),
    ],
)
def test_subject_names_the_workflow_and_what_happened(name: str, subject: str) -> None:
    """Each kind's subject: what happened, the workflow and deployment, the activity."""
    message = make_sink(25).build([workflow(name)], now=DETECTED)
    assert subject == message["Subject"]


def test_failed_child_rows() -> None:
    """A failed sub-workflow's rows name its workflow, run, parent and root, how long it
    ran, the attempt and why it failed, in both parts."""
    message = make_sink(25).build([workflow("workflow_failed")], now=DETECTED)

    text, body = parts(message)
    expected = {
        "Source": "wf",
        "Workflow": "support-workflow",
        "Deployment": "prod",
        "Execution": EXECUTION_ID,
        "Run": RUN_ID,
        "Sub-workflow": f"child of {PARENT_ID} in root {ROOT_ID}",
        "Status": "RUNNING \u2192 FAILED",
        "Duration": "1m 2s",
        "Attempt": "2",
        "Failure": "KeyError: 'customer'",
    }
    assert expected.items() <= rows(text).items()
    assert f"child of {PARENT_ID} in root {ROOT_ID}</td>" in body
    assert "KeyError: &#x27;customer&#x27;</td>" in body


def rows(text: str) -> dict[str, str]:
    """The ``Name: value`` rows of a text part."""
    return dict(re.findall(r"^([A-Z][\w -]*):\s+(.*)$", text, re.MULTILINE))


def test_activity_rows_and_storm_rows() -> None:
    """Activity facts name the activity and its attempt; a storm its retries and window;
    continue-as-new both runs."""
    text, _ = parts(make_sink(25).build([workflow("activity_retrying")], now=DETECTED))
    assert {"Activity": "charge_card", "Activity attempt": "2"}.items() <= rows(text).items()
    text, _ = parts(make_sink(25).build([workflow("retry_storm")], now=DETECTED))
    assert "12 within 5m 0s" == rows(text)["Retries"]
    text, _ = parts(make_sink(25).build([workflow("continued_as_new")], now=DETECTED))
    assert "0c5e8f21-3b6a-4d7e-8f90-1a2b3c4d5e6f" == rows(text)["New run"]


def test_long_failure_is_cut_sensibly() -> None:
    """A 10 kB failure message shows its first 500 characters, then an ellipsis."""
    details = {"failure": {"message": "E" * 10_000}, "attempt": 2}
    text, _ = parts(make_sink(25).build([workflow("workflow_failed", details=details)]))
    [line] = [line for line in text.splitlines() if line.startswith("Failure:")]
    assert line.endswith("E" * 400 + "\u2026")
    assert len(line) < 600


@pytest.mark.parametrize("name", KINDS)
def test_hostile_values_stay_inert(name: str) -> None:
    """Markup is escaped in HTML, the subject is one short line, nothing invisible passes."""
    message = make_sink(25).build([hostile(name)], now=DETECTED)

    text, body = parts(message)
    subject = message["Subject"]
    assert "\n" not in subject and "\r" not in subject and len(subject) <= 200
    assert "<script" not in body.lower() and "<!channel>" not in body
    assert "&lt;script&gt;" in body
    for part in (subject, text, body):
        assert "\x1b" not in part and "\u202e" not in part and "\x00" not in part
        assert HOSTILE not in part
    assert len(text) < 20_000


def test_links_per_source_and_sink_level_for_fine_tuning_only() -> None:
    """An execution takes its source's template (values quoted); the sink's own template
    links a fine-tuning job but neither a batch job nor an execution."""
    sink = make_sink(25, job_url_template="https://ft.example/{job_id}", job_links={"wf": WF_LINK})
    execution = workflow("workflow_failed", job={"workflow_name": "a b"})
    text, body = parts(sink.build([execution], now=DETECTED))
    url = f"https://console.example/wf/a%20b/{EXECUTION_ID}?run={RUN_ID}"
    assert f'<a href="{url}">{url}</a>' in body
    assert url == rows(text)["Link"]

    text, _ = parts(sink.build([envelope(type="batch.job.failed")], now=DETECTED))
    assert "Link:" not in text and "ft.example" not in text
    text, _ = parts(sink.build([envelope()], now=DETECTED))
    assert "https://ft.example/" in text
    only_sink_level = make_sink(25, job_url_template="https://ft.example/{job_id}")
    text, _ = parts(only_sink_level.build([workflow("workflow_failed")], now=DETECTED))
    assert "Link:" not in text


async def test_a_failed_execution_is_delivered() -> None:
    """Through a real SMTP server: the workflow's email reaches every recipient."""
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        await make_sink(port).send([workflow("workflow_failed")])

    [message] = recorder.messages()
    assert "[FAILED] support-workflow (prod)" == message["Subject"]
    assert sorted(RECIPIENTS) == sorted(recorder.envelopes[0].rcpt_tos)
