"""Bot mode's cards against the fake Slack on loopback: one channel message per job, edited
in place, with buttons when interactive; edits under Slack's rate limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.sinks.slack.support import CHANNEL, MemoryState, Slack, envelope, job_id
from watcher.exceptions import DeliveryError
from watcher.sinks.slack.card import CANCEL, Buttons, read_value


def actions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = [b for b in payload.get("blocks", []) if b["type"] == "actions"]
    return blocks[0]["elements"] if blocks else []


async def test_an_interactive_card_carries_the_buttons_and_cancel_only_while_running(
    slack: Slack,
) -> None:
    sink = slack.bot_sink(MemoryState(), buttons=Buttons(interactive=True, cancel=True))
    await sink.send([envelope(1, "RUNNING", previous_status="QUEUED")])
    (card,) = slack.fake.top_level(CHANNEL)
    buttons = actions(card.payload)
    assert ["Acknowledge", "Silence 1 h", "Silence until resolved", "Cancel job"] == [
        b["text"]["text"] for b in buttons
    ]
    assert {("ft", job_id(1))} == {read_value(b["value"]) for b in buttons}
    cancel = next(b for b in buttons if b["action_id"] == CANCEL)
    assert {"title", "text", "confirm", "deny"} <= set(cancel["confirm"])

    await sink.send([envelope(1, "FAILED")])
    assert CANCEL not in {b["action_id"] for b in actions(card.payload)}  # over: no cancel
    assert 3 == len(actions(card.payload))


@pytest.mark.parametrize(
    "buttons", [None, Buttons(interactive=True)], ids=["not-interactive", "cancel-off"]
)
async def test_buttons_follow_the_config(slack: Slack, buttons: Buttons | None) -> None:
    sink = slack.bot_sink(MemoryState(), **({"buttons": buttons} if buttons else {}))
    await sink.send([envelope(1, "RUNNING", previous_status="QUEUED")])
    (card,) = slack.fake.top_level(CHANNEL)
    shown = [b["action_id"] for b in actions(card.payload)]
    assert (3 if buttons else 0) == len(shown)
    assert CANCEL not in shown


async def test_a_batch_edits_the_card_once_with_its_latest_state(slack: Slack) -> None:
    sink = slack.bot_sink(MemoryState())
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    await sink.send(
        [envelope(1, "RUNNING", previous_status="QUEUED"), envelope(1, "FAILED", id="wt_f")]
    )
    (card,) = slack.fake.top_level(CHANNEL)
    assert 1 == len(slack.fake.updates)
    assert "RUNNING \u2192 *FAILED*" in json.dumps(card.payload, ensure_ascii=False)


async def test_a_rate_limited_edit_is_retried_and_never_repost_the_reply(slack: Slack) -> None:
    """429 on chat.update: a retryable error with Slack's Retry-After; the retry edits the
    card to the latest state without posting the thread reply again."""
    sink = slack.bot_sink(MemoryState())
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    slack.fake.fail_updates(2, retry_after=3)
    batch = [envelope(1, "RUNNING", previous_status="QUEUED")]
    for _ in range(2):
        with pytest.raises(DeliveryError) as caught:
            await sink.send(batch)
        assert (True, 3.0) == (caught.value.retryable, caught.value.retry_after)
    await sink.send(batch)

    card, first, running = slack.fake.channel_messages(CHANNEL)
    assert (card.ts, card.ts) == (first.thread_ts, running.thread_ts)  # one reply each
    assert [card.ts] == [u.ts for u in slack.fake.updates]
    assert "QUEUED \u2192 *RUNNING*" in json.dumps(card.payload, ensure_ascii=False)
    assert 2 == sum(1 for r in slack.fake.rejected if r.status == 429)


async def test_a_deleted_card_is_posted_again(slack: Slack) -> None:
    state = MemoryState()
    sink = slack.bot_sink(state)
    await sink.send([envelope(1, "QUEUED", previous_status=None)])
    gone = slack.fake.top_level(CHANNEL)[0]
    slack.fake.messages.remove(gone)  # someone deleted it in Slack
    await sink.send([envelope(1, "FAILED")])
    (card,) = slack.fake.top_level(CHANNEL)
    assert "*FAILED*" in json.dumps(card.payload)
    assert card.ts == state.values[("ml-bot", f"thread:ft:{job_id(1)}")]


async def test_a_storm_of_50_jobs_leaves_50_channel_messages(slack: Slack) -> None:
    """50 jobs x 3 transitions: 50 cards, 150 thread replies, each card edited twice."""
    sink = slack.bot_sink(MemoryState(), buttons=Buttons(interactive=True, cancel=True))
    steps = [("QUEUED", None), ("RUNNING", "QUEUED"), ("SUCCESS", "RUNNING")]
    for status, before in steps:
        batch = [envelope(n, status, previous_status=before) for n in range(50)]
        for start in range(0, 50, 10):  # a few jobs per message, as the dispatcher groups
            await sink.send(batch[start : start + 10])

    cards = slack.fake.top_level(CHANNEL)
    assert 50 == len(cards)
    assert 200 == len(slack.fake.channel_messages(CHANNEL))
    assert 100 == len(slack.fake.updates)
    assert all("*SUCCESS*" in json.dumps(c.payload) for c in cards)
    assert {job_id(n) for n in range(50)} == {read_value(actions(c.payload)[0]["value"])[1]  # type: ignore[index]
                                              for c in cards}  # fmt: skip


def test_an_audit_carrying_the_job_never_becomes_the_card() -> None:
    """An action's audit carries the job as last seen (for the receivers) but tells no new
    state of it: the card keeps showing the status change."""
    from watcher.model import types
    from watcher.model.outbox import Envelope
    from watcher.model.transitions import Transition, action_taken
    from watcher.sinks.slack.card import latest

    running = Transition(
        id="t1", type="fine_tuning.job.running", source="ft", job_id="j1", status="RUNNING",
        previous_status="QUEUED", job={"id": "j1", "status": "RUNNING"},
    )  # fmt: skip
    acked = action_taken(types.ACTION_ACKNOWLEDGED, "ft", "j1", by="bob", at=1.0, key="k")
    acked = Transition.from_json({**acked.to_json(), "job": {"id": "j1", "status": "RUNNING"}})
    batch = [Envelope(running, 1.0), Envelope(acked, 2.0)]
    chosen = latest(batch)
    assert chosen is not None and chosen.transition.id == "t1"
    assert latest([Envelope(acked, 2.0)]) is None
