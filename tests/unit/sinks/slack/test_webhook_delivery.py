"""SlackSink in incoming-webhook mode: the retry verdict of every answer, and no secret
leaks."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.unit.sinks.slack.support import (
    CHANNEL,
    HOOK,
    TOKEN,
    MemoryState,
    Slack,
    closed_port_url,
    envelope,
)
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.sinks.slack import SlackSink


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
