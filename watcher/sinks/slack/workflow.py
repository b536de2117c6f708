"""Slack's layout of a Workflows execution: the fields of :func:`watcher.render.workflows.rows`
as mrkdwn (identifiers as code, everything else escaped), the summary line and the compact
line of a grouped message.

A workflow name is foreign text: it is shown in code spans or escaped plain text, never
inside our own ``*bold*``, so that ``*``, ``_`` or ``~`` in it format nothing."""

from __future__ import annotations

from watcher.render import workflows
from watcher.render.workflows import WorkflowView
from watcher.sinks.slack.mrkdwn import ARROW, clean, code, escape, fit, safe

# Our own words and numbers, shown as they are; every other value is foreign text, shown
# in a code span (where ``*bold*`` formats nothing). The failure goes in its own section.
_PLAIN = frozenset({"Status", "Duration", "Attempt", "Activity attempt", "Retries"})
_BELOW = frozenset({"Failure", "Sub-workflow"})
MAX_LINE = 400  # characters of one line of a grouped message


def fields(view: WorkflowView) -> list[tuple[str, str]]:
    """(name, mrkdwn value) pairs of the single layout's fields."""
    shown = [
        (row.name, escape(row.value) if row.name in _PLAIN else code(row.value, 200))
        for row in workflows.rows(view)
        if row.name not in _BELOW
    ]
    tree = lineage(view)
    if tree is not None:
        shown.insert(next((i for i, (n, _) in enumerate(shown) if n == "Status"), 0), tree)
    return shown


def lineage(view: WorkflowView) -> tuple[str, str] | None:
    """``("Sub-workflow", "child of `p` in root `r`")``, or ``None`` for a top-level run."""
    parts = []
    if view.parent is not None:
        parts.append(f"child of {code(view.parent, workflows.MAX_ID)}")
    if view.root is not None and view.root != view.parent:
        parts.append(f"in root {code(view.root, workflows.MAX_ID)}")
    return ("Sub-workflow", " ".join(parts)) if parts else None


def failure(view: WorkflowView) -> str | None:
    """The failure message as a code block (whatever it holds formats nothing)."""
    if view.failure is None:
        return None
    text = escape(clean(view.failure, workflows.MAX_FAILURE).replace("`", "'"))
    return f"*Failure*\n```{text}```"


def change(view: WorkflowView) -> str:
    """``RUNNING → *FAILED*`` for a status, else the fact's words (escaped)."""
    if view.status_change:
        before = safe(view.previous_status, 40) if view.previous_status else "new"
        return f"{before} {ARROW} *{safe(view.status, 40)}*"
    if view.activity_fact:
        name = code(view.activity, 60) if view.activity else "an activity"
        verb = safe(view.kind.removeprefix("activity.").replace("_", " "), 40)
        attempt = f" (attempt {view.activity_attempt})" if view.activity_attempt else ""
        return f"activity {name} {verb}{attempt}"
    return safe(workflows.what(view), 120)


def headline(view: WorkflowView, emoji: str) -> str:
    """``:x: `support-workflow` RUNNING → *FAILED*``: the title as mrkdwn (the header block
    is plain text, where nothing formats)."""
    name = code(view.workflow, 80) if view.workflow else "workflow"
    return f"{emoji} {name} {change(view)}"


def summary(view: WorkflowView, ref: str, source: str) -> str:
    """``Execution `id` of `support-workflow` on *wf*: RUNNING → *FAILED*`` (escaped)."""
    name = code(view.workflow, 80) if view.workflow else "a workflow"
    text = f"Execution {ref} of {name} on *{safe(source, 40)}*: {change(view)}"
    tree = lineage(view)
    if tree is not None:
        text += f" ({tree[1]})"
    return text


def line(view: WorkflowView, emoji: str, ref: str, source: str) -> str:
    """One compact line of a grouped message."""
    name = code(view.workflow, 40) if view.workflow else "workflow"
    text = f"\u2022 {emoji} {ref} {name} {change(view)} \u00b7 {safe(source, 30)}"
    extra = [
        f" \u00b7 root {code(view.root, 40)}" if view.root is not None else "",
        f" \u00b7 {code(view.failure, 160)}" if view.failure is not None else "",
    ]
    for piece in extra:
        # Whole or not at all: a code span cut in the middle would format what follows.
        if len(text) + len(piece) <= MAX_LINE:
            text += piece
    return fit(text, MAX_LINE)
