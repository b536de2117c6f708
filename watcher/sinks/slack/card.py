"""A job's card: the one channel message (bot mode) that shows the job as it is now, edited
in place while its thread keeps the history.

The card is the single layout of the job's latest transition that carries the job
(:meth:`Formatter.single`: status, duration, the fact of the moment such as a checkpoint or
progress) and, when the sink is interactive, a Block Kit ``actions`` block: *Acknowledge*,
*Silence 1 h*, *Silence until resolved* and, when ``cancel`` is allowed and the job is not
over, *Cancel job* behind Slack's confirm dialog.

Each button's ``value`` names the job (source and id, compact JSON); :func:`read_value`
checks it on the way back, since a value comes back from Slack in a request anybody may
forge: only the signature makes it ours.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from watcher.model import types
from watcher.model.outbox import Envelope
from watcher.model.statuses import BATCH_ENDS, FINE_TUNING_ENDS, WORKFLOW_ENDS
from watcher.sinks.slack.blocks import Formatter, Message
from watcher.sinks.slack.mrkdwn import MAX_BLOCKS

MAX_VALUE = 2000  # Slack's limit on a button's value
MAX_NAME = 256  # a source name or job id longer than this is no job of ours
ENDS = FINE_TUNING_ENDS | BATCH_ENDS | WORKFLOW_ENDS

# action_id -> the button's words; the order is the buttons' order on the card.
ACKNOWLEDGE = "watcher_acknowledge"
SILENCE_HOUR = "watcher_silence_1h"
SILENCE_RESOLVED = "watcher_silence_resolved"
CANCEL = "watcher_cancel"
BUTTONS = {
    ACKNOWLEDGE: "Acknowledge",
    SILENCE_HOUR: "Silence 1 h",
    SILENCE_RESOLVED: "Silence until resolved",
    CANCEL: "Cancel job",
}


@dataclass(frozen=True)
class Buttons:
    """Which buttons cards carry: none unless the sink is interactive; *Cancel job* only
    when allowed."""

    interactive: bool = False
    cancel: bool = False


def value_of(source: str, job_id: str) -> str | None:
    """The buttons' value for the job, or ``None`` when it cannot fit Slack's limit."""
    value = json.dumps({"source": source, "job_id": job_id}, separators=(",", ":"))
    return value if len(value) <= MAX_VALUE else None


def read_value(value: object) -> tuple[str, str] | None:
    """(source, job id) from a button's value, or ``None`` if it is not one of ours."""
    if not isinstance(value, str) or len(value) > MAX_VALUE:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"source", "job_id"}:
        return None
    source, job_id = data["source"], data["job_id"]
    for item in (source, job_id):
        if not isinstance(item, str) or not 0 < len(item) <= MAX_NAME or not item.isprintable():
            return None
    return source, job_id


def latest(envelopes: Sequence[Envelope]) -> Envelope | None:
    """The last of ``envelopes`` that tells the job's own state (not an action's audit,
    which goes to the thread only, even when it carries the job as last seen): what the
    card shows."""
    for envelope in reversed(envelopes):
        transition = envelope.transition
        if transition.job and transition.type not in types.ACTIONS:
            return envelope
    return None


def is_over(envelope: Envelope) -> bool:
    transition = envelope.transition
    status = transition.status or transition.job.get("status")
    return isinstance(status, str) and status in ENDS


def actions_block(source: str, job_id: str, *, cancel: bool) -> dict[str, Any] | None:
    """The ``actions`` block of a job's card (``None`` when its value cannot fit)."""
    value = value_of(source, job_id)
    if value is None:
        return None
    elements: list[dict[str, Any]] = []
    for action_id, words in BUTTONS.items():
        if action_id == CANCEL and not cancel:
            continue
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": words},
            "value": value,
        }
        if action_id == CANCEL:
            button["style"] = "danger"
            button["confirm"] = {
                "title": {"type": "plain_text", "text": "Cancel this job?"},
                "text": {"type": "plain_text", "text": "The job stops and cannot be resumed."},
                "confirm": {"type": "plain_text", "text": "Cancel job"},
                "deny": {"type": "plain_text", "text": "Keep it running"},
                "style": "danger",
            }
        elements.append(button)
    return {"type": "actions", "block_id": "watcher_job_actions", "elements": elements}


def card(formatter: Formatter, envelope: Envelope, buttons: Buttons) -> Message:
    """The card of the job ``envelope`` is about, showing it as ``envelope`` saw it."""
    message = formatter.single(envelope)
    transition = envelope.transition
    if not buttons.interactive or transition.job_id is None:
        return message
    block = actions_block(
        transition.source,
        transition.job_id,
        cancel=buttons.cancel and not is_over(envelope),
    )
    if block is None:
        return message
    blocks = list(message.blocks)
    while len(blocks) >= MAX_BLOCKS:  # room for the buttons: drop a fact, keep the context
        del blocks[-2]
    blocks.insert(len(blocks) - 1, block)  # above the closing context (id and time)
    return Message(text=message.text, blocks=blocks)
