"""SlackSink's layouts as the fake Slack receives them: the full and grouped Block Kit
messages, escaping, Slack's limits, user templates, loss curves."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

import pytest

from tests.unit.sinks.slack.support import (
    HOOK,
    HOSTILE,
    Slack,
    digest,
    envelope,
    job_id,
    listed,
    named_ids,
    texts,
    within_limits,
)
from watcher.render.templates import MessageTemplates
from watcher.sinks.slack import Formatter


async def test_single_transition_gets_the_full_layout(slack: Slack) -> None:
    """One transition: a status header, the job's fields, a link and the transition id."""
    sink = slack.webhook_sink(job_url_template="https://console.example/{source}/jobs/{job_id}")
    await sink.send([envelope(1)])

    [message] = slack.fake.webhook_messages(HOOK)
    expected_fields = [
        f"*Job*\n`{job_id(1)}`",
        "*Model*\nopen-mistral-7b",
        "*Suffix*\nsupport-bot",
        "*Job type*\ncompletion",
        "*Source*\nft",
        "*Status*\nRUNNING \u2192 *FAILED*",
        "*Duration*\n2h 30m",
        "*Cost*\n4.1 EUR",
        f"*Link*\n<https://console.example/ft/jobs/{job_id(1)}|Open the job>",
    ]
    assert ":x: FAILED" == message.blocks[0]["text"]["text"]
    assert expected_fields == [field["text"] for field in message.blocks[1]["fields"]]
    assert (
        "`wt_0001_FAILED` \u00b7 2026-11-18T10:50:00Z" == message.blocks[-1]["elements"][0]["text"]
    )
    assert message.text.startswith(":x: FAILED: Job <https://console.example/ft/jobs/")
    assert {"unfurl_links": False, "unfurl_media": False}.items() <= message.payload.items()


async def test_checkpoint_batch_and_alert_facts_are_shown() -> None:
    """Checkpoints show step and metrics, batch jobs their counters, alerts the rule facts,
    digests a summary per source."""
    formatter = Formatter()
    checkpoint = envelope(
        1, None, type="fine_tuning.job.checkpoint",
        details={"checkpoint": {"step_number": 40, "metrics": {"train_loss": 1.284,
                                                                "valid_loss": float("nan")}}},
    )  # fmt: skip
    batch = envelope(
        2, "RUNNING", type="batch.job.running",
        job={"total_requests": 1000, "succeeded_requests": 440, "failed_requests": 10,
             "suffix": None, "job_type": None},
    )  # fmt: skip
    alert = envelope(
        3, None, type="fine_tuning.job.stalled",
        details={"alert": {"rule": "stalled", "status": "QUEUED", "limit_seconds": 7200}},
    )  # fmt: skip

    shown = [
        "\n".join(str(b) for b in formatter.single(e).blocks)
        for e in (checkpoint, batch, alert, digest())
    ]

    assert "Checkpoint: step *40* \u00b7 train_loss `1.284` \u00b7 valid_loss `NaN`" in shown[0]
    assert "*Requests*\\n450 / 1000 processed, 10 failed" in shown[1]
    assert "Rule *stalled*: status QUEUED \u00b7 limit 2h 0m" in shown[2]
    assert ":hourglass: stalled" in shown[2]
    assert (
        "*ft*: 3 created, 2 succeeded, 1 failed, 0 cancelled, 1 running now; cost 8.2 EUR"
        in (shown[3])
    )


async def test_hostile_values_arrive_inert(slack: Slack) -> None:
    """Mentions, links and control characters in API values are escaped or stripped."""
    hostile = envelope(1, job={"suffix": HOSTILE + "\x1b[31m\u202e\nnext"})
    sink = slack.webhook_sink()
    await sink.send([hostile])
    slack.clock.now += 1
    await sink.send([hostile, envelope(2, job={"model": HOSTILE})])

    messages = slack.fake.webhook_messages(HOOK)
    assert 2 == len(messages)
    for message in messages:
        body = message.body.decode()
        for raw in ("<!channel>", "<@U123>", "<script>", "\x1b", "\u202e", "\\u001b", "\\n next"):
            assert raw not in body
        assert any(
            "&lt;!channel&gt; &lt;@U123&gt; &amp; &lt;script&gt;" in t for t in texts(message)
        )
    assert "*Suffix*\n&lt;!channel&gt; &lt;@U123&gt; &amp; &lt;script&gt; next" in texts(
        messages[0]
    )


