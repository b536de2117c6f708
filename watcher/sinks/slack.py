"""Slack sink: Block Kit messages through an incoming webhook or the Web API (bot token).

Exactly one mode is configured:

- incoming webhook (``webhook_url``): one message per ``send``. A single transition gets the
  full layout; several get a grouped one (a header counting them by status or type, then one
  line per transition, all listed unless Slack's limits forbid, and then a "… and N more"
  marker that still names as many job ids as fit);
- bot (``token`` + ``channel``): ``chat.postMessage``, one thread per job. The first message
  about a job starts its thread, whose ``ts`` is kept in the store's sink state so that
  threads survive restarts; later messages reply in it, and a reply saying the job failed is
  also broadcast to the channel. Transitions about no job (source health, digest,
  heartbeat) post top-level.

Everything shown comes from a foreign API and is treated as hostile: control and format
characters are stripped and ``&``, ``<``, ``>`` are escaped in every value, so that a job
suffix cannot mention ``<!channel>``, a user, or forge a link. Slack's limits (50 blocks,
3000 characters per section, 150 per header, 10 fields per section, 4000 for the ``text``
fallback) are respected by truncating with "…".

The webhook URL and the token are secrets: errors and logs show ``scheme://host/…`` only, and
response excerpts are scrubbed of them.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import time
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import anyio
import httpx
import structlog

from watcher import __version__
from watcher.abc import Envelope, SinkState
from watcher.deliver.exchange import exchange
from watcher.deliver.redact import redact_url
from watcher.deliver.retry import Verdict, classify, parse_retry_after
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.model.transitions import Transition, rfc3339
from watcher.render.templates import MessageTemplates

log = structlog.get_logger(__name__)

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_TEXT = 4000
MAX_CONTEXT = 2000
# The grouped list's share of Slack's 40,000-character ceiling for a whole message (the
# "… and N more" marker, header and context come on top).
MAX_LIST = 33_000

FAILED = frozenset({"FAILED", "FAILED_VALIDATION", "TIMEOUT_EXCEEDED"})
# ok:false errors that say "not now" rather than "never".
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable"}
)
# Final errors that mean the destination itself is broken: a human must fix the config.
BROKEN_DESTINATION = frozenset(
    {
        "action_prohibited", "no_service", "no_active_hooks", "channel_not_found",
        "channel_is_archived", "is_archived", "invalid_token", "invalid_auth", "not_authed",
        "token_revoked", "token_expired", "account_inactive", "team_disabled", "missing_scope",
        "not_in_channel", "no_permission", "restricted_action", "posting_to_general_channel_denied",
    }
)  # fmt: skip

_WEBHOOK_READ_LIMIT = 4096  # Slack answers "ok" or an error word
_API_READ_LIMIT = 1_000_000  # chat.postMessage echoes the whole message back
_EXCERPT_CHARS = 200
_REDACTED = "<redacted>"
_ELLIPSIS = "\u2026"
_ARROW = "\u2192"
_SPACES = re.compile(r"\s+")
_REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TS = re.compile(r"\d{1,20}\.\d{1,20}")
_ACCEPTED_MEMORY = 4096
_PREFIXES = ("fine_tuning.job.", "batch.job.", "watcher.")

_STATUS_EMOJI = {
    "FAILED": ":x:",
    "FAILED_VALIDATION": ":x:",
    "TIMEOUT_EXCEEDED": ":x:",
    "CANCELLATION_REQUESTED": ":octagonal_sign:",
    "CANCELLED": ":no_entry_sign:",
    "SUCCESS": ":white_check_mark:",
    "RUNNING": ":arrow_forward:",
    "STARTED": ":arrow_forward:",
    "QUEUED": ":inbox_tray:",
    "VALIDATING": ":mag:",
    "VALIDATED": ":mag:",
}
_KIND_EMOJI = {
    "stalled": ":hourglass:",
    "overrun": ":stopwatch:",
    "checkpoint": ":chart_with_downwards_trend:",
    "model_ready": ":package:",
    "progress": ":bar_chart:",
    "errors_rising": ":warning:",
    "source.retired": ":no_entry:",
    "source.unreachable": ":rotating_light:",
    "source.recovered": ":large_green_circle:",
    "digest": ":newspaper:",
    "heartbeat": ":heartbeat:",
}


# -- text hygiene ---------------------------------------------------------------------------


def clean(value: object, limit: int = 80) -> str:
    """``value`` as one line of printable text of at most ``limit`` characters (unescaped)."""
    out = []
    for ch in str(value):
        category = unicodedata.category(ch)
        if ch.isspace():
            out.append(" ")  # line breaks and tabs separate words
        elif category in ("Cc", "Cf", "Cs"):
            continue  # NUL, DEL, C1, bidi overrides, zero-width marks, lone surrogates
        else:
            out.append(ch)
    text = _SPACES.sub(" ", "".join(out)).strip()
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + _ELLIPSIS
    return text


def escape(text: str) -> str:
    """Slack's three control characters as entities: ``<!channel>`` becomes inert text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _v(value: object, limit: int = 80) -> str:
    return escape(clean(value, limit))


