"""SlackSink against a real (fake) Slack on loopback: layouts, escaping, limits, the retry
verdict of every answer, threads per job that survive a restart, and no secret leaks."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.fakes.slack import FakeSlack, SlackMessage
from watcher.abc import Envelope, SinkState
from watcher.app.httpserver import bind, serve_app
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition
from watcher.render.templates import MessageTemplates
from watcher.sinks.slack import Formatter, SlackSink
from watcher.stores import open_store

HOOK = "T0000/B0000/hOoKsEcReT0123456789"
TOKEN = "xoxb-1111-2222-bOtSeCrEt"
CHANNEL = "C-ALERTS"
NOW = 1_795_000_000.0
CREATED = 1_794_990_000
HOSTILE = "<!channel> <@U123> & <script>"
UUID = re.compile(r"[0-9a-f]{8}-0000-4000-8000-[0-9a-f]{12}")


class MemoryState:
    """SinkState in a dict."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    async def get_sink_state(self, sink: str, key: str) -> str | None:
        return self.values.get((sink, key))

    async def put_sink_state(self, sink: str, key: str, value: str) -> None:
        self.values[(sink, key)] = value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Slack:
    fake: FakeSlack
    url: str
    clock: Clock
    client: httpx.AsyncClient

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/{HOOK}"

    def webhook_sink(self, **kwargs: Any) -> SlackSink:
        return SlackSink(
            "ml-slack", client=self.client, webhook_url=Secret(self.hook_url), **kwargs
        )

    def bot_sink(self, state: SinkState | None, **kwargs: Any) -> SlackSink:
        options: dict[str, Any] = {
            "token": Secret(TOKEN), "channel": CHANNEL, "api_url": f"{self.url}/api"
        }  # fmt: skip
        return SlackSink("ml-bot", client=self.client, state=state, **(options | kwargs))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope, so that one fake Slack serves every test of the module.
    return "asyncio"


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[tuple[FakeSlack, str, httpx.AsyncClient]]:
    fake = FakeSlack(token=TOKEN, channels=[CHANNEL])
    async with serve_app(fake.app) as url, httpx.AsyncClient() as client:
        yield fake, url, client


@pytest.fixture
def slack(server: tuple[FakeSlack, str, httpx.AsyncClient]) -> Slack:
    fake, url, client = server
    clock = Clock()
    fake.reset(clock=clock)
    return Slack(fake, url, clock, client)


def closed_port_url() -> str:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hooks/{HOOK}"


def job_id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def envelope(n: int = 1, status: str | None = "FAILED", **overrides: Any) -> Envelope:
    job: dict[str, Any] = {
        "id": job_id(n),
        "status": status or "RUNNING",
        "model": "open-mistral-7b",
        "job_type": "completion",
        "suffix": "support-bot",
        "fine_tuned_model": None,
        "created_at": CREATED,
        "modified_at": CREATED + 9000,
        "metadata": {"cost": 4.1, "cost_currency": "EUR"},
    }
    job |= overrides.pop("job", {})
    fields: dict[str, Any] = {
        "id": f"wt_{n:04d}_{status}",
        "type": f"fine_tuning.job.{(status or 'event').lower()}",
        "source": "ft",
        "job_id": job_id(n),
        "status": status,
        "previous_status": "RUNNING" if status else None,
        "occurred_at": CREATED + 9000,
        "job": job,
    }
    return Envelope(transition=Transition(**(fields | overrides)), detected_at=NOW)


def digest() -> Envelope:
    summary = {
        "from": "2026-11-17T00:00:00Z",
        "to": "2026-11-18T00:00:00Z",
        "sources": {"ft": {"created": 3, "succeeded": 2, "failed": 1, "cancelled": 0,
                           "running_now": 1, "cost": {"EUR": 8.2}}},
    }  # fmt: skip
    transition = Transition(
        id="wt_digest",
        type="watcher.digest",
        source="watcher",
        occurred_at=int(NOW),
        details={"digest": summary},
    )
    return Envelope(transition=transition, detected_at=NOW)


def texts(message: SlackMessage) -> list[str]:
    """Every string a person can read in the message (text, header, sections, fields)."""
    out = [message.text]
    for block in message.blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [item["text"] for item in block.get("fields", [])]
        out += [item.get("text", "") for item in block.get("elements", [])]
    return out


def named_ids(message: SlackMessage) -> set[str]:
    return set(UUID.findall(json.dumps(message.blocks)))


