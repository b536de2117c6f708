"""The optional sink protocols: which sinks preview without sending, which count final errors."""

from __future__ import annotations

import io
from typing import Any

import httpx2 as httpx
import pytest

from tests.factories import sink_envelope
from watcher.abc import CountsFinalErrors, Previews
from watcher.model.secrets import Secret
from watcher.sinks.console import ConsoleSink, format_line
from watcher.sinks.email import EmailSink
from watcher.sinks.pagerduty import PagerDutySink
from watcher.sinks.slack import SlackSink
from watcher.sinks.webhook import WebhookSink

CLIENT = httpx.AsyncClient()
ROUTING_KEY = "R0UTINGkey0123456789abcdef012345"


def sinks() -> dict[str, Any]:
    return {
        "console": ConsoleSink("co", io.StringIO()),
        "slack": SlackSink("sl", client=CLIENT, webhook_url=Secret("https://h.example/T/B/x")),
        "email": EmailSink(
            "em",
            host="smtp.example",
            port=587,
            tls="starttls",
            sender="w@x.org",
            recipients=["o@x.org"],
        ),
        "pagerduty": PagerDutySink("pd", client=CLIENT, routing_key=Secret(ROUTING_KEY)),
        "webhook": WebhookSink("wh", "https://h.example/x", secret=None, client=CLIENT),
    }


@pytest.mark.parametrize(
    ("kind", "previews", "counts"),
    [
        ("console", True, False),
        ("slack", True, True),
        ("email", True, False),
        ("pagerduty", True, False),
        ("webhook", False, False),
    ],
)
def test_which_sink_says_what(kind: str, previews: bool, counts: bool) -> None:
    """Each sink declares through the protocols what the CLI and the metrics may use."""
    sink = sinks()[kind]

    assert (previews, counts) == (isinstance(sink, Previews), isinstance(sink, CountsFinalErrors))


def test_slack_preview_is_the_composed_payload() -> None:
    """Slack previews the Block Kit payload it would post."""
    sink = sinks()["slack"]
    batch = [sink_envelope()]

    assert sink.compose(batch).payload() == sink.preview(batch)


def test_pagerduty_preview_hides_the_routing_key() -> None:
    """PagerDuty previews its event with the routing key replaced."""
    preview = sinks()["pagerduty"].preview([sink_envelope()])

    assert ("<secret>", "trigger") == (preview["routing_key"], preview["event_action"])
    assert ROUTING_KEY not in repr(preview)


def test_pagerduty_preview_of_a_transition_it_ignores() -> None:
    """A transition PagerDuty would not hear about previews as a sentence."""
    running = sink_envelope(status="RUNNING", type="fine_tuning.job.running")

    expected = "(not sent: PagerDuty only hears about failures, stalls and their ends)"
    assert expected == sinks()["pagerduty"].preview([running])


def test_email_and_console_preview_as_text() -> None:
    """Email previews its message source, the console its lines."""
    batch = [sink_envelope()]
    email = sinks()["email"].preview(batch)

    assert (True, format_line(batch[0])) == (
        email.startswith("Subject: [FAILED]"),
        sinks()["console"].preview(batch),
    )
