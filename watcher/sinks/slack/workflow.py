"""Slack's layout of a Workflows execution: the fields of :func:`watcher.render.workflows.rows`
as mrkdwn (identifiers as code, everything else escaped), the summary line and the compact
line of a grouped message.

A workflow name is foreign text: it is shown in code spans or escaped plain text, never
inside our own ``*bold*``, so that ``*``, ``_`` or ``~`` in it format nothing."""

from __future__ import annotations

from watcher.render import workflows
from watcher.render.workflows import WorkflowView
from watcher.sinks.slack.mrkdwn import ARROW, code, escape, fit, safe

# The failure goes in its own section (a quote), not in a field.
_BELOW = frozenset({"Failure"})


def fields(view: WorkflowView) -> list[tuple[str, str]]:
    """(name, mrkdwn value) pairs of the single layout's fields."""
    return [
        (row.name, code(row.value, 200) if row.ident else escape(row.value))
        for row in workflows.rows(view)
        if row.name not in _BELOW
    ]


def change(view: WorkflowView) -> str:
    """``RUNNING → *FAILED*`` for a status, else the fact's words (escaped)."""
    if view.status_change:
        before = safe(view.previous_status, 40) if view.previous_status else "new"
        return f"{before} {ARROW} *{safe(view.status, 40)}*"
    return safe(workflows.what(view), 120)


def summary(view: WorkflowView, ref: str, source: str) -> str:
    """``Execution `id` of `support-workflow` on *wf*: RUNNING → *FAILED*`` (escaped)."""
    name = code(view.workflow, 80) if view.workflow else "a workflow"
    text = f"Execution {ref} of {name} on *{safe(source, 40)}*: {change(view)}"
    lineage = workflows.lineage(view)
    if lineage:
        text += f" ({escape(lineage)})"
    return text


def line(view: WorkflowView, emoji: str, ref: str, source: str) -> str:
    """One compact line of a grouped message."""
    name = code(view.workflow, 40) if view.workflow else "workflow"
    parts = [f"{emoji} {ref} {name} {change(view)} \u00b7 {safe(source, 30)}"]
    if view.root is not None:
        parts.append(f" \u00b7 root {code(view.root, 40)}")
    if view.failure is not None:
        parts.append(f" \u00b7 {safe(view.failure, 160)}")
    return fit("\u2022 " + "".join(parts), 400)
