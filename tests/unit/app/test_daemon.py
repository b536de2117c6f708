"""The daemon's own plumbing: scheduled actions survive their errors; digests chain."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from watcher.app.daemon import Watcher
from watcher.app.scheduling import _answer
from watcher.config import validate_config
from watcher.model.transitions import rfc3339


async def test_a_failing_scheduled_action_does_not_stop_the_daemon() -> None:
    """An action that raises is logged; the next tick runs it again."""
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")

    send, receive = anyio.create_memory_object_stream[None](2)
    with anyio.fail_after(5):
        async with send:
            send.send_nowait(None)
            send.send_nowait(None)
        await _answer(receive, flaky)
    assert 2 == calls


async def test_digests_cover_the_time_since_the_previous_one(tmp_path: Path) -> None:
    """The second digest starts where the first ended, whatever the configured period."""
    config = validate_config(
        {
            "sources": [
                {
                    "name": "ft",
                    "kind": "mistral-fine-tuning",
                    "base_url": "http://127.0.0.1:9",
                    "api_key": "k",
                }
            ],
            "state": {"url": f"sqlite:///{tmp_path}/state.db"},
            "sinks": [{"name": "console", "kind": "console"}],
            "digest": {"cron": "0 9 * * MON-FRI", "period": "1h", "sinks": ["console"]},
        },
        env={},
    )
    first, second = time.time() - 7200, time.time() - 60
    async with Watcher(config) as watcher:
        await watcher.send_digest(first)
        await watcher.send_digest(second)
        found = await watcher.store.transitions_between(0, time.time() + 1)
    digests = [t.details["digest"] for t, _ in found if t.type == "watcher.digest"]
    assert rfc3339(first - 3600) == digests[0]["from"]
    assert (rfc3339(first), rfc3339(second)) == (digests[1]["from"], digests[1]["to"])
