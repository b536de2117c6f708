"""Who did what: every sink says it for ``watcher.action.*`` (issue 13: "the webhook and
email receivers see who cancelled what"), cleaned of hostile characters."""

from __future__ import annotations

import json

from watcher.model import types
from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition, action_taken
from watcher.render.actions import action_line
from watcher.sinks.console import format_line
from watcher.sinks.email.facts import facts
from watcher.sinks.slack.blocks import Formatter

AT = 1_800_000_000.0


def cancel(ok: bool = True, by: str = "slack:alice") -> Transition:
    return action_taken(
        types.ACTION_CANCEL_REQUESTED, "ft", "job-1", by=by, at=AT, key="k",
        ok=ok, outcome="requested" if ok else "conflict", status="CANCELLATION_REQUESTED",
        message="job job-1 on ft is now CANCELLATION_REQUESTED" if ok else "cannot be cancelled",
    )  # fmt: skip


def test_each_action_says_who_and_what() -> None:
    assert "cancel requested by slack:alice: job job-1 on ft is now CANCELLATION_REQUESTED" == (
        action_line(cancel())
    )
    assert "cancel requested by slack:alice (refused): cannot be cancelled" == action_line(
        cancel(ok=False)
    )
    ack = action_taken(
        types.ACTION_ACKNOWLEDGED, "ft", "job-1", by="bob", at=AT, key="k",
        alerts=[{"rule": "stalled"}, {"rule": "overrun"}],
    )  # fmt: skip
    assert "acknowledged by bob (overrun, stalled): no more repeats until resolved" == (
        action_line(ack)
    )
    silence = {
        "id": "sil-1", "matchers": {"source": "ft", "job_id": "job-*"}, "ends_at": AT + 3600,
        "until_resolved": True, "comment": "looking",
    }  # fmt: skip
    silenced = action_taken(
        types.ACTION_SILENCED, "ft", None, by="carol", at=AT, key="k", silence=silence
    )
    line = action_line(silenced)
    assert line is not None
    assert line.startswith("silenced by carol: source=ft, job_id=job-* until 2027-01-15T09:00:00Z")
    assert "or until the job ends or its alert resolves (sil-1) - looking" in line
    ended = action_taken(
        types.ACTION_SILENCE_EXPIRED, "ft", "job-1", by="watcher", at=AT, key="k",
        silence={"id": "sil-1"}, reason="job ended",
    )  # fmt: skip
    assert "silence sil-1 ended by watcher (job ended)" == action_line(ended)
    plain = Transition(id="t", type="fine_tuning.job.failed", source="ft", status="FAILED")
    assert action_line(plain) is None


def test_hostile_names_are_cleaned() -> None:
    line = action_line(cancel(by="eve\u202e\x1b[31m\nlines"))
    assert line is not None
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line


def test_slack_email_and_console_name_who_acted() -> None:
    envelope = Envelope(cancel(), AT)
    slack = json.dumps(Formatter(None).single(envelope).payload())
    assert "cancel requested by slack:alice" in slack
    rows = dict(facts(envelope))
    assert rows["Action"].startswith("cancel requested by slack:alice")
    assert "cancel requested by slack:alice" in format_line(envelope)
