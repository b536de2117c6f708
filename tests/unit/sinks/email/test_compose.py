"""The email of a batch: subjects, thread headers, message ids, HTML escaping, loss charts,
user templates, links, and the sink's refusal of unusable settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sinks.email.support import (
    DETECTED,
    JOB_ID,
    PASSWORD,
    USER,
    envelope,
    job,
    make_sink,
    parts,
)
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.render.templates import MessageTemplates
from watcher.sinks.email import default_subject, message_id, thread_root


def test_hostile_values_are_escaped_in_html(no_charts: None) -> None:
    """Every API value is HTML-escaped: a script tag never appears raw in the HTML part."""
    hostile = "<script>alert(1)</script>"
    batch = [
        envelope(
            job=job(suffix=hostile, model=f'm"{hostile}', metadata={"cost": hostile}),
            details={"reason": hostile, "alert": {hostile: hostile}},
        )
    ]
    message = make_sink(25).build(batch, now=DETECTED)

    text, body = parts(message)
    assert "<script" not in body.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert hostile in text  # plain text shows it as the characters it is


def test_group_subject_counts_statuses() -> None:
    """A group's subject counts each status, most frequent first, and the jobs."""
    batch = [envelope(f"wt_{i}", job_id=f"job-{i}") for i in range(3)]
    batch.append(
        envelope("wt_c", job_id="job-c", status="CANCELLED", type="fine_tuning.job.cancelled")
    )

    assert "[3 FAILED, 1 CANCELLED] 4 jobs" == default_subject(batch)


def test_group_threading() -> None:
    """A group about one job joins its thread; a group spanning several jobs starts its own,
    and every id is listed in X-Watcher-Transition."""
    sink = make_sink(25)
    one_job = sink.build([envelope("wt_a"), envelope("wt_b")], now=DETECTED)
    two_jobs = sink.build([envelope("wt_a"), envelope("wt_c", job_id="other")], now=DETECTED)

    assert f"<job.ft.{JOB_ID}@watcher>" == one_job["References"]
    assert (None, None) == (two_jobs["References"], two_jobs["In-Reply-To"])
    assert "wt_a wt_c" == two_jobs["X-Watcher-Transition"]
    assert two_jobs["Message-ID"].startswith("<wt_a.2.")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"job": job(fine_tuned_model="ft:open-mistral-7b:abc:20250627:3b9c1e7a")},
            "[FAILED] ft:open-mistral-7b:abc:20250627:3b9c1e7a (support-bot)",
            id="fine-tuned model first",
        ),
        pytest.param(
            {"type": "fine_tuning.job.stalled", "status": None, "previous_status": None},
            "[STALLED] open-mistral-7b (support-bot)",
            id="alert",
        ),
        pytest.param(
            {"type": "fine_tuning.job.checkpoint", "status": None, "previous_status": None},
            "[CHECKPOINT] open-mistral-7b (support-bot)",
            id="checkpoint",
        ),
        pytest.param(
            {"type": "watcher.source.retired", "status": None, "job_id": None, "job": {}},
            "[SOURCE RETIRED] ft",
            id="source",
        ),
    ],
)
def test_single_subject(overrides: dict[str, Any], expected: str) -> None:
    """A single transition's subject names its status or kind, the model and the suffix."""
    assert expected == default_subject([envelope(**overrides)])


def test_message_ids_are_sanitized() -> None:
    """Ids from elsewhere cannot break out of the Message-ID or thread root."""
    hostile = envelope("wt_1>\r\nBcc: x@y <", job_id="a b>c", source="f\nt")

    assert "<wt_1-Bcc-x-y@watcher>" == message_id([hostile])
    assert thread_root(hostile.transition).startswith("<job.f-t.a-b-c.")


def test_loss_curve_chart_and_sparkline(fake_charts: list[Any]) -> None:
    """A job with a loss curve gets an inline SVG chart in HTML and a sparkline in text."""
    curve = [[10, 2.5, None], [20, 1.9, 2.1], [30, None, 1.7], ["bad"], [40, float("nan"), 1.5]]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)

    text, body = parts(message)
    expected = [
        {"train_loss": [(10, 2.5), (20, 1.9)], "valid_loss": [(20, 2.1), (30, 1.7), (40, 1.5)]}
    ]
    assert expected == fake_charts
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="loss"></svg>' in body
    assert "Train loss:" in text and "\u2587\u2585\u2582 2.5 \u2192 1.9" in text


def test_no_chart_module_no_chart(no_charts: None) -> None:
    """Without watcher.render.charts the message goes out without a chart or sparkline."""
    curve = [[10, 2.5, 2.6], [20, 1.9, 2.1]]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)

    text, body = parts(message)
    assert "<svg" not in body and "Train loss" not in text


