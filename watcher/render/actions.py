"""What a ``watcher.action.*`` transition says, in one plain line: who did what, and how it
went. One home for every sink (Slack, email, the console) and the page: a receiver must
see who cancelled what, not "action cancel requested".

Plain text, cleaned (no control or bidi characters, bounded); each sink escapes it for its
own markup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcher.model import types
from watcher.model.transitions import Transition, rfc3339
from watcher.render.text import clean, finite


def action_line(transition: Transition) -> str | None:
    """``cancel requested by alice: job j1 is now CANCELLATION_REQUESTED``, or ``None`` for
    a transition that is not an action."""
    kind = transition.type
    if kind not in types.ACTIONS:
        return None
    details = transition.details
    by = clean(details.get("by"), 80) or "someone"
    if kind == types.ACTION_CANCEL_REQUESTED:
        said = clean(details.get("message"), 240)
        verdict = "" if details.get("ok") is not False else " (refused)"
        return f"cancel requested by {by}{verdict}" + (f": {said}" if said else "")
    if kind == types.ACTION_ACKNOWLEDGED:
        rules = sorted(
            {clean(a.get("rule"), 40) for a in _list(details.get("alerts")) if a.get("rule")}
        )
        which = f" ({', '.join(rules)})" if rules else ""
        return f"acknowledged by {by}{which}: no more repeats until resolved"
    silence = _mapping(details.get("silence"))
    ident = clean(silence.get("id"), 40)
    if kind == types.ACTION_SILENCED:
        matchers = _mapping(silence.get("matchers"))
        what = ", ".join(f"{clean(k, 30)}={clean(v, 80)}" for k, v in matchers.items())
        ends = finite(silence.get("ends_at"))
        until = [f"until {rfc3339(ends)}"] if ends is not None else []
        if silence.get("until_resolved"):
            until.append("until the job ends or its alert resolves")
        comment = clean(silence.get("comment"), 160)
        line = f"silenced by {by}: {what or 'everything'} {' or '.join(until)}".rstrip()
        return f"{line} ({ident})" + (f" - {comment}" if comment else "")
    reason = clean(details.get("reason"), 60)
    return f"silence {ident} ended by {by}" + (f" ({reason})" if reason else "")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []
