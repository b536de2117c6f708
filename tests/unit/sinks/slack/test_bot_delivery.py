"""SlackSink in bot mode: one thread per job that survives a restart, Slack's ok:false
verdicts, no re-post of parts already accepted, and the fake's own refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.sinks.slack.support import (
    CHANNEL,
    TOKEN,
    UUID,
    MemoryState,
    Slack,
    digest,
    envelope,
    job_id,
)
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.sinks.slack import SlackSink
from watcher.stores import open_store


async def test_bot_threads_each_job_and_broadcasts_failures(slack: Slack) -> None:
    """A job's first message starts its thread, later ones reply, a FAILED reply is broadcast."""
    sink = slack.bot_sink(MemoryState())
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    await sink.send([envelope(2, "QUEUED", previous_status=None)])
    await sink.send([envelope(1, "RUNNING", previous_status="QUEUED")])
    await sink.send([envelope(1, "FAILED")])

    messages = slack.fake.channel_messages(CHANNEL)
    first, other = messages[0].ts, messages[1].ts
    expected = [(None, False), (None, False), (first, False), (first, True)]
    assert expected == [(m.thread_ts, m.reply_broadcast) for m in messages]
    assert other != first
    assert f"Bearer {TOKEN}" == messages[0].headers["authorization"]


async def test_bot_splits_a_batch_by_job_and_posts_jobless_ones_top_level(slack: Slack) -> None:
    """A mixed batch gives one message per job and a top-level one for the digest."""
    state = MemoryState()
    sink = slack.bot_sink(state)
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    await sink.send([envelope(1, "RUNNING"), envelope(2), digest(), envelope(1, "FAILED")])

    messages = slack.fake.channel_messages(CHANNEL)
    root = messages[0].ts
    assert [(None, False), (root, True), (None, False), (None, False)] == [
        (m.thread_ts, m.reply_broadcast) for m in messages
    ]
    assert ":x: 2 updates: 1 RUNNING, 1 FAILED" == messages[1].blocks[0]["text"]["text"]
    assert ":newspaper: digest" == messages[3].blocks[0]["text"]["text"]
    assert {("ml-bot", f"thread:ft:{job_id(1)}"), ("ml-bot", f"thread:ft:{job_id(2)}")} == set(
        state.values
    )


async def test_bot_threads_survive_a_restart_with_the_sqlite_store(
    slack: Slack, tmp_path: Path
) -> None:
    """A new sink over a reopened SQLite store replies in the thread the old one started."""
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    await store.open()
    try:
        await slack.bot_sink(store).send([envelope(1, "RUNNING")])  # type: ignore[arg-type]
    finally:
        await store.aclose()
    store = open_store(url)
    await store.open()
    try:
        await slack.bot_sink(store).send([envelope(1, "FAILED")])  # type: ignore[arg-type]
    finally:
        await store.aclose()

    first, second = slack.fake.channel_messages(CHANNEL)
    assert (first.ts, True) == (second.thread_ts, second.reply_broadcast)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        pytest.param("ratelimited", True, id="ratelimited"),
        pytest.param("internal_error", True, id="internal_error"),
        pytest.param("fatal_error", True, id="fatal_error"),
        pytest.param("service_unavailable", True, id="service_unavailable"),
        pytest.param("channel_not_found", False, id="channel_not_found"),
        pytest.param("not_authed", False, id="not_authed"),
        pytest.param("token_revoked", False, id="token_revoked"),
        pytest.param("invalid_blocks", False, id="invalid_blocks"),
        pytest.param("no_text", False, id="no_text"),
        pytest.param("msg_too_long", False, id="msg_too_long"),
    ],
)
async def test_bot_ok_false_errors(slack: Slack, error: str, retryable: bool) -> None:
    """``{"ok": false}`` is retryable for rate limits and Slack's failures, final otherwise."""
    slack.fake.fail_next(1, status=200, error=error)
    sink = slack.bot_sink(MemoryState())
    with pytest.raises(DeliveryError) as caught:
        await sink.send([envelope(1)])

    assert retryable == caught.value.retryable
    assert error in str(caught.value)
    assert ({} if retryable else {error: 1}) == dict(sink.final_errors)


async def test_bot_refusals_of_the_real_fake(slack: Slack) -> None:
    """Archived channel, unknown channel and wrong token are final with Slack's reasons."""
    slack.fake.add_channel("C-OLD")
    slack.fake.archive("C-OLD")
    state = MemoryState()
    reasons = []
    for sink in (
        slack.bot_sink(state, channel="C-OLD"),
        slack.bot_sink(state, channel="C-NOPE"),
        slack.bot_sink(state, token=Secret("xoxb-wrong")),
    ):
        with pytest.raises(DeliveryError) as caught:
            await sink.send([envelope(1)])
        reasons.append((caught.value.retryable, dict(sink.final_errors)))

    assert [
        (False, {"is_archived": 1}),
        (False, {"channel_not_found": 1}),
        (False, {"invalid_auth": 1}),
    ] == reasons


async def test_bot_http_429_is_retryable_with_retry_after(slack: Slack) -> None:
    """HTTP 429 from the Web API is retryable and carries Retry-After."""
    slack.fake.fail_next(1, status=429, error="ratelimited", retry_after=7)
    with pytest.raises(DeliveryError) as caught:
        await slack.bot_sink(MemoryState()).send([envelope(1)])

    assert (True, 7.0) == (caught.value.retryable, caught.value.retry_after)


async def test_bot_retry_does_not_repost_the_parts_already_accepted() -> None:
    """After a failure mid-batch, the retry posts only what Slack had not accepted; a batch
    sent again after a success is posted again."""
    posted: list[dict[str, Any]] = []
    answers = iter([200, 500, 200, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status != 200:
            return httpx.Response(status, json={"ok": False, "error": "internal_error"})
        posted.append(json.loads(request.content))
        return httpx.Response(200, json={"ok": True, "ts": f"1.{len(posted)}"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sink = SlackSink(
            "b", client=client, token=Secret(TOKEN), channel=CHANNEL, state=MemoryState()
        )
        batch = [envelope(1), envelope(2)]
        with pytest.raises(DeliveryError):
            await sink.send(batch)
        await sink.send(batch)
        await sink.send(batch)

    expected = [job_id(1), job_id(2), job_id(1), job_id(2)]
    assert expected == [UUID.findall(p["text"])[0] for p in posted]
    assert [None, None, "1.1", "1.2"] == [p.get("thread_ts") for p in posted]


async def test_fake_refuses_what_slack_refuses(slack: Slack) -> None:
    """The fake answers Slack's strings for payloads beyond Slack's limits."""
    url = slack.hook_url
    too_many = {"blocks": [{"type": "divider"}] * 51}
    long_header = {
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
    }
    long_section = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}]}
    answers = []
    for body in (too_many, long_header, long_section, {"text": ""}, [1]):
        response = await slack.client.post(url, json=body)
        answers.append((response.status_code, response.text))
    response = await slack.client.post(url, content=b"{nope")
    answers.append((response.status_code, response.text))

    expected = [(400, "invalid_blocks")] * 3 + [(400, "no_text")] + [(400, "invalid_payload")] * 2
    assert expected == answers
