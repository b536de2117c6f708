"""Block Kit layouts: the full layout of one transition, the grouped one of several."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition, rfc3339
from watcher.render import workflows
from watcher.render.charts import valid_loss
from watcher.render.links import JobLinks
from watcher.render.text import ELLIPSIS, duration, finite
from watcher.sinks.slack import workflow
from watcher.sinks.slack.meaning import cost_of, emoji, facts, label, requests_of, severity
from watcher.sinks.slack.mrkdwn import (
    ARROW,
    MAX_BLOCKS,
    MAX_CONTEXT,
    MAX_FIELD,
    MAX_FIELDS,
    MAX_HEADER,
    MAX_LIST,
    MAX_SECTION,
    MAX_TEXT,
    clean,
    code,
    escape,
    fit,
    safe,
)

log = structlog.get_logger(__name__)


def _sparkline() -> Callable[[Sequence[float]], str] | None:
    """``watcher.render.charts.sparkline`` when that module is installed (it is optional)."""
    try:
        module = importlib.import_module("watcher.render.charts")
    except ImportError:
        return None
    draw = getattr(module, "sparkline", None)
    return draw if callable(draw) else None


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


def header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": fit(text, MAX_HEADER), "emoji": True},
    }


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION)}}


def context(text: str) -> dict[str, Any]:
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
    """Builds messages; links come from ``job_links`` (source name -> template) and, for
    fine-tuning jobs of sources without one, the sink's own ``job_url_template``
    (:class:`watcher.render.links.JobLinks`)."""

    def __init__(
        self,
        job_url_template: str | None = None,
        *,
        job_links: Mapping[str, str] | None = None,
    ) -> None:
        self.links = JobLinks(job_links, job_url_template)

    def link(self, transition: Transition) -> str | None:
        """The job's URL, escaped for a ``<url|label>`` link; ``None`` without a template."""
        if transition.job_id is None:
            return None
        url = self.links.url(transition)
        if url is None or len(url) > 1000:
            return None
        return escape(url).replace("|", "%7C")

    def _job_ref(self, transition: Transition, limit: int = 64) -> str:
        job_id = transition.job_id or transition.job.get("id")
        if not job_id:
            return ""
        url = self.link(transition)
        if url is not None:
            return f"<{url}|{safe(job_id, limit)}>"
        return code(job_id, limit)

    def _change(self, transition: Transition) -> str:
        if transition.status is not None:
            before = safe(transition.previous_status, 40) if transition.previous_status else "new"
            return f"{before} {ARROW} *{safe(transition.status, 40)}*"
        return safe(label(transition), 60)

    def line(self, envelope: Envelope) -> str:
        """One compact line of a grouped message."""
        transition = envelope.transition
        view = workflows.read(transition, envelope.detected_at)
        if view is not None:
            ref = self._job_ref(transition, 48) or "-"
            return workflow.line(view, emoji(transition), ref, transition.source)
        parts = [f"{emoji(transition)} "]
        ref = self._job_ref(transition, 48)
        if ref:
            parts.append(f"{ref} ")
        parts.append(self._change(transition))
        job = transition.job
        if job.get("model"):
            what = safe(job.get("model"), 40)
            if job.get("suffix"):
                what += f" ({safe(job.get('suffix'), 30)})"
            parts.append(f" \u00b7 {what}")
        parts.append(f" \u00b7 {safe(transition.source, 30)}")
        found = facts(transition)
        if found and transition.status is None:
            parts.append(f" \u00b7 {fit(found[0], 160)}")
        return fit("\u2022 " + "".join(parts), 400)

    def _summary(self, transition: Transition, found: list[str]) -> str:
        """The first line: the job and its change, the source, or watcher's own news (whose
        first fact says it, taken from ``found``)."""
        ref = self._job_ref(transition)
        source = safe(transition.source, 40)
        if not ref and transition.type.startswith("watcher.source."):
            return f"Source *{source}*"
        if not ref:
            return found.pop(0) if found else escape(label(transition))
        view = workflows.read(transition)
        if view is not None:
            return workflow.summary(view, ref, transition.source)
        if transition.status is not None:
            return f"Job {ref} on *{source}*: {self._change(transition)}"
        return f"Job {ref} on *{source}*"

    def _fields(self, envelope: Envelope) -> list[tuple[str, str]]:
        """The (name, value) pairs of the single layout's fields."""
        transition = envelope.transition
        job = transition.job
        view = workflows.read(transition, envelope.detected_at)
        if view is not None:
            url = self.link(transition)
            link = [("Link", f"<{url}|Open the execution>")] if url is not None else []
            return [*workflow.fields(view), ("Source", safe(transition.source, 60)), *link]
        fields: list[tuple[str, str]] = []
        if transition.job_id:
            fields.append(("Job", code(transition.job_id, 80)))
        for key, name in (("model", "Model"), ("suffix", "Suffix"), ("job_type", "Job type")):
            if job.get(key):
                fields.append((name, safe(job.get(key), 120)))
        fields.append(("Source", safe(transition.source, 60)))
        if transition.status is not None:
            fields.append(("Status", self._change(transition)))
        elif job.get("status"):
            fields.append(("Status", safe(job.get("status"), 40)))
        end = transition.occurred_at if transition.occurred_at is not None else envelope.detected_at
        created = finite(job.get("created_at"))
        if created is not None and end >= created:
            fields.append(("Duration", duration(end - created)))
        ready = job.get("fine_tuned_model") or transition.details.get("fine_tuned_model")
        if ready:
            fields.append(("Fine-tuned model", code(ready, 160)))
        url = self.link(transition)
        optional = [
            ("Cost", cost_of(job)),
            ("Requests", requests_of(job)),
            ("Link", f"<{url}|Open the job>" if url is not None else None),
        ]
        fields += [(name, value) for name, value in optional if value]
        return fields

    def single(self, envelope: Envelope) -> Message:
        """The full layout of one transition."""
        transition = envelope.transition
        job = transition.job
        view = workflows.read(transition, envelope.detected_at)
        shown = workflows.title(view) if view is not None else label(transition)
        title = escape(f"{emoji(transition)} {shown}")
        found = facts(transition)
        summary = self._summary(transition, found)
        fields = self._fields(envelope)

        blocks: list[dict[str, Any]] = [header(title)]
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
            blocks.append(section(summary))
        curve = self._curve(job)
        if curve:
            found.append(curve)
        room = MAX_BLOCKS - len(blocks) - 1  # the context block closes the message
        chunks = list(_pack(found, MAX_SECTION))
        blocks += [section(chunk) for chunk in chunks[:room]]
        moment = transition.occurred_at if transition.occurred_at is not None else None
        when = rfc3339(moment) if moment is not None else rfc3339(envelope.detected_at)
        blocks.append(context(f"{code(transition.id, 80)} \u00b7 {when}"))

        # The fallback is mrkdwn: a workflow's name goes in a code span there.
        head = workflow.headline(view, emoji(transition)) if view is not None else title
        text = f"{head}: {summary}"
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
            loss = finite(point[1])
            if loss is not None:
                train.append(loss)
            loss = finite(valid_loss(point[2]))
            if loss is not None:
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
            parts.append(f"{name} {chart}`{values[0]:.4g}` {ARROW} `{values[-1]:.4g}`")
        return "Loss: " + " \u00b7 ".join(parts) if parts else None

    def grouped(self, batch: Sequence[Envelope]) -> Message:
        """A counting header, then one line per transition; "… and N more" when the limits
        are reached, still naming as many job ids as fit."""
        transitions = [envelope.transition for envelope in batch]
        worst = min(transitions, key=severity)
        counts = Counter(label(t) for t in transitions)
        ordered = sorted(counts.items(), key=lambda item: -item[1])
        if len(ordered) == 1 and all(t.job_id for t in transitions):
            jobs = len({(t.source, t.job_id) for t in transitions})
            noun = "job" if jobs == 1 else "jobs"
            if all(workflows.is_workflow(t) for t in transitions):
                noun = "execution" if jobs == 1 else "executions"
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
            header(title),
            context(fit(f"{breakdown} \u2014 sources: {where}", MAX_CONTEXT)),
        ]
        room = MAX_BLOCKS - len(blocks) - 1  # one kept for the "… and N more" marker
        budget = MAX_LIST
        shown = 0
        chunk = ""
        for current in lines:
            if chunk and len(chunk) + 1 + len(current) > MAX_SECTION:
                if room == 0:
                    break
                blocks.append(section(chunk))
                room -= 1
                chunk = ""
            if room == 0 or len(current) + 1 > budget:
                break
            chunk = f"{chunk}\n{current}" if chunk else current
            budget -= len(current) + 1
            shown += 1
        if chunk and room > 0:
            blocks.append(section(chunk))
        rest = transitions[shown:]
        if rest:
            blocks.append(section(self._more(rest, MAX_SECTION)))

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
        head = f"{ELLIPSIS} and {len(rest)} more"
        named: list[str] = []
        seen: set[str] = set()
        size = len(head) + 2
        for t in rest:
            if not t.job_id or t.job_id in seen:
                continue
            seen.add(t.job_id)
            job = code(t.job_id, 64)
            if size + len(job) + 2 + len(ELLIPSIS) > limit:  # keep room for ", …"
                return f"{head}: {', '.join(named)}, {ELLIPSIS}" if named else head
            named.append(job)
            size += len(job) + 2
        return f"{head}: {', '.join(named)}" if named else head