def _code(value: object, limit: int = 80) -> str:
    return "`" + escape(clean(value, limit).replace("`", "'")) + "`"


def fit(text: str, limit: int) -> str:
    """``text`` (already escaped mrkdwn) cut to ``limit`` characters with "…", never inside
    an entity (``&amp;``) or one of our own ``<url|label>`` links."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")  # every "<" left is one of ours: values were escaped
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + _ELLIPSIS


def _multiline(text: str, limit: int) -> str:
    """A user template's output: lines kept, each cleaned and escaped, the whole fitted."""
    lines = [escape(clean(line, limit)) for line in text.splitlines()]
    return fit("\n".join(lines).strip("\n"), limit)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _v(value if value is not None else "-", 24)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``12s``."""
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _sparkline() -> Callable[[Sequence[float]], str] | None:
    """``watcher.charts.sparkline`` when that module is installed (it is optional)."""
    try:
        module = importlib.import_module("watcher.render.charts")
    except ImportError:
        return None
    draw = getattr(module, "sparkline", None)
    return draw if callable(draw) else None


# -- what a transition says -----------------------------------------------------------------


def _kind(transition: Transition) -> str:
    for prefix in _PREFIXES:
        if transition.type.startswith(prefix):
            return transition.type[len(prefix) :]
    return transition.type


def label(transition: Transition) -> str:
    """The entered status (``FAILED``) or the fact (``stalled``, ``source retired``)."""
    if transition.status is not None:
        return clean(transition.status, 40)
    return clean(_kind(transition).replace(".", " ").replace("_", " "), 60)


def _severity(transition: Transition) -> int:
    status = (transition.status or "").upper()
    kind = _kind(transition)
    if status in FAILED:
        return 0
    if kind.endswith("resolved") or kind == "source.recovered":
        return 3
    if "alert" in transition.details or kind in (
        "source.unreachable",
        "source.retired",
        "errors_rising",
    ):
        return 1
    if status.startswith("CANCEL"):
        return 2
    return 3


def emoji(transition: Transition) -> str:
    if transition.status is not None:
        return _STATUS_EMOJI.get(transition.status.upper(), ":information_source:")
    kind = _kind(transition)
    if kind.endswith(".resolved"):
        return ":large_green_circle:"
    return _KIND_EMOJI.get(kind, ":warning:" if "alert" in transition.details else ":bell:")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _requests(job: Mapping[str, Any]) -> str | None:
    """Batch counters: ``450 / 1000 processed, 12 failed``."""
    if "total_requests" not in job:
        return None
    total = job.get("total_requests")
    failed = job.get("failed_requests")
    succeeded = job.get("succeeded_requests")
    done: Any = job.get("completed_requests")
    if isinstance(succeeded, int) and isinstance(failed, int):
        done = succeeded + failed
    return f"{_number(done)} / {_number(total)} processed, {_number(failed)} failed"


def _cost(job: Mapping[str, Any]) -> str | None:
    metadata = _mapping(job.get("metadata"))
    cost = _finite(metadata.get("cost"))
    if cost is None:
        return None
    currency = metadata.get("cost_currency")
    return f"{cost:.4g}" + (f" {_v(currency, 8)}" if currency else "")


def _fact(key: object, value: Any) -> str:
    """``limit 2h 0m``, ``status QUEUED``: one scalar rule fact (``""`` for the rest)."""
    if value is None or isinstance(value, Mapping | list):
        return ""
    name = clean(key, 32)
    seconds = _finite(value)
    if name.endswith("_seconds") and seconds is not None:
        return f"{escape(name.removesuffix('_seconds'))} {duration(seconds)}"
    shown = _v(value, 80) if isinstance(value, str) else _number(value)
    return f"{escape(name)} {shown}"


def facts(transition: Transition) -> list[str]:
    """Lines of mrkdwn (escaped) with what is specific to this kind of transition."""
    details = transition.details
    kind = _kind(transition)
    lines: list[str] = []
    checkpoint = _mapping(details.get("checkpoint"))
    if checkpoint:
        parts = [f"step *{_number(checkpoint.get('step_number'))}*"]
        metrics = _mapping(checkpoint.get("metrics"))
        parts += [f"{_v(k, 32)} `{_number(v)}`" for k, v in list(metrics.items())[:8]]
        lines.append("Checkpoint: " + " \u00b7 ".join(parts))
    ready = details.get("fine_tuned_model")
    if kind == "model_ready" and ready:
        lines.append(f"Model ready: {_code(ready, 160)}")
    progress = _mapping(details.get("progress"))
    if progress:
        lines.append(
            f"Progress {_number(progress.get('percent', progress.get('milestone')))}%: "
            f"{_number(progress.get('processed'))} / {_number(progress.get('total'))} requests"
        )
    if "failed_ratio" in details:
        ratio = _finite(details.get("failed_ratio"))
        share = f"{ratio:.0%}" if ratio is not None else "?"
        lines.append(
            f"Errors rising: {share} of processed requests failed "
            f"({_number(details.get('failed_requests'))} / "
            f"{_number(details.get('processed_requests'))})"
        )
        errors = details.get("errors")
        for error in (errors if isinstance(errors, list) else [])[:3]:
            error = _mapping(error)
            if error.get("message"):
                lines.append(
                    f"> {_v(error.get('message'), 200)} (\u00d7{_number(error.get('count'))})"
                )
    alert = _mapping(details.get("alert"))
    if alert:
        shown = [_fact(k, v) for k, v in list(alert.items())[:12] if k != "rule"]
        head = f"Rule *{_v(alert.get('rule'), 60)}*" if alert.get("rule") else "Alert"
        lines.append(head + ": " + " \u00b7 ".join(s for s in shown if s))
    event = _mapping(details.get("event"))
    if event.get("name"):
        lines.append(f"Event: {_code(event.get('name'), 64)}")
    digest = _mapping(details.get("digest"))
    if digest:
        lines.append(f"Period: {_v(digest.get('from'), 30)} {_ARROW} {_v(digest.get('to'), 30)}")
        for name, counts in list(_mapping(digest.get("sources")).items())[:40]:
            counts = _mapping(counts)
            cost = ", ".join(
                f"{_number(total)} {_v(currency, 8)}"
                for currency, total in list(_mapping(counts.get("cost")).items())[:4]
            )
            lines.append(
                f"*{_v(name, 40)}*: {_number(counts.get('created'))} created, "
                f"{_number(counts.get('succeeded'))} succeeded, "
                f"{_number(counts.get('failed'))} failed, "
                f"{_number(counts.get('cancelled'))} cancelled, "
                f"{_number(counts.get('running_now'))} running now"
                + (f"; cost {cost}" if cost else "")
            )
    if kind == "heartbeat":
        for name, health in list(_mapping(details.get("sources")).items())[:40]:
            health = _mapping(health)
            state = (
                "retired"
                if health.get("retired")
                else ("failing" if health.get("failing") else "ok")
            )
            lines.append(
                f"*{_v(name, 40)}*: {state}, last good poll {_v(health.get('last_poll_ok'), 30)}"
            )
    if details.get("reason"):
        lines.append(f"Reason: {_v(details.get('reason'), 500)}")
    if "down_seconds" in details:
        down = _finite(details.get("down_seconds"))
        lines.append(f"Down for {duration(down) if down is not None else '?'}")
    return lines


# -- layouts --------------------------------------------------------------------------------


@dataclass
class Message:
    """One Slack message: the ``text`` fallback (notifications) and the Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]

    def payload(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "blocks": self.blocks,
            "unfurl_links": False,  # a hostile URL in a value must not be fetched by Slack
            "unfurl_media": False,
        }


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": fit(text, MAX_HEADER), "emoji": True},
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(text, MAX_CONTEXT)}]}


