"""Email sink: one multipart/alternative message (plain text + HTML) per batch, over SMTP.

Every value shown comes from a foreign API and is treated as hostile: headers only ever carry
one line of printable text (control, format and separator characters become spaces, lengths
are capped), so that a suffix such as ``"bot\\r\\nBcc: x@example.com"`` cannot add a header;
the HTML part escapes every value. The envelope recipients are the configured ones only,
never read back from the message.

Threading: ``Message-ID`` derives from the transition id (stable across re-sends), and
``In-Reply-To``/``References`` name a per-job root (``<job.{source}.{job_id}@watcher>``) that
is never sent itself, so that mail clients gather one job's messages under one thread.

Transport security is what the config says, never less: ``starttls`` refuses to send when
the server does not offer STARTTLS (no plaintext fallback), ``tls`` is implicit TLS, and
``none`` (explicit only) sends in plaintext. The password never appears in a log or an
error: server replies are scrubbed of it before they are quoted.
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import email.utils
import hashlib
import html
import importlib
import ipaddress
import math
import re
import ssl
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import quote

import aiosmtplib
import anyio
import structlog

from watcher.abc import Envelope
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition, rfc3339
from watcher.render.templates import MessageTemplates

log = structlog.get_logger(__name__)

TlsMode = Literal["starttls", "tls", "none"]

MAX_SUBJECT = 200  # characters; longer subjects are cut with an ellipsis
MAX_SECTIONS = 50  # transitions detailed in one message; the rest are counted
MAX_ROWS = 60  # facts per transition
DEADLINE_FACTOR = 4  # the whole exchange may take this many times the per-command timeout
_EXCERPT_CHARS = 200
_QUIT_SECONDS = 5.0
_REDACTED = "<redacted>"
_ELLIPSIS = "\u2026"
_ARROW = "\u2192"
_WHITESPACE = re.compile(r"\s+")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TYPE_PREFIXES = ("fine_tuning.job.", "batch.job.", "watcher.")
_COUNTERS = ("total_requests", "completed_requests", "succeeded_requests", "failed_requests")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def clean(value: object, limit: int = 120) -> str:
    """``value`` as one line of printable text of at most ``limit`` characters.

    Control (C0, C1, DEL, lone surrogates), format (bidi overrides, zero-width) and separator
    characters become spaces, runs of whitespace one space.
    """
    text = str(value)
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in text
    )
    cleaned = _WHITESPACE.sub(" ", cleaned).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: max(limit - 1, 0)].rstrip() + _ELLIPSIS
    return cleaned


def _token(value: object, limit: int = 64) -> str:
    """A Message-ID-safe token (``[A-Za-z0-9._-]``) of at most ``limit`` characters."""
    token = _ID_UNSAFE.sub("-", str(value)).strip(".-")
    token = re.sub(r"\.{2,}", ".", token)[:limit].strip(".-")
    return token or "x"


def _digest(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8", "replace")).hexdigest()


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


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return f"{value:.4g}"
    return clean(value, 40)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _first_finite(*values: Any) -> float | None:
    return next((n for n in map(_finite, values) if n is not None), None)


def _duration(seconds: float) -> str:
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _time(value: Any) -> str | None:
    number = _finite(value)
    if number is None:
        return None
    try:
        return rfc3339(number)
    except (OverflowError, OSError, ValueError):
        return None


def tag(transition: Transition) -> str:
    """``FAILED`` for a status change, else the type's own words: ``STALLED``,
    ``CHECKPOINT``, ``MODEL READY``, ``SOURCE RETIRED``."""
    if transition.status is not None:
        return clean(transition.status, 40).upper() or "UNKNOWN"
    kind = transition.type
    for prefix in _TYPE_PREFIXES:
        if kind.startswith(prefix):
            kind = kind[len(prefix) :]
            break
    return clean(re.sub(r"[._]+", " ", kind), 40).upper() or "EVENT"


def label(transition: Transition) -> str:
    """The fine-tuned model, else the model, else the job id; then the suffix in brackets."""
    job = transition.job
    name = job.get("fine_tuned_model") or job.get("model") or transition.job_id
    text = clean(name, 80) if name else ""
    suffix = job.get("suffix")
    if suffix:
        text = f"{text} ({clean(suffix, 40)})".strip()
    if not text:
        text = clean(transition.source, 40)
    return text


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


def facts(envelope: Envelope, job_url_template: str | None = None) -> list[tuple[str, str]]:
    """The (label, value) rows that describe one transition, each value one clean line."""
    transition = envelope.transition
    job = transition.job
    details = transition.details
    rows: list[tuple[str, str]] = []

    def add(name: str, value: Any, limit: int = 160) -> None:
        if value is None or value == "" or len(rows) >= MAX_ROWS:
            return
        text = value if isinstance(value, str) else _number(value)
        rows.append((name, clean(text, limit)))

    add("Source", transition.source, 80)
    add("Job", transition.job_id or job.get("id"), 120)
    add("Model", job.get("model"))
    add("Suffix", job.get("suffix"), 80)
    add("Job type", job.get("job_type"), 60)
    add("Endpoint", job.get("endpoint"), 80)
    if transition.status is not None:
        before = clean(transition.previous_status, 40) if transition.previous_status else "new"
        add("Status", f"{before} {_ARROW} {clean(transition.status, 40)}")
    elif job.get("status"):
        add("Job status", job.get("status"), 40)
    if transition.occurred_at is not None:
        add("Occurred", _time(transition.occurred_at))
    else:
        add("Detected", _time(envelope.detected_at))
    if transition.status is not None:
        start = _first_finite(job.get("started_at"), job.get("created_at"))
        end = _first_finite(job.get("completed_at"), transition.occurred_at)
        if start is not None and end is not None and end >= start:
            add("Duration", _duration(end - start))
    add("Fine-tuned model", details.get("fine_tuned_model") or job.get("fine_tuned_model"), 200)
    add("Trained tokens", job.get("trained_tokens"))
    metadata = job.get("metadata")
    if isinstance(metadata, Mapping):
        cost = metadata.get("cost")
        if cost is not None:
            currency = metadata.get("cost_currency")
            add("Cost", f"{_number(cost)} {clean(currency, 8)}" if currency else cost)
        expected = _finite(metadata.get("expected_duration_seconds"))
        if expected is not None and expected >= 0:
            add("Expected duration", _duration(expected))
    if any(name in job for name in _COUNTERS):
        add(
            "Requests",
            ", ".join(
                f"{name.removesuffix('_requests')} {_number(job.get(name))}"
                for name in _COUNTERS
                if job.get(name) is not None
            ),
        )
    errors = job.get("errors")
    if isinstance(errors, list):
        for item in errors[:3]:
            if isinstance(item, Mapping) and item.get("message"):
                count = item.get("count")
                suffix = f" (\u00d7{_number(count)})" if count not in (None, 1) else ""
                add("Error", f"{clean(item['message'], 200)}{suffix}", 220)
    checkpoint = details.get("checkpoint")
    if isinstance(checkpoint, Mapping):
        add("Checkpoint step", checkpoint.get("step_number"))
        metrics = checkpoint.get("metrics")
        if isinstance(metrics, Mapping):
            for key, value in list(metrics.items())[:10]:
                add(clean(key, 40), "-" if value is None else value)
    progress = details.get("progress")
    if isinstance(progress, Mapping):
        add(
            "Progress",
            f"{_number(progress.get('percent'))}% ({_number(progress.get('processed'))}/"
            f"{_number(progress.get('total'))} requests)",
        )
    ratio = _finite(details.get("failed_ratio"))
    if ratio is not None:
        add("Failed share", f"{ratio:.1%}")
    alert = details.get("alert")
    if isinstance(alert, Mapping):
        for key, value in list(alert.items())[:10]:
            if value is not None and not isinstance(value, Mapping | list):
                add(f"Alert {clean(key, 40)}", value)
    event = details.get("event")
    if isinstance(event, Mapping) and event.get("name"):
        add("Event", event.get("name"), 80)
    add("Reason", details.get("reason"), 300)
    add("Since", details.get("since"), 40)
    if job_url_template and transition.job_id:
        add("Link", job_url(job_url_template, transition), 500)
    add("Transition", transition.id, 80)
    return rows


def job_url(template: str, transition: Transition) -> str:
    """The configured link with ``{job_id}`` and ``{source}`` percent-encoded into it."""
    return template.replace("{job_id}", quote(transition.job_id or "", safe="")).replace(
        "{source}", quote(transition.source, safe="")
    )


def loss_series(job: Mapping[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """``{"train_loss": [(step, loss), …], "valid_loss": …}`` from the view's ``loss_curve``
    (malformed points and non-finite values skipped; empty series dropped)."""
    series: dict[str, list[tuple[float, float]]] = {"train_loss": [], "valid_loss": []}
    curve = job.get("loss_curve")
    if not isinstance(curve, list):
        return {}
    for point in curve:
        if not isinstance(point, list | tuple) or len(point) < 2:
            continue
        step = _finite(point[0])
        if step is None:
            continue
        for index, name in ((1, "train_loss"), (2, "valid_loss")):
            value = _finite(point[index]) if len(point) > index else None
            if value is not None:
                series[name].append((step, value))
    return {name: points for name, points in series.items() if points}


def _chart_function(name: str) -> Callable[..., Any] | None:
    """``watcher.charts.<name>`` when that module is there (charts are optional)."""
    try:
        module = importlib.import_module("watcher.render.charts")
    except ImportError:
        return None
    function = getattr(module, name, None)
    return function if callable(function) else None


def svg_for(job: Mapping[str, Any]) -> str | None:
    """An inline ``<svg>`` loss chart, or ``None`` (no curve, no chart module, or it failed:
    a chart is never a reason not to send the alert)."""
    series = loss_series(job)
    draw = _chart_function("svg_chart")
    if not series or draw is None:
        return None
    try:
        svg = draw(series)
    except Exception:  # a chart bug must not block the alert
        log.warning("email_chart_failed", exc_info=True)
        return None
    if not isinstance(svg, str):
        return None
    stripped = svg.strip()
    lowered = stripped.lower()
    if not lowered.startswith("<svg") or not lowered.endswith("</svg>") or "<script" in lowered:
        return None
    return stripped


def sparklines(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``("Train loss", "█▆▄▃▂ 2.31 → 1.28")`` rows for the text part (when available)."""
    series = loss_series(job)
    spark = _chart_function("sparkline")
    if not series or spark is None:
        return []
    rows = []
    for name, points in series.items():
        values = [value for _, value in points]
        try:
            line = spark(values)
        except Exception:  # a chart bug must not block the alert
            log.warning("email_chart_failed", exc_info=True)
            return []
        if not isinstance(line, str):
            return []
        title = name.replace("_", " ").capitalize()
        trend = f"{_number(values[0])} {_ARROW} {_number(values[-1])}"
        rows.append((title, f"{clean(line, 200)} {trend}"))
    return rows


