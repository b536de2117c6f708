"""Slack's limits and keys (issue 15, items 13 and 14): every hostile shape goes through
the strict fake Slack (webhook and bot card, with buttons) within Block Kit's limits; ids
that differ only in invisible characters get two threads; nothing holds a lone surrogate."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.hostile_shapes import SHAPES
from tests.unit.sinks.slack.support import MemoryState, Slack, envelope, within_limits
from watcher.model.outbox import Envelope
from watcher.sinks.slack.card import Buttons


def shaped(shape: str, n: int = 1) -> Envelope:
    job_fields, details = SHAPES[shape]
    base = envelope(n)
    transition = replace(
        base.transition,
        job={**base.transition.job, **job_fields},
        details={**base.transition.details, **details},
    )
    return replace(base, transition=transition)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
async def test_every_shape_is_posted_within_slacks_limits(slack: Slack, shape: str) -> None:
    await slack.webhook_sink().send([shaped(shape)])
    await slack.bot_sink(MemoryState(), buttons=Buttons(interactive=True, cancel=True)).send(
        [shaped(shape, 2)]
    )
    messages = slack.fake.webhook_messages() + slack.fake.channel_messages()
    assert not slack.fake.rejected
    assert len(messages) >= 2 and all(within_limits(m) for m in messages)
    for message in messages:
        assert b"\\ud8" not in message.body and b"\\udc" not in message.body


async def test_invisible_twins_get_two_threads(slack: Slack) -> None:
    state = MemoryState()
    sink = slack.bot_sink(state)
    twins = ["job-1", "job\u200b-1", "job\u00a0-1", "job-1\ud800"]
    for n, job_id in enumerate(twins):
        await sink.send([replace(envelope(n), transition=replace(envelope(n).transition,
                                                                   job_id=job_id))])  # fmt: skip
    keys = [key for (_, key) in state.values]
    assert len(twins) == len(set(keys))
    assert "thread:ft:job-1" in keys  # a plain id keeps the key it always had
    for key in keys:
        key.encode("utf-8")  # storable: no lone surrogate
    assert not slack.fake.rejected