def test_templates_override_parts() -> None:
    """User templates replace subject and text; the subject is still one clean line."""
    templates = MessageTemplates(
        "oncall",
        {"subject": "{{ count }}: {{ t.job.suffix }}", "text": "job {{ t.job.id }}", "html": None},
    )
    batch = [envelope(job=job(suffix="a\x00b\r\nBcc: x@example.com"))]
    message = make_sink(25, templates=templates).build(batch, now=DETECTED)

    text, body = parts(message)
    assert "1: a b Bcc: x@example.com" == message["Subject"]
    assert f"job {JOB_ID}\n" == text
    assert "<table" in body


async def test_failing_template_is_final() -> None:
    """A template that fails to render is a final delivery error naming the part."""
    templates = MessageTemplates("oncall", {"subject": "{{ t.nope }}"})
    with pytest.raises(DeliveryError) as caught:
        await make_sink(25, templates=templates).send([envelope()])

    assert not caught.value.retryable
    assert "subject template" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        pytest.param({"sender": "not an address"}, "from", id="sender"),
        pytest.param({"recipients": []}, "at least one", id="no recipients"),
        pytest.param({"recipients": ["a@b.c\r\nBcc: x@y.z"]}, "one line", id="recipient CRLF"),
        pytest.param({"username": USER}, "together", id="username alone"),
        pytest.param(
            {"host": "smtp.example.com", "username": USER, "password": Secret(PASSWORD)},
            "plaintext",
            id="password in plaintext",
        ),
        pytest.param({"tls": "tls", "ca_file": "/nonexistent/ca.pem"}, "ca_file", id="ca_file"),
        pytest.param({"job_url_template": "javascript:x"}, "job_url_template", id="url"),
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any], needle: str) -> None:
    """Settings that cannot work, or would leak, are refused when the sink is built."""
    with pytest.raises(ValueError, match=needle) as caught:
        make_sink(25, **overrides)

    assert PASSWORD not in str(caught.value)


def test_job_link_is_encoded() -> None:
    """The job link percent-encodes the job id and is an escaped anchor in HTML."""
    sink = make_sink(25, job_url_template="https://console.example.com/jobs/{job_id}?s={source}")
    message = sink.build([envelope(job_id='a"<b>')], now=DETECTED)

    text, body = parts(message)
    url = "https://console.example.com/jobs/a%22%3Cb%3E?s=ft"
    assert f'<a href="{url}">{url}</a>' in body
    assert url in text


def test_real_chart_is_valid_svg_in_the_html_part() -> None:
    """With the real charts module, the HTML part holds an SVG that the stdlib XML parser
    reads, with one curve per series; the text part's sparkline falls with the loss."""
    import re
    import xml.etree.ElementTree as ET

    curve = [[s, 2.0 / s, 2.2 / s if s % 2 == 0 else 0.0] for s in range(1, 21)]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)
    text, body = parts(message)
    found = re.search(r"<svg.*?</svg>", body, re.DOTALL)
    assert found is not None
    root = ET.fromstring(found.group(0))  # noqa: S314 (our own output, the point of the test)
    assert root.tag.endswith("svg")
    assert 2 == len([e for e in root.iter() if e.tag.endswith("polyline")])
    line = next(row for row in text.splitlines() if row.startswith("Train loss:"))
    spark = line.split(":", 1)[1].split()[0]
    assert spark[0] > spark[-1]  # block characters rise in code point with the value


def test_no_validation_placeholders_are_not_plotted_as_zeros() -> None:
    """The API's ``valid_loss: 0.0`` ("no validation at this step") is a gap, not a point:
    the valid series holds only the real evaluations, in the chart and in the text part."""
    from watcher.sinks.email.facts import loss_series, sparklines

    curve = [[s, 3.0 - 0.1 * s, 2.5 - 0.1 * s if s % 5 == 0 else 0.0] for s in range(1, 21)]
    series = loss_series({"loss_curve": curve})
    assert [step for step, _ in series["valid_loss"]] == [5.0, 10.0, 15.0, 20.0]
    assert all(value > 0 for _, value in series["valid_loss"])
    assert len(series["train_loss"]) == 20
    rows = dict(sparklines({"loss_curve": curve}))
    assert rows["Valid loss"].endswith("2 → 0.5")  # first and last real evaluations
    only_placeholders = [[s, 1.0, 0.0] for s in range(1, 6)]
    assert "valid_loss" not in loss_series({"loss_curve": only_placeholders})