def _sections(batch: Sequence[Envelope]) -> tuple[list[Envelope], int]:
    shown = list(batch[:MAX_SECTIONS])
    return shown, len(batch) - len(shown)


def _last_of_job(batch: Sequence[Envelope]) -> set[int]:
    """Indexes of each job's last transition in the batch (where its chart goes)."""
    last: dict[tuple[str, str | None], int] = {}
    for index, envelope in enumerate(batch):
        last[(envelope.transition.source, envelope.transition.job_id)] = index
    return set(last.values())


def render_text(batch: Sequence[Envelope], job_url_template: str | None = None) -> str:
    """The plain text part: per transition a heading and its facts, one per line."""
    shown, hidden = _sections(batch)
    charted = _last_of_job(shown)
    blocks = []
    for index, envelope in enumerate(shown):
        transition = envelope.transition
        rows = facts(envelope, job_url_template)
        if index in charted:
            rows += sparklines(transition.job)
        width = max(len(name) for name, _ in rows) + 2
        lines = [f"[{tag(transition)}] {label(transition)}", ""]
        lines += [f"{name + ':':<{width}}{value}" for name, value in rows]
        blocks.append("\n".join(lines))
    if hidden:
        blocks.append(f"{_ELLIPSIS} and {hidden} more")
    return "\n\n".join(blocks) + "\n\n-- \nSent by watcher.\n"


