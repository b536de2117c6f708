"""The email of a batch: subject, thread headers, plain text and HTML parts."""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import html
import re
from collections.abc import Sequence
from email.message import EmailMessage

from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition
from watcher.render.links import JobLinks
from watcher.render.templates import MessageTemplates
from watcher.render.text import ELLIPSIS
from watcher.sinks.email.facts import clean, facts, label, sparklines, svg_for, tag

MAX_SUBJECT = 200  # characters; longer subjects are cut with an ellipsis
MAX_SECTIONS = 50  # transitions detailed in one message; the rest are counted
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _token(value: object, limit: int = 64) -> str:
    """A Message-ID-safe token (``[A-Za-z0-9._-]``) of at most ``limit`` characters."""
    token = _ID_UNSAFE.sub("-", str(value)).strip(".-")
    token = re.sub(r"\.{2,}", ".", token)[:limit].strip(".-")
    return token or "x"


def _digest(*parts: object) -> str:
    # surrogatepass: ids that differ only in lone surrogates must not share a digest.
    raw = "\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


def message_id(batch: Sequence[Envelope]) -> str:
    """``<{transition_id}@watcher>``; a group adds its size and a hash of all its ids."""
    first = _token(batch[0].transition.id)
    if len(batch) == 1:
        return f"<{first}@watcher>"
    ids = _digest(*(e.transition.id for e in batch))[:12]
    return f"<{first}.{len(batch)}.{ids}@watcher>"


def thread_root(transition: Transition) -> str:
    """The never-sent message every message of one job refers to (one thread per job)."""
    source = _token(transition.source, 40)
    if transition.job_id is None:
        return f"<source.{source}@watcher>"
    job = _token(transition.job_id, 80)
    if job != transition.job_id:  # sanitizing may merge ids: keep them apart
        job = f"{job[:60]}.{_digest(transition.job_id)[:10]}"
    return f"<job.{source}.{job}@watcher>"


def default_subject(batch: Sequence[Envelope]) -> str:
    """``[FAILED] ft:open-mistral-7b:… (support-bot)``; a group: ``[3 FAILED, 1 CANCELLED]
    4 jobs``."""
    transitions = [e.transition for e in batch]
    if len(transitions) == 1:
        return f"[{tag(transitions[0])}] {label(transitions[0])}"
    counts: dict[str, int] = {}
    for transition in transitions:
        key = tag(transition)
        counts[key] = counts.get(key, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])  # stable: first seen first
    tags = ", ".join(f"{count} {name}" for name, count in ordered)
    jobs = {(t.source, t.job_id) for t in transitions if t.job_id is not None}
    if jobs:
        what = f"{len(jobs)} job" + ("" if len(jobs) == 1 else "s")
    else:
        what = f"{len(transitions)} notifications"
    return f"[{tags}] {what}"


def _sections(batch: Sequence[Envelope]) -> tuple[list[Envelope], int]:
    shown = list(batch[:MAX_SECTIONS])
    return shown, len(batch) - len(shown)


def _last_of_job(batch: Sequence[Envelope]) -> set[int]:
    """Indexes of each job's last transition in the batch (where its chart goes)."""
    last: dict[tuple[str, str | None], int] = {}
    for index, envelope in enumerate(batch):
        last[(envelope.transition.source, envelope.transition.job_id)] = index
    return set(last.values())


def render_text(batch: Sequence[Envelope], links: JobLinks | None = None) -> str:
    """The plain text part: per transition a heading and its facts, one per line."""
    shown, hidden = _sections(batch)
    charted = _last_of_job(shown)
    blocks = []
    for index, envelope in enumerate(shown):
        transition = envelope.transition
        rows = facts(envelope, links)
        if index in charted:
            rows += sparklines(transition.job)
        width = max(len(name) for name, _ in rows) + 2
        lines = [f"[{tag(transition)}] {label(transition)}", ""]
        lines += [f"{name + ':':<{width}}{value}" for name, value in rows]
        blocks.append("\n".join(lines))
    if hidden:
        blocks.append(f"{ELLIPSIS} and {hidden} more")
    return "\n\n".join(blocks) + "\n\n-- \nSent by watcher.\n"


_TH = "text-align:left;vertical-align:top;padding:2px 12px 2px 0;color:#666;font-weight:normal"
_TD = "vertical-align:top;padding:2px 0"


def render_html(batch: Sequence[Envelope], subject: str, links: JobLinks | None = None) -> str:
    """The HTML part: per transition a heading, a compact table of facts and, when the job
    has a loss curve and the chart module is there, an inline SVG chart."""
    esc = html.escape
    shown, hidden = _sections(batch)
    charted = _last_of_job(shown)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(subject)}</title></head>",
        '<body style="font-family:sans-serif;font-size:14px;color:#222">',
    ]
    for index, envelope in enumerate(shown):
        transition = envelope.transition
        parts.append(
            '<h2 style="font-size:15px;margin:16px 0 6px">'
            f"[{esc(tag(transition))}] {esc(label(transition))}</h2>"
        )
        parts.append('<table style="border-collapse:collapse">')
        for name, value in facts(envelope, links):
            cell = esc(value)
            if name == "Link" and value.startswith(("https://", "http://")):
                cell = f'<a href="{esc(value)}">{esc(value)}</a>'
            parts.append(
                f'<tr><th style="{_TH}">{esc(name)}</th><td style="{_TD}">{cell}</td></tr>'
            )
        parts.append("</table>")
        if index in charted:
            svg = svg_for(transition.job)
            if svg is not None:
                parts.append(f'<div style="margin:8px 0">{svg}</div>')
    if hidden:
        parts.append(f"<p>{ELLIPSIS} and {hidden} more</p>")
    parts.append('<p style="color:#888;font-size:12px">Sent by watcher.</p></body></html>')
    return "\n".join(parts) + "\n"


def _encodable(text: str) -> str:
    """``text`` as valid UTF-8 (lone surrogates from hostile strings replaced)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def compose(
    batch: Sequence[Envelope],
    *,
    sender: str,
    recipients: Sequence[str],
    templates: MessageTemplates | None = None,
    links: JobLinks | None = None,
    now: float | None = None,
) -> EmailMessage:
    """The message for ``batch`` (``ValueError`` when a user template fails)."""
    subject = templates.render("subject", batch) if templates else None
    subject = clean(subject if subject else default_subject(batch), MAX_SUBJECT)
    text = templates.render("text", batch) if templates else None
    if text is None:
        text = render_text(batch, links)
    body = templates.render("html", batch) if templates else None
    if body is None:
        body = render_html(batch, subject, links)

    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = subject or "watcher"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.formatdate(now, usegmt=True)
    message["Message-ID"] = message_id(batch)
    roots = list(dict.fromkeys(thread_root(e.transition) for e in batch))
    if len(roots) == 1:  # a group spanning several jobs starts its own thread
        message["In-Reply-To"] = roots[0]
        message["References"] = roots[0]
    ids = [_token(e.transition.id) for e in batch[:20]]
    message["X-Watcher-Transition"] = " ".join(ids) + (
        f" (+{len(batch) - len(ids)})" if len(batch) > len(ids) else ""
    )
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    # Quoted-printable: safe through any server, with or without 8BITMIME.
    message.set_content(_encodable(text), cte="quoted-printable")
    message.add_alternative(_encodable(body), subtype="html", cte="quoted-printable")
    return message
