"""The ``sources:`` section: one entry per API family and workspace to poll."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from watcher.config.fields import ConfigModel, Duration, Name, check_http_url
from watcher.model.secrets import Secret


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


SourceConfig = Annotated[FineTuningSourceConfig | BatchSourceConfig, Field(discriminator="kind")]
