"""Links to a job's page, per source: each source may say where its jobs are shown
(``sources[].job_url_template``); a sink-level ``job_url_template`` (deprecated) still
applies, but only to fine-tuning jobs of sources without their own.

Placeholders: ``{job_id}`` and ``{source}`` everywhere; for Workflows executions also
``{workflow_name}``, ``{run_id}`` and ``{root_execution_id}``. Every value is foreign and is
percent-encoded whole (``/`` included), so a value can never add a path, a query or a
scheme. A template naming a placeholder the transition has no value for gives no link (a
broken link is worse than none). Pure, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from urllib.parse import quote

from watcher.model import types
from watcher.model.transitions import Transition

MAX_URL = 2000
FINE_TUNING = types.FINE_TUNING_JOB + "."
_WORKFLOW = (types.WORKFLOW_EXECUTION + ".", types.WORKFLOW_ACTIVITY + ".")
# Placeholder -> the key of ``Transition.job`` it is read from (workflows only).
_WORKFLOW_FIELDS = {
    "workflow_name": "workflow_name",
    "run_id": "run_id",
    "root_execution_id": "root_execution_id",
}
PLACEHOLDERS = ("job_id", "source", *_WORKFLOW_FIELDS)
_LEFT = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")  # a placeholder nobody fills


def _value(value: object) -> str | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    if not isinstance(value, str | int):
        return None
    return str(value)


def fill(template: str, transition: Transition) -> str | None:
    """``template`` with the transition's values percent-encoded into it; ``None`` when a
    placeholder it names has no value, when it names one nobody fills (``{foo}``), or when
    the result is not an http(s) URL."""
    job_id = transition.job_id or _value(transition.job.get("id"))
    values: dict[str, str | None] = {"job_id": job_id, "source": transition.source}
    workflow = transition.type.startswith(_WORKFLOW)
    for placeholder, key in _WORKFLOW_FIELDS.items():
        values[placeholder] = _value(transition.job.get(key)) if workflow else None
    url = template
    for placeholder, value in values.items():
        marker = "{" + placeholder + "}"
        if marker not in url:
            continue
        if value is None:
            return None
        url = url.replace(marker, quote(value, safe=""))
    if _LEFT.search(url):  # values are quoted: only the template's own braces are left
        return None
    # The template is the operator's; still, nothing invisible or spacing survives.
    url = "".join(ch for ch in url if unicodedata.category(ch)[0] not in "CZ")
    if len(url) > MAX_URL or not url.lower().startswith(("https://", "http://")):
        return None
    return url


class JobLinks:
    """Where each transition's job is shown: its source's template, else the sink's own
    (deprecated) template for fine-tuning jobs; no template, no link."""

    def __init__(
        self, per_source: Mapping[str, str] | None = None, sink_template: str | None = None
    ) -> None:
        self.per_source = dict(per_source or {})
        self.sink_template = sink_template

    def __bool__(self) -> bool:
        return bool(self.per_source) or self.sink_template is not None

    def template_for(self, transition: Transition) -> str | None:
        own = self.per_source.get(transition.source)
        if own is not None:
            return own
        if self.sink_template is not None and transition.type.startswith(FINE_TUNING):
            return self.sink_template
        return None

    def url(self, transition: Transition) -> str | None:
        """The job's page, or ``None`` (no job, no template, or a value missing)."""
        if not (transition.job_id or transition.job.get("id")):
            return None
        template = self.template_for(transition)
        return fill(template, transition) if template is not None else None
