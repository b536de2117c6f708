"""What the Slack sink's tests share: the fake Slack wired to a sink, envelopes, readers of
a received message."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from tests.factories import sink_envelope, sink_job
from tests.fakes.slack import FakeSlack, SlackMessage
from watcher.abc import SinkState
from watcher.app.httpserver import bind
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition
from watcher.sinks.slack import SlackSink

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


def closed_port_url() -> str:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/hooks/{HOOK}"


def job_id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def envelope(n: int = 1, status: str | None = "FAILED", **overrides: Any) -> Envelope:
    """Job number ``n`` entering ``status`` (``None``: a fact that is no status change)."""
    job = sink_job(
        id=job_id(n),
        status=status or "RUNNING",
        created_at=CREATED,
        modified_at=CREATED + 9000,
        metadata={"cost": 4.1, "cost_currency": "EUR"},
    )
    fields: dict[str, Any] = {
        "id": f"wt_{n:04d}_{status}",
        "type": f"fine_tuning.job.{(status or 'event').lower()}",
        "job_id": job_id(n),
        "status": status,
        "previous_status": "RUNNING" if status else None,
        "occurred_at": CREATED + 9000,
        "job": job | overrides.pop("job", {}),
    }
    return sink_envelope(detected_at=NOW, **(fields | overrides))


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


def listed(message: SlackMessage) -> int:
    """How many transitions have a line of their own in the message's blocks."""
    return sum(b["text"]["text"].count("\u2022") for b in message.blocks if b["type"] == "section")
