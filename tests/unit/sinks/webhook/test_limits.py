"""The webhook's ``max_body`` (issue 15, items 13 and 14): every hostile shape is sent
within it, trimmed and marked ``data.truncated``, still valid against ``watcher schema
events``; a strict receiver on loopback accepts every body (valid UTF-8, no surrogate)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx
import jsonschema
import pytest

from tests.factories import sink_config
from tests.hostile_shapes import SHAPES
from tests.unit.sinks.webhook.support import SECRET, envelope, make_sink, recorder
from tests.unit.sinks.workflow_cases import workflow
from watcher.app.httpserver import serve_app
from watcher.cli.schema import events_schema
from watcher.config.sinks import WebhookSinkConfig
from watcher.devtools.receiver import Receiver
from watcher.exceptions import ConfigError
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.sinks.webhook import DEFAULT_MAX_BODY, WebhookSink

SCHEMA = events_schema()


def shaped(base: Envelope, shape: str) -> Envelope:
    job_fields, details = SHAPES[shape]
    transition = base.transition
    transition = replace(
        transition, job={**transition.job, **job_fields}, details={**transition.details, **details}
    )
    return replace(base, transition=transition)


@pytest.mark.parametrize("max_body", [DEFAULT_MAX_BODY, 4096])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_every_shape_fits_max_body_and_the_schema(shape: str, max_body: int) -> None:
    seen, handler = recorder()
    for base in (envelope(), workflow("workflow_failed")):
        await make_sink(handler, max_body=max_body).send([shaped(base, shape)])
    for request, base in zip(seen, (envelope(), workflow("workflow_failed")), strict=True):
        body = request.content
        assert len(body) <= max_body
        payload = json.loads(body.decode("utf-8"))
        jsonschema.validate(payload, SCHEMA)
        assert b"\\ud" not in body
        data = payload["data"]
        assert base.transition.job_id == data["job"]["id"]
        if data.get("truncated"):
            assert data["source"] == base.transition.source


async def test_a_small_body_is_sent_whole_without_a_marker() -> None:
    seen, handler = recorder()
    await make_sink(handler, max_body=4096).send([envelope()])
    assert "truncated" not in json.loads(seen[0].content)["data"]


def test_max_body_is_configurable_and_checked(tmp_path: Path) -> None:
    hook = {"kind": "webhook", "url": "https://x.example/h"}
    config = sink_config(tmp_path, hook)
    assert isinstance(config, WebhookSinkConfig) and DEFAULT_MAX_BODY == config.max_body
    small = sink_config(tmp_path, hook | {"max_body": 8192})
    assert isinstance(small, WebhookSinkConfig) and 8192 == small.max_body
    with pytest.raises(ConfigError, match="max_body"):
        sink_config(tmp_path, hook | {"max_body": 10})


async def test_a_strict_receiver_accepts_every_hostile_body() -> None:
    """Through the wire: the signed, trimmed, surrogate-free bodies all verify and are
    accepted by a receiver that refuses invalid UTF-8 and lone surrogates."""
    receiver = Receiver(SECRET)
    shapes = ("lone surrogates", "long suffix", "thousands of metadata keys")
    async with serve_app(receiver.app) as url, httpx.AsyncClient() as client:
        sink = WebhookSink(
            "hooks", f"{url}/in", secret=Secret(SECRET), client=client, max_body=64 * 1024
        )
        for n, shape in enumerate(shapes):
            await sink.send([shaped(envelope(f"wt_{n}"), shape)])
    assert [True] * len(shapes) == [r.accepted for r in receiver.received]
    assert all(len(r.body) <= 64 * 1024 for r in receiver.received)
