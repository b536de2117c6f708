"""ConsoleSink: one clean, human-readable line per transition, whatever the API sent."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

from tests.factories import SINK_JOB_ID, sink_envelope
from tests.factories import sink_job as job
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope
from watcher.model.transitions import source_retired
from watcher.sinks.console import ConsoleSink, clean

JOB_ID = SINK_JOB_ID
WHEN = 1_795_000_000  # 2026-11-18T11:06:40Z
DETECTED = 1_795_000_100.0


def envelope(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {"id": "wt_1", "occurred_at": WHEN}
    return sink_envelope(detected_at=DETECTED, **(fields | overrides))


async def lines_for(*envelopes: Envelope) -> list[str]:
    stream = io.StringIO()
    await ConsoleSink("console", stream).send(envelopes)
    return stream.getvalue().split("\n")


async def test_status_change_line() -> None:
    """A status change shows time, source, short job id, the move, model and suffix."""
    expected = [
        "2026-11-18T11:06:40Z  ft  3b9c1e7a…  RUNNING → FAILED  open-mistral-7b (support-bot)",
        "",
    ]
    assert expected == await lines_for(envelope())


async def test_one_line_per_transition() -> None:
    """Each transition of a batch gets exactly one line, in order."""
    batch = [
        envelope(id="a", previous_status=None, status="QUEUED", type="fine_tuning.job.queued"),
        envelope(id="b", previous_status="QUEUED", status="RUNNING"),
        envelope(id="c"),
    ]
    lines = await lines_for(*batch)

    expected = ["new → QUEUED", "QUEUED → RUNNING", "RUNNING → FAILED"]
    assert expected == [line.split("  ")[3] for line in lines[:-1]]
    assert not lines[-1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {
                "type": "fine_tuning.job.checkpoint",
                "status": None,
                "previous_status": None,
                "details": {
                    "checkpoint": {
                        "step_number": 40,
                        "metrics": {"train_loss": 1.28412, "valid_loss": None},
                    }
                },
            },
            "step 40 train_loss=1.284 valid_loss=-",
            id="checkpoint",
        ),
        pytest.param(
            {
                "type": "fine_tuning.job.checkpoint",
                "status": None,
                "previous_status": None,
                "details": {
                    "checkpoint": {
                        "step_number": 40,
                        "metrics": {"train_loss": 1.28412, "valid_loss": 0.0},
                    }
                },
            },
            "step 40 train_loss=1.284 valid_loss=-",
            id="checkpoint-placeholder",
        ),
        pytest.param(
            {
                "type": "fine_tuning.job.model_ready",
                "status": None,
                "previous_status": None,
                "details": {"fine_tuned_model": "ft:open-mistral-7b:abc:support-bot"},
            },
            "model ready: ft:open-mistral-7b:abc:support-bot",
            id="model ready",
        ),
        pytest.param(
            {
                "type": "fine_tuning.job.event",
                "status": None,
                "previous_status": None,
                "details": {"event": {"name": "job-paused", "created_at": WHEN}},
            },
            "event job-paused",
            id="event",
        ),
        pytest.param(
            {
                "type": "batch.job.progress",
                "status": None,
                "previous_status": None,
                "details": {"progress": {"milestone": 50.0, "processed": 55, "total": 100}},
            },
            "progress 50%: 55/100 requests",
            id="batch progress",
        ),
        pytest.param(
            {
                "type": "batch.job.errors_rising",
                "status": None,
                "previous_status": None,
                "details": {"failed_ratio": 0.25, "errors": [{"message": "too\nlong"}]},
            },
            "errors rising: 25% of requests failed (too long)",
            id="batch errors rising",
        ),
        pytest.param(
            {
                "type": "fine_tuning.job.stalled",
                "status": None,
                "previous_status": None,
                "details": {"alert": {"rule": "stalled", "status": "QUEUED\x1b[2J"}},
            },
            "fine_tuning.job.stalled: rule=stalled status=QUEUED",
            id="alert",
        ),
        pytest.param(
            {
                "type": "watcher.digest",
                "status": None,
                "previous_status": None,
                "details": {
                    "digest": {"sources": {"ft": {"succeeded": 3, "failed": 1, "running_now": 2}}}
                },
            },
            "digest ft: 3 ok, 1 failed, 2 running",
            id="digest",
        ),
        pytest.param(
            {"type": "watcher.job.stuck", "status": None, "previous_status": None},
            "watcher.job.stuck",
            id="generic",
        ),
    ],
)
async def test_line_per_type(overrides: dict[str, Any], expected: str) -> None:
    """Checkpoints, model-ready, events and other types each get a readable summary."""
    lines = await lines_for(envelope(**overrides))

    assert expected == lines[0].split("  ")[3]


async def test_source_retired_line() -> None:
    """A retired source names itself and the reason, with no job fields."""
    retired = Envelope(transition=source_retired("ft", "/v1/fine_tuning/jobs"), detected_at=WHEN)
    expected = [
        "2026-11-18T11:06:40Z  ft  -  source retired: "
        "/v1/fine_tuning/jobs answers 410 Gone: the API was retired",
        "",
    ]
    assert expected == await lines_for(retired)


async def test_hostile_values_give_a_single_clean_line() -> None:
    """Escape sequences, CR/LF and bidi overrides in API values cannot fake or colour lines."""
    hostile = envelope(
        job=job(suffix="evil\x1b[31mRED\x1b[0m\r\n2026-01-01T00:00:00Z  ft  fake\u202etxt.exe"),
        status="FAILED\x07\x9b2J",
    )
    lines = await lines_for(hostile)

    expected = [
        "2026-11-18T11:06:40Z  ft  3b9c1e7a…  RUNNING → FAILED?  "
        "open-mistral-7b (evilRED 2026-01-01T00:00:00Z ft fake?tx…)",
        "",
    ]
    assert expected == lines


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u200f", "\u2028", "\u2066", "\u202e", "\ufeff"],
)
def test_clean_removes_every_control_character(char: str) -> None:
    """C0, C1, DEL, separators and Unicode format characters never reach the terminal."""
    cleaned = clean(f"a{char}b")

    assert char not in cleaned
    assert cleaned.startswith("a")


def test_clean_caps_length() -> None:
    """Long values are cut with an ellipsis."""
    expected = "x" * 9 + "…"
    assert expected == clean("x" * 500, 10)


async def test_default_stream_is_resolved_at_write_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a stream the sink writes to whatever sys.stdout is when it sends."""
    sink = ConsoleSink("console")
    replaced = io.StringIO()
    monkeypatch.setattr(sys, "stdout", replaced)
    await sink.send([envelope()])

    expected = 1
    assert expected == replaced.getvalue().count("\n")


async def test_ascii_stream_gets_ascii_arrows() -> None:
    """A stream that cannot encode the arrow gets ASCII instead of an encoding error."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    await ConsoleSink("console", stream).send([envelope()])

    expected = b"2026-11-18T11:06:40Z  ft  3b9c1e7a...  RUNNING -> FAILED  "
    assert raw.getvalue().startswith(expected)


async def test_closed_stream_is_a_final_error() -> None:
    """Writing to a closed stream raises a final DeliveryError."""
    stream = io.StringIO()
    stream.close()
    with pytest.raises(DeliveryError) as caught:
        await ConsoleSink("console", stream).send([envelope()])

    assert not caught.value.retryable