async def test_large_batch_makes_one_valid_message_that_counts_them(slack: Slack) -> None:
    """500 transitions: one message within Slack's limits that says 500, lists one line per
    transition while they fit, then "… and N more" naming as many further ids as fit."""
    batch = [envelope(n) for n in range(500)]
    await slack.webhook_sink().send(batch)

    [message] = slack.fake.webhook_messages(HOOK)
    assert within_limits(message)
    assert sum(map(len, texts(message)[1:])) <= 40_000
    assert ":x: 500 jobs FAILED" == message.blocks[0]["text"]["text"]
    lines = listed(message)
    marker = message.blocks[-1]["text"]["text"]
    assert marker.startswith(f"\u2026 and {500 - lines} more: `{job_id(lines)}`, ")
    assert marker.endswith(", \u2026")
    named = named_ids(message)
    assert {job_id(n) for n in range(len(named))} == named
    assert len(named) > lines + 50
    assert message.text.startswith(":x: 500 jobs FAILED\n")
    assert f"\u2026 and {500 - message.text.count(chr(0x2022))} more: `" in message.text


async def test_long_lines_with_links_stay_within_the_message_ceiling(slack: Slack) -> None:
    """Long values and links give fewer lines, never a message beyond Slack's limits."""
    template = "https://console.example/" + "p" * 200 + "/{source}/{job_id}"
    batch = [envelope(n, job={"suffix": "s" * 500, "model": "m" * 500}) for n in range(3000)]
    await slack.webhook_sink(job_url_template=template).send(batch)

    [message] = slack.fake.webhook_messages(HOOK)
    assert within_limits(message)
    assert sum(map(len, texts(message)[1:])) <= 40_000
    marker = message.blocks[-1]["text"]["text"]
    assert marker.startswith(f"\u2026 and {3000 - listed(message)} more: `")


async def test_storm_of_200_failures_in_batches_of_40(slack: Slack) -> None:
    """200 FAILED in batches of 40: at most 10 messages that together name every job."""
    sink = slack.webhook_sink()
    for start in range(0, 200, 40):
        await sink.send([envelope(n) for n in range(start, start + 40)])
        slack.clock.now += 1  # Slack's one message per second per webhook

    messages = slack.fake.webhook_messages(HOOK)
    assert len(messages) <= 10
    assert all(within_limits(m) for m in messages)
    assert {job_id(n) for n in range(200)} == set().union(*(named_ids(m) for m in messages))


async def test_user_text_template_replaces_the_layout_and_is_escaped(slack: Slack) -> None:
    """A ``text`` template becomes the text and a single section, its values escaped."""
    templates = MessageTemplates("ml-slack", {"text": "{{ count }} x {{ t.job.suffix }}"})
    await slack.webhook_sink(templates=templates).send([envelope(1, job={"suffix": HOSTILE})])

    [message] = slack.fake.webhook_messages(HOOK)
    expected = "1 x &lt;!channel&gt; &lt;@U123&gt; &amp; &lt;script&gt;"
    assert expected == message.text
    assert [{"type": "section", "text": {"type": "mrkdwn", "text": expected}}] == message.blocks


async def test_loss_curve_sparkline_uses_watcher_charts_when_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``watcher.render.charts`` the loss line has sparklines; 0.0 valid losses are skipped."""
    charts = types.ModuleType("watcher.render.charts")
    seen: list[Sequence[float]] = []

    def sparkline(values: Sequence[float]) -> str:
        seen.append(list(values))
        return "\u2587\u2585\u2581"[: len(values)]

    charts.sparkline = sparkline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "watcher.render.charts", charts)
    curve = [[10, 2.0, 0.0], [20, 1.5, 1.6], [30, 1.0, 1.2], [40, None, None]]
    message = Formatter().single(envelope(1, job={"loss_curve": curve}))

    assert [[2.0, 1.5, 1.0], [1.6, 1.2]] == seen
    expected = (
        "Loss: train \u2587\u2585\u2581 `2` \u2192 `1` \u00b7 valid \u2587\u2585 `1.6` \u2192 `1.2`"
    )
    assert expected in [b.get("text", {}).get("text") for b in message.blocks]


async def test_loss_curve_without_watcher_charts_still_delivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``watcher.render.charts`` the loss line shows first and last values only."""
    monkeypatch.setitem(sys.modules, "watcher.render.charts", None)
    message = Formatter().single(envelope(1, job={"loss_curve": [[1, 2.0, 0.0], [2, 1.0, 0.0]]}))

    assert "Loss: train `2` \u2192 `1`" in [b.get("text", {}).get("text") for b in message.blocks]
