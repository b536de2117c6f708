"""SlackSink in bot mode: one thread per job that survives a restart, Slack's ok:false
verdicts, no re-post of parts already accepted, and the fake's own refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
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


async def test_bot_gives_each_job_a_card_and_a_thread_and_broadcasts_failures(
    slack: Slack,
) -> None:
    """A job's first message is its card (top-level), each transition replies in the card's
    thread, the card is edited to the latest status, a FAILED reply is broadcast."""
    sink = slack.bot_sink(MemoryState())
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    await sink.send([envelope(2, "QUEUED", previous_status=None)])
    await sink.send([envelope(1, "RUNNING", previous_status="QUEUED")])
    await sink.send([envelope(1, "FAILED")])

    messages = slack.fake.channel_messages(CHANNEL)
    card1, card2 = slack.fake.top_level(CHANNEL)
    expected = [
        (None, False), (card1.ts, False), (None, False), (card2.ts, False),
        (card1.ts, False), (card1.ts, True),
    ]  # fmt: skip
    assert expected == [(m.thread_ts, m.reply_broadcast) for m in messages]
    assert [card1.ts, card1.ts] == [u.ts for u in slack.fake.updates]
    assert "RUNNING \u2192 *FAILED*" in json.dumps(card1.payload, ensure_ascii=False)
    assert "QUEUED" in card2.text and "FAILED" not in card2.text
    assert f"Bearer {TOKEN}" == messages[0].headers["authorization"]


async def test_bot_splits_a_batch_by_job_and_posts_jobless_ones_top_level(slack: Slack) -> None:
    """A mixed batch gives one reply (and card edit) per job and a top-level digest."""
    state = MemoryState()
    sink = slack.bot_sink(state)
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    await sink.send([envelope(1, "RUNNING"), envelope(2), digest(), envelope(1, "FAILED")])

    messages = slack.fake.channel_messages(CHANNEL)
    root = messages[0].ts
    card2 = messages[3].ts
    assert [
        (None, False),
        (root, False),
        (root, True),
        (None, False),
        (card2, True),
        (None, False),
    ] == [(m.thread_ts, m.reply_broadcast) for m in messages]
    assert ":x: 2 updates: 1 RUNNING, 1 FAILED" == messages[2].blocks[0]["text"]["text"]
    assert ":newspaper: digest" == messages[5].blocks[0]["text"]["text"]
    assert [root] == [u.ts for u in slack.fake.updates]  # one edit: the latest state
    assert "*FAILED*" in json.dumps(messages[0].payload)
    assert {("ml-bot", f"thread:ft:{job_id(1)}"), ("ml-bot", f"thread:ft:{job_id(2)}")} == set(
        state.values
    )


async def test_bot_threads_survive_a_restart_with_the_sqlite_store(
    slack: Slack, tmp_path: Path
) -> None:
    """A new sink over a reopened SQLite store edits the card and replies in the thread the
    old one started."""
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

    card, first, second = slack.fake.channel_messages(CHANNEL)
    assert (card.ts, False) == (first.thread_ts, first.reply_broadcast)
    assert (card.ts, True) == (second.thread_ts, second.reply_broadcast)
    assert [card.ts] == [u.ts for u in slack.fake.updates]


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
    """After a failure mid-batch, the retry posts only what Slack had not accepted (the
    card already made is edited, not posted again); a batch sent again after a success is
    posted again."""
    calls: list[tuple[str, dict[str, Any]]] = []
    fail_at = {4}  # the fourth call: job 2's reply (card 1, reply 1, card 2, reply 2)

    def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        if len(calls) + 1 in fail_at:
            fail_at.clear()
            calls.append(("failed", {}))
            return httpx.Response(500, json={"ok": False, "error": "internal_error"})
        body = json.loads(request.content)
        calls.append((method, body))
        return httpx.Response(200, json={"ok": True, "ts": body.get("ts") or f"1.{len(calls)}"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sink = SlackSink(
            "b", client=client, token=Secret(TOKEN), channel=CHANNEL, state=MemoryState()
        )
        batch = [envelope(1), envelope(2)]
        with pytest.raises(DeliveryError):
            await sink.send(batch)
        await sink.send(batch)
        await sink.send(batch)

    shown = [
        (method, UUID.findall(body.get("text", ""))[:1], body.get("thread_ts") or body.get("ts"))
        for method, body in calls
        if method != "failed"
    ]
    one, two = [job_id(1)], [job_id(2)]
    assert [
        ("chat.postMessage", one, None), ("chat.postMessage", one, "1.1"),
        ("chat.postMessage", two, None),
        ("chat.update", two, "1.3"), ("chat.postMessage", two, "1.3"),  # the retry
        ("chat.update", one, "1.1"), ("chat.postMessage", one, "1.1"),  # sent again
        ("chat.update", two, "1.3"), ("chat.postMessage", two, "1.3"),
    ] == shown  # fmt: skip


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