def _pack(lines: Sequence[str], limit: int) -> Iterator[str]:
    """Consecutive lines joined into chunks of at most ``limit`` characters."""
    chunk = ""
    for line in lines:
        line = fit(line, limit)
        if chunk and len(chunk) + 1 + len(line) > limit:
            yield chunk
            chunk = line
        else:
            chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        yield chunk


class Formatter:
    """Builds messages; ``job_url_template`` (``str.format`` with ``{source}``, ``{job_id}``)
    adds links."""

    def __init__(self, job_url_template: str | None = None) -> None:
        self.job_url_template = job_url_template

    def link(self, transition: Transition) -> str | None:
        """The job's URL, escaped for a ``<url|label>`` link; ``None`` without a template."""
        job_id = transition.job_id
        if self.job_url_template is None or not job_id:
            return None
        try:
            url = self.job_url_template.format(
                source=quote(transition.source, safe=""), job_id=quote(job_id, safe="")
            )
        except (KeyError, IndexError, ValueError, AttributeError):
            return None
        url = "".join(ch for ch in url if unicodedata.category(ch)[0] not in "CZ")
        if len(url) > 1000:
            return None
        return escape(url).replace("|", "%7C")

    def _job_ref(self, transition: Transition, limit: int = 64) -> str:
        job_id = transition.job_id or transition.job.get("id")
        if not job_id:
            return ""
        url = self.link(transition)
        if url is not None:
            return f"<{url}|{_v(job_id, limit)}>"
        return _code(job_id, limit)

    def _change(self, transition: Transition) -> str:
        if transition.status is not None:
            before = _v(transition.previous_status, 40) if transition.previous_status else "new"
            return f"{before} {_ARROW} *{_v(transition.status, 40)}*"
        return _v(label(transition), 60)

    def line(self, envelope: Envelope) -> str:
        """One compact line of a grouped message."""
        transition = envelope.transition
        parts = [f"{emoji(transition)} "]
        ref = self._job_ref(transition, 48)
        if ref:
            parts.append(f"{ref} ")
        parts.append(self._change(transition))
        job = transition.job
        if job.get("model"):
            what = _v(job.get("model"), 40)
            if job.get("suffix"):
                what += f" ({_v(job.get('suffix'), 30)})"
            parts.append(f" \u00b7 {what}")
        parts.append(f" \u00b7 {_v(transition.source, 30)}")
        found = facts(transition)
        if found and transition.status is None:
            parts.append(f" \u00b7 {fit(found[0], 160)}")
        return fit("\u2022 " + "".join(parts), 400)

    def single(self, envelope: Envelope) -> Message:
        """The full layout of one transition."""
        transition = envelope.transition
        job = transition.job
        title = escape(f"{emoji(transition)} {label(transition)}")
        ref = self._job_ref(transition)
        source = _v(transition.source, 40)
        found = facts(transition)
        if not ref and transition.type.startswith("watcher.source."):
            summary = f"Source *{source}*"
        elif not ref:  # watcher's own news (digest, heartbeat): the first fact says it
            summary = found.pop(0) if found else escape(label(transition))
        elif transition.status is not None:
            summary = f"Job {ref} on *{source}*: {self._change(transition)}"
        else:
            summary = f"Job {ref} on *{source}*"

        fields: list[tuple[str, str]] = []
        if transition.job_id:
            fields.append(("Job", _code(transition.job_id, 80)))
        for key, name in (("model", "Model"), ("suffix", "Suffix"), ("job_type", "Job type")):
            if job.get(key):
                fields.append((name, _v(job.get(key), 120)))
        fields.append(("Source", _v(transition.source, 60)))
        if transition.status is not None:
            fields.append(("Status", self._change(transition)))
        elif job.get("status"):
            fields.append(("Status", _v(job.get("status"), 40)))
        end = transition.occurred_at if transition.occurred_at is not None else envelope.detected_at
        created = _finite(job.get("created_at"))
        if created is not None and end >= created:
            fields.append(("Duration", duration(end - created)))
        ready = job.get("fine_tuned_model") or transition.details.get("fine_tuned_model")
        if ready:
            fields.append(("Fine-tuned model", _code(ready, 160)))
        cost = _cost(job)
        if cost:
            fields.append(("Cost", cost))
        requests = _requests(job)
        if requests:
            fields.append(("Requests", requests))
        url = self.link(transition)
        if url is not None:
            fields.append(("Link", f"<{url}|Open the job>"))

        blocks: list[dict[str, Any]] = [_header(title)]
        texts = [
            {"type": "mrkdwn", "text": fit(f"*{name}*\n{value}", MAX_FIELD)}
            for name, value in fields
        ]
        for start in range(0, len(texts), MAX_FIELDS):
            block: dict[str, Any] = {"type": "section", "fields": texts[start : start + MAX_FIELDS]}
            if start == 0:
                block["text"] = {"type": "mrkdwn", "text": fit(summary, MAX_SECTION)}
            blocks.append(block)
        if not texts:
            blocks.append(_section(summary))
        curve = self._curve(job)
        if curve:
            found.append(curve)
        room = MAX_BLOCKS - len(blocks) - 1  # the context block closes the message
        chunks = list(_pack(found, MAX_SECTION))
        blocks += [_section(chunk) for chunk in chunks[:room]]
        moment = transition.occurred_at if transition.occurred_at is not None else None
        when = rfc3339(moment) if moment is not None else rfc3339(envelope.detected_at)
        blocks.append(_context(f"{_code(transition.id, 80)} \u00b7 {when}"))

        text = f"{title}: {summary}"
        if found:
            text += "\n" + "\n".join(found)
        return Message(text=fit(text, MAX_TEXT), blocks=blocks)

    @staticmethod
    def _curve(job: Mapping[str, Any]) -> str | None:
        """``Loss: train ▇▅▃▂ 2.31 → 0.84 · valid …``, from the job view's ``loss_curve``."""
        points = job.get("loss_curve")
        if not isinstance(points, list):
            return None
        train: list[float] = []
        valid: list[float] = []
        for point in points:
            if not isinstance(point, list | tuple) or len(point) < 3:
                continue
            loss = _finite(point[1])
            if loss is not None:
                train.append(loss)
            loss = _finite(point[2])
            if loss is not None and loss != 0.0:  # 0.0: the API's "not evaluated" placeholder
                valid.append(loss)
        draw = _sparkline()
        parts = []
        for name, values in (("train", train), ("valid", valid)):
            if len(values) < 2:
                continue
            chart = ""
            if draw is not None:
                try:
                    chart = escape(clean(draw(values), 130)) + " "
                except Exception:  # another module's bug must not lose the message
                    log.warning("sparkline_failed", exc_info=True)
            parts.append(f"{name} {chart}`{values[0]:.4g}` {_ARROW} `{values[-1]:.4g}`")
        return "Loss: " + " \u00b7 ".join(parts) if parts else None

    def grouped(self, batch: Sequence[Envelope]) -> Message:
        """A counting header, then one line per transition; "… and N more" when the limits
        are reached, still naming as many job ids as fit."""
        transitions = [envelope.transition for envelope in batch]
        worst = min(transitions, key=_severity)
        counts = Counter(label(t) for t in transitions)
        ordered = sorted(counts.items(), key=lambda item: -item[1])
        if len(ordered) == 1 and all(t.job_id for t in transitions):
            jobs = len({(t.source, t.job_id) for t in transitions})
            noun = "job" if jobs == 1 else "jobs"
            headline = f"{jobs} {noun} {ordered[0][0]}"
            if jobs != len(transitions):
                headline = f"{len(transitions)} updates: {ordered[0][0]}"
        else:
            headline = f"{len(transitions)} updates: " + ", ".join(
                f"{count} {name}" for name, count in ordered
            )
        title = escape(f"{emoji(worst)} {headline}")
        sources = Counter(clean(t.source, 40) for t in transitions)
        breakdown = " \u00b7 ".join(f"*{count}* {escape(name)}" for name, count in ordered)
        where = ", ".join(f"{escape(name)} ({count})" for name, count in sources.most_common())
        # No line is shorter than 40 characters: what lies beyond the budget is never drawn.
        lines = [self.line(envelope) for envelope in batch[: MAX_LIST // 40 + 1]]

        blocks: list[dict[str, Any]] = [
            _header(title),
            _context(fit(f"{breakdown} \u2014 sources: {where}", MAX_CONTEXT)),
        ]
        room = MAX_BLOCKS - len(blocks) - 1  # one kept for the "… and N more" marker
        budget = MAX_LIST
        shown = 0
        chunk = ""
        for current in lines:
            if chunk and len(chunk) + 1 + len(current) > MAX_SECTION:
                if room == 0:
                    break
                blocks.append(_section(chunk))
                room -= 1
                chunk = ""
            if room == 0 or len(current) + 1 > budget:
                break
            chunk = f"{chunk}\n{current}" if chunk else current
            budget -= len(current) + 1
            shown += 1
        if chunk and room > 0:
            blocks.append(_section(chunk))
        rest = transitions[shown:]
        if rest:
            blocks.append(_section(self._more(rest, MAX_SECTION)))

        text = title
        kept = 0
        for current in lines:
            if len(text) + 1 + len(current) > MAX_TEXT - 400:  # room for the marker
                break
            text += "\n" + current
            kept += 1
        if kept < len(transitions):
            text += "\n" + self._more(transitions[kept:], MAX_TEXT - len(text) - 1)
        return Message(text=fit(text, MAX_TEXT), blocks=blocks)

    @staticmethod
    def _more(rest: Sequence[Transition], limit: int) -> str:
        """``… and 12 more: `id1`, `id2`, …`` within ``limit`` characters."""
        head = f"{_ELLIPSIS} and {len(rest)} more"
        named: list[str] = []
        seen: set[str] = set()
        size = len(head) + 2
        for t in rest:
            if not t.job_id or t.job_id in seen:
                continue
            seen.add(t.job_id)
            job = _code(t.job_id, 64)
            if size + len(job) + 2 + len(_ELLIPSIS) > limit:  # keep room for ", …"
                return f"{head}: {', '.join(named)}, {_ELLIPSIS}" if named else head
            named.append(job)
            size += len(job) + 2
        return f"{head}: {', '.join(named)}" if named else head


# -- delivery -------------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    return clean(text, 10_000)


class SlackSink:
    """Posts transitions to Slack: incoming webhook (``webhook_url``) or bot (``token`` +
    ``channel``, threaded per job via ``state``).

    Webhook answers: 2xx done; 429 (``Retry-After`` honoured) and 5xx retryable; other
    statuses final with Slack's reason. Bot answers: ``{"ok": true}`` done; ``ok: false``
    retryable for rate limits and Slack's own failures, final otherwise; HTTP 429 and 5xx
    retryable. Transport errors and timeouts are retryable. ``final_errors`` counts final
    errors by reason.
    """

    def __init__(
        self,
        name: str,
        *,
        client: httpx.AsyncClient,
        webhook_url: Secret | None = None,
        token: Secret | None = None,
        channel: str | None = None,
        api_url: str = "https://slack.com/api",
        state: SinkState | None = None,
        templates: MessageTemplates | None = None,
        job_url_template: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        where = f"slack {name!r}"
        bot = token is not None or channel is not None
        if (webhook_url is None) == (not bot):
            raise ValueError(f"{where}: set either webhook_url, or token and channel")
        if bot and (token is None or not token.get() or not channel):
            raise ValueError(f"{where}: bot mode needs both token and channel")
        if not timeout > 0:
            raise ValueError(f"{where}: timeout must be positive")
        url = webhook_url.get() if webhook_url is not None else api_url.rstrip("/")
        what = "webhook_url" if webhook_url is not None else "api_url"
        shown = redact_url(url)
        if urlsplit(url).scheme.lower() not in ("http", "https") or shown == "<invalid url>":
            raise ValueError(f"{where}: {what} must be http(s)://host/…")
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValueError(f"{where}: {what} is not a valid URL") from None
        if job_url_template is not None:
            try:
                sample = job_url_template.format(source="ft", job_id="job-1")
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"{where}: job_url_template: use only {{source}} and {{job_id}} ({exc!r})"
                ) from None
            if urlsplit(sample).scheme.lower() not in ("http", "https"):
                raise ValueError(f"{where}: job_url_template must give an http(s) URL")
        self.mode = "bot" if bot else "webhook"
        self.channel = channel
        self.final_errors: Counter[str] = Counter()
        self._client = client
        self._state = state
        self._templates = templates
        self._format = Formatter(job_url_template)
        self._timeout = timeout
        if webhook_url is not None:
            self._url = url
            self._where = f"{where} ({shown})"
        else:
            self._url = f"{url}/chat.postMessage"
            self._where = f"{where} ({redact_url(url)}, channel {clean(channel, 80)!r})"
        self._token = token
        self._sensitive = self._sensitive_strings(webhook_url, token)
        self._locks: dict[str, anyio.Lock] = {}
        self._accepted: OrderedDict[tuple[str, ...], None] = OrderedDict()

    @staticmethod
    def _sensitive_strings(webhook_url: Secret | None, token: Secret | None) -> list[str]:
        found: list[str] = []
        if webhook_url is not None:
            parts = urlsplit(webhook_url.get())
            found += [webhook_url.get(), parts.path, parts.query, parts.fragment]
            found += [parts.username or "", parts.password or ""]
            found += [segment for segment in parts.path.split("/") if len(segment) >= 6]
        if token is not None:
            found.append(token.get())
        found += [quote(s, safe="") for s in found]
        return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for value in self._sensitive:
            text = text.replace(value, _REDACTED)
        return text

    async def aclose(self) -> None:
        """Nothing to release: the ``httpx`` client and the state belong to the caller."""

    # -- composing --------------------------------------------------------------------------

    def compose(self, batch: Sequence[Envelope]) -> Message:
        """The message for ``batch``: the user's ``text`` template when it renders something,
        else the built-in layout (single or grouped)."""
        if self._templates is not None:
            try:
                rendered = self._templates.render("text", batch)
            except ValueError as exc:
                self.final_errors["template"] += 1
                raise DeliveryError(f"slack {self.name!r}: {exc}", retryable=False) from None
            if rendered is not None and rendered.strip():
                text = _multiline(rendered, MAX_TEXT)
                return Message(text=text, blocks=[_section(text)])
        if len(batch) == 1:
            return self._format.single(batch[0])
        return self._format.grouped(batch)

    # -- sending ----------------------------------------------------------------------------

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Webhook: one message for the whole batch. Bot: one message per job (threaded),
        one for the transitions about no job; a failure raises :class:`DeliveryError` and
        the messages already accepted are not posted again by this instance on retry."""
        if not batch:
            return
        if self.mode == "webhook":
            await self._send_webhook(batch)
            return
        groups: dict[tuple[str, str] | None, list[Envelope]] = {}
        for envelope in batch:
            t = envelope.transition
            groups.setdefault((t.source, t.job_id) if t.job_id else None, []).append(envelope)
        parts = [(key, envelopes, tuple(e.transition.id for e in envelopes))
                 for key, envelopes in groups.items()]  # fmt: skip
        accepted: list[tuple[str, ...]] = []
        try:
            for key, envelopes, ids in parts:
                if ids in self._accepted:
                    continue  # a retry of a partly delivered batch: this part got through
                if key is None or self._state is None:
                    await self._post_api(envelopes, thread_ts=None, broadcast=False)
                else:
                    await self._post_threaded(key, envelopes)
                accepted.append(ids)
        except BaseException:
            # Remembered only across a failure, so that the dispatcher's retry makes
            # progress instead of re-posting (and re-hitting a rate limit) from the start.
            for ids in accepted:
                self._accepted[ids] = None
            while len(self._accepted) > _ACCEPTED_MEMORY:
                self._accepted.popitem(last=False)
            raise
        for _, _, ids in parts:
            self._accepted.pop(ids, None)

    async def _send_webhook(self, batch: Sequence[Envelope]) -> None:
        message = self.compose(batch)
        status, headers, raw = await self._post(message.payload(), _WEBHOOK_READ_LIMIT)
        verdict = classify(status)
        if verdict is Verdict.DONE:
            log.debug("slack_delivered", sink=self.name, mode="webhook", transitions=len(batch))
            return
        excerpt = self._scrub(_sanitize(raw.decode("utf-8", errors="replace")))[:_EXCERPT_CHARS]
        reason = f"{self._where}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if verdict is Verdict.RETRY:
            retry_after = parse_retry_after(headers.get("retry-after"), now=time.time())
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        if 300 <= status < 400:
            reason = f"{self._where}: HTTP {status}: redirects are not followed"
        word = excerpt if _REASON.fullmatch(excerpt) else f"http_{status}"
        self._final(
            word, reason, broken=word in BROKEN_DESTINATION or status in (401, 403, 404, 410)
        )

    async def _post_threaded(self, key: tuple[str, str], envelopes: Sequence[Envelope]) -> None:
        source, job_id = key
        state_key = f"thread:{source}:{job_id}"
        state = self._state
        assert state is not None
        async with self._lock(state_key):
            try:
                thread = await state.get_sink_state(self.name, state_key)
            except Exception as exc:  # the store's own failure: try again later
                raise DeliveryError(
                    f"{self._where}: thread state unavailable ({type(exc).__name__})",
                    retryable=True,
                ) from None
            if thread is not None and not _TS.fullmatch(thread):
                thread = None
            failed = any((e.transition.status or "").upper() in FAILED for e in envelopes)
            ts = await self._post_api(envelopes, thread_ts=thread, broadcast=failed)
            if thread is None and ts is not None:
                try:
                    await state.put_sink_state(self.name, state_key, ts)
                except Exception as exc:  # posted: losing the thread is better than a duplicate
                    log.warning(
                        "slack_thread_not_saved",
                        sink=self.name,
                        job_id=job_id,
                        error=type(exc).__name__,
                    )

    @asynccontextmanager
    async def _lock(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)

    async def _post_api(
        self, envelopes: Sequence[Envelope], *, thread_ts: str | None, broadcast: bool
    ) -> str | None:
        """``chat.postMessage``; the new message's ``ts`` (``None`` if Slack gave none)."""
        message = self.compose(envelopes)
        payload: dict[str, Any] = {"channel": self.channel, **message.payload()}
        if thread_ts is not None:
            payload["thread_ts"] = thread_ts
            if broadcast:
                payload["reply_broadcast"] = True
        status, headers, raw = await self._post(payload, _API_READ_LIMIT)
        verdict = classify(status)
        answer: Any = None
        with suppress(UnicodeDecodeError, ValueError):
            answer = json.loads(raw.decode("utf-8"))
        error = answer.get("error") if isinstance(answer, dict) else None
        # Only Slack-shaped words name a reason (they key ``final_errors`` and the logs).
        word = f"http_{status}" if verdict is not Verdict.DONE else "unknown_error"
        if isinstance(error, str) and _REASON.fullmatch(error):
            word = error
        reason = f"{self._where}: HTTP {status}: {self._scrub(word)}"
        retry_after = parse_retry_after(headers.get("retry-after"), now=time.time())
        if verdict is Verdict.RETRY:
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        if verdict is Verdict.FINAL:
            self._final(word, reason, broken=word in BROKEN_DESTINATION or status in (401, 403))
        if not isinstance(answer, dict):
            # Posted or not, we cannot tell: a duplicate beats a lost alert.
            raise DeliveryError(f"{self._where}: unreadable answer", retryable=True)
        if answer.get("ok") is True:
            ts = answer.get("ts")
            log.debug(
                "slack_delivered",
                sink=self.name,
                mode="bot",
                transitions=len(envelopes),
                threaded=thread_ts is not None,
            )
            return ts if isinstance(ts, str) and _TS.fullmatch(ts) else None
        if word in RETRYABLE_ERRORS:
            raise DeliveryError(reason, retryable=True, retry_after=retry_after)
        self._final(word, reason, broken=word in BROKEN_DESTINATION)

    def _final(self, word: str, reason: str, *, broken: bool) -> NoReturn:
        self.final_errors[word] += 1
        if broken:
            log.error(
                "slack_destination_broken",
                sink=self.name,
                reason=word,
                hint="Slack refuses this sink's destination; fix its URL, token or channel",
            )
        else:
            log.warning("slack_rejected", sink=self.name, reason=word)
        raise DeliveryError(reason, retryable=False)

    def _encode(self, payload: Mapping[str, Any]) -> bytes:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()

    async def _post(
        self, payload: Mapping[str, Any], read_limit: int
    ) -> tuple[int, httpx.Headers, bytes]:
        headers = {
            "content-type": "application/json; charset=utf-8",
            "user-agent": f"watcher/{__version__}",
        }
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token.get()}"
        request = self._client.build_request(
            "POST",
            self._url,
            content=self._encode(payload),
            headers=headers,
            timeout=httpx.Timeout(self._timeout),
        )
        return await exchange(
            self._client,
            request,
            deadline_seconds=self._timeout,
            where=self._where,
            describe=lambda text: self._scrub(_sanitize(text))[:_EXCERPT_CHARS],
            read_limit=read_limit,
        )