def within_limits(message: SlackMessage) -> bool:
    blocks = message.blocks
    headers = [b["text"]["text"] for b in blocks if b["type"] == "header"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    return (
        len(blocks) <= 50
        and all(len(h) <= 150 for h in headers)
        and all(len(s) <= 3000 for s in sections)
        and all(len(b.get("fields", [])) <= 10 for b in blocks)
        and len(message.text) <= 4000
    )


# -- webhook mode: layout, escaping, limits -------------------------------------------------


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


def listed(message: SlackMessage) -> int:
    """How many transitions have a line of their own in the message's blocks."""
    return sum(b["text"]["text"].count("\u2022") for b in message.blocks if b["type"] == "section")


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
    """With ``watcher.charts`` the loss line has sparklines; 0.0 valid losses are skipped."""
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
    """Without ``watcher.charts`` the loss line shows first and last values only."""
    monkeypatch.setitem(sys.modules, "watcher.render.charts", None)
    message = Formatter().single(envelope(1, job={"loss_curve": [[1, 2.0, 0.0], [2, 1.0, 0.0]]}))

    assert "Loss: train `2` \u2192 `1`" in [b.get("text", {}).get("text") for b in message.blocks]


# -- webhook mode: answers --------------------------------------------------------------------


async def test_rate_limit_is_retryable_with_retry_after(slack: Slack) -> None:
    """A second message within the same second gets 429: retryable after Retry-After."""
    sink = slack.webhook_sink()
    await sink.send([envelope(1)])
    with pytest.raises(DeliveryError) as caught:
        await sink.send([envelope(2)])

    assert (True, 1.0) == (caught.value.retryable, caught.value.retry_after)
    assert 1 == len(slack.fake.webhook_messages())


async def test_server_errors_are_retryable(slack: Slack) -> None:
    """5xx from Slack is retryable."""
    slack.fake.fail_next(1, status=500, error="rollup_error")
    with pytest.raises(DeliveryError) as caught:
        await slack.webhook_sink().send([envelope(1)])

    assert caught.value.retryable
    assert "HTTP 500: rollup_error" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error", "broken"),
    [
        pytest.param(400, "invalid_blocks", False, id="invalid_blocks"),
        pytest.param(400, "invalid_payload", False, id="invalid_payload"),
        pytest.param(403, "action_prohibited", True, id="action_prohibited"),
        pytest.param(403, "invalid_token", True, id="invalid_token"),
        pytest.param(404, "no_service", True, id="no_service"),
        pytest.param(404, "channel_not_found", True, id="channel_not_found"),
        pytest.param(410, "channel_is_archived", True, id="channel_is_archived"),
    ],
)
async def test_client_errors_are_final_with_the_reason(
    slack: Slack, status: int, error: str, broken: bool
) -> None:
    """4xx answers are final, name Slack's reason, count it, and broken destinations log loudly."""
    slack.fake.break_hook(HOOK, status, error)
    sink = slack.webhook_sink()
    with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
        await sink.send([envelope(1)])

    assert not caught.value.retryable
    assert f"HTTP {status}: {error}" in str(caught.value)
    assert {error: 1} == dict(sink.final_errors)
    levels = [entry["log_level"] for entry in logs if entry.get("reason") == error]
    assert (["error"] if broken else ["warning"]) == levels


async def test_transport_errors_are_retryable(slack: Slack) -> None:
    """A refused connection is retryable."""
    sink = SlackSink("s", client=slack.client, webhook_url=Secret(closed_port_url()))
    with pytest.raises(DeliveryError) as caught:
        await sink.send([envelope(1)])

    assert caught.value.retryable


async def test_no_secret_in_errors_or_logs(slack: Slack) -> None:
    """Neither the webhook URL's token nor the bot token appears in any error or log line."""
    errors: list[str] = []
    state = MemoryState()
    with capture_logs() as logs:
        for status, error in [(404, "no_service"), (410, "channel_is_archived"), (403, "x")]:
            slack.fake.break_hook(HOOK, status, error)
            with pytest.raises(DeliveryError) as caught:
                await slack.webhook_sink().send([envelope(1)])
            errors.append(str(caught.value))
        slack.fake.repair_hook(HOOK)
        slack.fake.fail_next(1, status=429, error=f"echo {slack.hook_url}", retry_after=3)
        with pytest.raises(DeliveryError) as caught:
            await slack.webhook_sink().send([envelope(1)])
        errors.append(str(caught.value))
        for sink in (
            slack.bot_sink(state, token=Secret("xoxb-wrong-" + TOKEN)),
            slack.bot_sink(state, channel="C-NOPE"),
        ):
            with pytest.raises(DeliveryError) as caught:
                await sink.send([envelope(1)])
            errors.append(str(caught.value))
        for dead in (
            SlackSink("s", client=slack.client, webhook_url=Secret(closed_port_url())),
            slack.bot_sink(state, api_url=closed_port_url().rsplit("/hooks/", 1)[0]),
        ):
            with pytest.raises(DeliveryError) as caught:
                await dead.send([envelope(1)])
            errors.append(str(caught.value))

    assert 8 == len(errors)
    everything = "\n".join(errors) + repr(logs)
    for secret in (HOOK, "hOoKsEcReT0123456789", TOKEN, "bOtSeCrEt"):
        assert secret not in everything
    assert "<redacted>" in errors[3]


async def test_constructor_refuses_wrong_modes_without_quoting_secrets(slack: Slack) -> None:
    """Exactly one mode; bad URLs and templates are refused and no secret is quoted."""
    client = slack.client
    cases: list[dict[str, Any]] = [
        {},
        {"webhook_url": Secret("https://hooks.slack.com/" + HOOK), "token": Secret(TOKEN),
         "channel": CHANNEL},
        {"token": Secret(TOKEN)},
        {"channel": CHANNEL},
        {"webhook_url": Secret("ftp://hooks.slack.com/" + HOOK)},
        {"webhook_url": Secret("hooks.slack.com/" + HOOK)},
        {"webhook_url": Secret("https://hooks.slack.com/" + HOOK),
         "job_url_template": "https://x/{job}"},
        {"webhook_url": Secret("https://hooks.slack.com/" + HOOK), "timeout": 0},
    ]  # fmt: skip
    messages = []
    for kwargs in cases:
        with pytest.raises(ValueError, match="slack 's'") as caught:
            SlackSink("s", client=client, **kwargs)
        messages.append(str(caught.value))

    assert not any(HOOK in m or TOKEN in m for m in messages)


# -- bot mode -------------------------------------------------------------------------------


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