_TH = "text-align:left;vertical-align:top;padding:2px 12px 2px 0;color:#666;font-weight:normal"
_TD = "vertical-align:top;padding:2px 0"


def render_html(
    batch: Sequence[Envelope], subject: str, job_url_template: str | None = None
) -> str:
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
        for name, value in facts(envelope, job_url_template):
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
        parts.append(f"<p>{_ELLIPSIS} and {hidden} more</p>")
    parts.append('<p style="color:#888;font-size:12px">Sent by watcher.</p></body></html>')
    return "\n".join(parts) + "\n"


def _encodable(text: str) -> str:
    """``text`` as valid UTF-8 (lone surrogates from hostile strings replaced)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _address(value: str, what: str) -> str:
    """The addr-spec of a configured address (``ValueError`` when unusable)."""
    if not isinstance(value, str) or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise ValueError(f"{what} must be one line of text")
    parsed = email.utils.getaddresses([value])
    if len(parsed) != 1:
        raise ValueError(f"{what} must be exactly one address")
    addr = parsed[0][1]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in addr):
        raise ValueError(f"{what} {clean(value, 80)!r} is not an email address")
    return addr


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmailSink:
    """Sends one email per batch through an SMTP server (a new connection per send).

    Connection errors, timeouts and 4xx replies are retryable; 5xx replies (mailbox
    unavailable, authentication failed), a server without STARTTLS when ``starttls`` is
    configured, and every recipient refused are final.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        tls: TlsMode,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: Secret | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        templates: MessageTemplates | None = None,
        job_url_template: str | None = None,
    ) -> None:
        self.name = name
        where = f"email {name!r}"
        if not host or host != clean(host, 255) or " " in host:
            raise ValueError(f"{where}: host must be a host name or address")
        if isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"{where}: port must be 1..65535")
        if tls not in ("starttls", "tls", "none"):
            raise ValueError(f"{where}: tls must be starttls, tls or none")
        if not timeout > 0:
            raise ValueError(f"{where}: timeout must be positive")
        if (username is None) != (password is None):
            raise ValueError(f"{where}: username and password go together")
        if username is not None and (not username or username != clean(username, 255)):
            raise ValueError(f"{where}: username must be one line of text")
        if password is not None and tls == "none" and not _is_loopback(host):
            raise ValueError(
                f"{where}: a password with tls: none would cross the network in plaintext; "
                "use starttls or tls"
            )
        if job_url_template is not None and (
            not job_url_template.startswith(("https://", "http://"))
            or job_url_template != clean(job_url_template, 2000)
            or " " in job_url_template
        ):
            raise ValueError(f"{where}: job_url_template must be an http(s) URL")
        try:
            self._sender = sender
            self._envelope_sender = _address(sender, "from")
            if isinstance(recipients, str) or not recipients:
                raise ValueError("to must list at least one address")
            self._recipients = list(recipients)
            self._envelope_recipients = [_address(r, "to") for r in recipients]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self._tls_context: ssl.SSLContext | None = None
        if tls != "none":
            try:
                self._tls_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unusable"
                raise ValueError(f"{where}: ca_file cannot be loaded ({reason})") from None
        self._host = host
        self._port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._templates = templates
        self._job_url_template = job_url_template
        self._where = f"{where} ({host}:{port})"

    @staticmethod
    def _sensitive_strings(username: str | None, password: Secret | None) -> list[str]:
        """The password in every form an SMTP exchange carries it (AUTH PLAIN, LOGIN)."""
        if password is None:
            return []
        secret = password.get()
        found = [secret, base64.b64encode(secret.encode()).decode()]
        if username is not None:
            plain = f"\0{username}\0{secret}".encode()
            found += [base64.b64encode(plain).decode(), f"{username}\0{secret}"]
        return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        # Computed when needed, so that the sink's attributes never hold the bare password.
        for value in self._sensitive_strings(self._username, self._password):
            text = text.replace(value, _REDACTED)
        return text

    def _reason(self, text: str) -> str:
        return self._scrub(clean(self._scrub(text), 10_000))[:_EXCERPT_CHARS]

    def build(self, batch: Sequence[Envelope], *, now: float | None = None) -> EmailMessage:
        """The message for ``batch`` (``ValueError`` when a user template fails)."""
        templates = self._templates
        subject = templates.render("subject", batch) if templates else None
        subject = clean(subject if subject else default_subject(batch), MAX_SUBJECT)
        text = templates.render("text", batch) if templates else None
        if text is None:
            text = render_text(batch, self._job_url_template)
        body = templates.render("html", batch) if templates else None
        if body is None:
            body = render_html(batch, subject, self._job_url_template)

        message = EmailMessage(policy=email.policy.SMTP)
        message["Subject"] = subject or "watcher"
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
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

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver ``batch`` as one email; raises :class:`DeliveryError` on failure."""
        if not batch:
            return
        try:
            message = self.build(batch)
        except ValueError as exc:
            raise DeliveryError(
                f"{self._where}: {self._reason(str(exc))}", retryable=False
            ) from None
        try:
            with anyio.fail_after(self._timeout * DEADLINE_FACTOR):
                refused = await self._deliver(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            raise self._error(exc) from None
        if refused:
            # Some recipients got it: raising would re-send to them (retry) or bury a
            # delivered message (final). The server's codes tell the operator which.
            log.warning(
                "email_recipients_refused",
                sink=self.name,
                refused=len(refused),
                recipients=len(self._envelope_recipients),
                codes=sorted({response.code for response in refused.values()}),
            )
        log.debug(
            "email_delivered",
            sink=self.name,
            transition_id=batch[0].transition.id,
            transitions=len(batch),
            recipients=len(self._envelope_recipients) - len(refused),
        )

    async def _deliver(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._tls == "tls",
            start_tls=False,  # decided below, explicitly: never an opportunistic downgrade
            timeout=self._timeout,
            tls_context=self._tls_context,
        )
        talking = False  # the server answers sensibly: say goodbye rather than hang up
        try:
            await smtp.connect()
            talking = True
            if self._tls == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise DeliveryError(
                        f"{self._where}: server does not offer STARTTLS; "
                        "refusing to send in plaintext",
                        retryable=False,
                    )
                await smtp.starttls(tls_context=self._tls_context)
            if self._username is not None and self._password is not None:
                await smtp.login(self._username, self._password.get())
            refused, _ = await smtp.send_message(
                message, sender=self._envelope_sender, recipients=self._envelope_recipients
            )
            return refused
        except (DeliveryError, aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            raise
        except BaseException:
            talking = False  # timeouts, broken connections, cancellation: just hang up
            raise
        finally:
            if talking and smtp.is_connected:
                # Its own short budget, immune to the deadline: once the message is accepted,
                # a slow QUIT must not turn the delivery into a retry (a duplicate).
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(min(self._timeout, _QUIT_SECONDS)),
                    contextlib.suppress(aiosmtplib.SMTPException, OSError),
                ):
                    await smtp.quit()
            smtp.close()

    def _error(self, exc: Exception) -> DeliveryError:
        """The :class:`DeliveryError` for what the exchange raised (4xx, network and timeouts
        retryable; 5xx and refusals final)."""
        where = self._where
        if isinstance(exc, TimeoutError):  # our deadline or aiosmtplib's per command
            return DeliveryError(f"{where}: timed out ({type(exc).__name__})", retryable=True)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = sorted({r.code for r in exc.recipients})
            reply = exc.recipients[0].message if exc.recipients else ""
            return DeliveryError(
                f"{where}: all {len(exc.recipients)} recipient(s) refused "
                f"({', '.join(map(str, codes))}: {self._reason(reply)})",
                retryable=False,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            code = exc.code
            what = {
                aiosmtplib.SMTPAuthenticationError: "authentication failed",
                aiosmtplib.SMTPSenderRefused: "sender refused",
                aiosmtplib.SMTPRecipientRefused: "recipient refused",
                aiosmtplib.SMTPDataError: "message refused",
                aiosmtplib.SMTPHeloError: "EHLO refused",
                aiosmtplib.SMTPConnectResponseError: "connection refused by the server",
            }.get(type(exc), "server error")
            reason = f"{where}: {what} ({code} {self._reason(exc.message)})"
            # 5xx is permanent by definition (RFC 5321 4.2.1); 4xx and odd codes are not.
            return DeliveryError(reason, retryable=not 500 <= code < 600)
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=False)
        if isinstance(exc, ssl.SSLError):
            # Retryable: a certificate is fixed on the server side, and a wrong ca_file
            # still ends in dead-letter after the max age, every attempt logged.
            return DeliveryError(
                f"{where}: TLS failed ({self._reason(getattr(exc, 'reason', None) or str(exc))})",
                retryable=True,
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=True)
        if isinstance(exc, OSError):
            return DeliveryError(
                f"{where}: {type(exc).__name__}: {self._reason(str(exc))}", retryable=True
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            # No code: a capability the server lacks (AUTH) or a protocol mismatch; the
            # configuration has to change.
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=False)
        if isinstance(exc, ValueError):  # an address aiosmtplib cannot send safely
            return DeliveryError(f"{where}: {self._reason(str(exc))}", retryable=False)
        return DeliveryError(f"{where}: {type(exc).__name__}", retryable=True)

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""
