"""The ``sources:`` section: one entry per API family and workspace to poll."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from watcher.config.fields import ConfigModel, Duration, Name, StrList, check_http_url
from watcher.model.secrets import Secret
from watcher.render.links import PLACEHOLDERS

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class SourceBaseConfig(ConfigModel):
    """What every source has."""

    name: Name
    base_url: str = "https://api.mistral.ai"
    api_key: Secret
    interval: Duration = 30.0
    jitter: Duration | None = None  # default: a tenth of the interval, at most 5 s
    timeout: Duration = 15.0
    page_size: Annotated[int, Field(ge=1, le=1000)] = 100
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    on_start: Literal["baseline", "notify"] = "baseline"
    resync_interval: Duration = 3600.0
    retired_interval: Duration = 3600.0  # how often a retired (410) source is tried again
    # watcher.source.unreachable once a source has failed every cycle for this long.
    unreachable_after: Duration = 300.0
    # At most this many HTTP requests to the API in any minute (pages and retries count);
    # steady cycles then spend it where changes are likely (watcher/sources/policy.py).
    # Unset: every cycle makes every request it needs.
    max_requests_per_minute: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # A link to a job of this source in messages (Slack, email): ``{job_id}`` and
    # ``{source}`` are filled in (URL-quoted); unset: no link.
    job_url_template: str | None = None

    @field_validator("job_url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError("must be a URL without spaces or control characters")
        unknown = sorted(set(_PLACEHOLDER.findall(value)) - set(PLACEHOLDERS))
        if unknown:
            known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} (known: {known})")
        check_http_url(_PLACEHOLDER.sub("x", value))
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")

    @property
    def effective_jitter(self) -> float:
        return self.jitter if self.jitter is not None else min(self.interval / 10, 5.0)


class FineTuningSourceConfig(SourceBaseConfig):
    kind: Literal["mistral-fine-tuning"]
    track_checkpoints: bool = True


Percent = Annotated[float, Field(gt=0, le=100)]


class BatchSourceConfig(SourceBaseConfig):
    kind: Literal["mistral-batch"]
    # batch.job.progress fires once per job as the share of processed requests passes each.
    progress_milestones: list[Percent] = [50.0, 90.0]  # noqa: RUF012 (a pydantic field)
    # batch.job.errors_rising fires once per RUNNING job whose failed share of processed
    # requests reaches error_ratio, once at least error_min_requests were processed.
    error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    error_min_requests: Annotated[int, Field(ge=1)] = 20


class WorkflowsSourceConfig(SourceBaseConfig):
    """Workflows executions: discovered and confirmed by polling ``/v1/workflows/runs``,
    followed live on their event streams (workflows reference §3, §7)."""

    kind: Literal["mistral-workflows"]
    workflows: StrList | None = None  # only these workflow names (default: all)
    deployments: StrList | None = None  # only these deployments (default: all)
    stream: bool = True  # follow the event streams (False: polling alone)
    # At most this many streams open at once (one per followed root execution); the
    # executions beyond are followed by polling alone.
    max_streams: Annotated[int, Field(ge=0, le=10_000)] = 100
    # A stream that sent nothing (not even a keep-alive) for this long is reconnected.
    stream_idle_timeout: Duration = 120.0
    # Workflow name (glob) -> the execution timeout you expect: the ``overrun`` rule alerts
    # on a RUNNING execution that outlasts it x ``factor``.
    expected_durations: dict[str, Duration] = {}  # noqa: RUF012 (a pydantic field)


SourceConfig = Annotated[
    FineTuningSourceConfig | BatchSourceConfig | WorkflowsSourceConfig,
    Field(discriminator="kind"),
]
