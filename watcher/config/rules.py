"""The ``rules:``, ``digest:`` and ``heartbeat:`` sections: alerts watcher raises itself
(stalled, overrun, cost, metric), the scheduled summary, and the dead-man's switch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from watcher.config.cron import standard
from watcher.config.fields import ConfigModel, Duration, Name, StrList, TimeZone


class _RuleConfig(ConfigModel):
    name: Name | None = None  # default: the kind; needed when two rules share a kind
    sources: StrList | None = None  # default: every source

    @property
    def key(self) -> str:
        return self.name or str(getattr(self, "kind", "rule"))


class StalledRuleConfig(_RuleConfig):
    """A job stays in one non-terminal status longer than its limit."""

    kind: Literal["stalled"]
    after: Annotated[dict[str, Duration], Field(min_length=1)]  # status -> limit

    @field_validator("after")
    @classmethod
    def _statuses(cls, value: dict[str, float]) -> dict[str, float]:
        return {status.strip().upper(): limit for status, limit in value.items()}

    repeat_interval: Duration | None = None
    resolved: bool = True


class OverrunRuleConfig(_RuleConfig):
    """A RUNNING job outlasts ``metadata.expected_duration_seconds`` x ``factor``."""

    kind: Literal["overrun"]
    factor: Annotated[float, Field(gt=0)] = 1.5
    repeat_interval: Duration | None = None
    resolved: bool = True


class CostRuleConfig(_RuleConfig):
    """``metadata.cost`` is above ``limit`` when it becomes known."""

    kind: Literal["cost"]
    limit: Annotated[float, Field(ge=0)]


class MetricRuleConfig(_RuleConfig):
    """A new checkpoint's ``valid_loss`` rose more than ``valid_loss_rise`` percent over the
    best so far, or its ``train_loss`` is NaN or infinite."""

    kind: Literal["metric"]
    valid_loss_rise: Annotated[float, Field(gt=0)] = 10.0
    non_finite: bool = True


class RetryStormRuleConfig(_RuleConfig):
    """An activity of a workflow execution retries more than ``retries`` times within
    ``within`` (``workflow.execution.retry_storm``, once per activity and storm)."""

    kind: Literal["retry_storm"]
    retries: Annotated[int, Field(ge=1, le=100_000)] = 5
    within: Duration = 600.0


RuleConfig = Annotated[
    StalledRuleConfig
    | OverrunRuleConfig
    | CostRuleConfig
    | MetricRuleConfig
    | RetryStormRuleConfig,
    Field(discriminator="kind"),
]
TimeRuleConfig = StalledRuleConfig | OverrunRuleConfig


class DigestConfig(ConfigModel):
    """A summary of the last ``period`` per source, sent on a cron schedule."""

    cron: str  # crontab(5): "0 9 * * 1-5", "0 9 * * MON-FRI", "@daily"
    timezone: TimeZone = "UTC"  # the cron's times are local to it, DST included
    period: Duration = 86400.0
    sinks: Annotated[StrList, Field(min_length=1)]

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        standard(value)  # ValueError says what is wrong
        return value


class HeartbeatConfig(ConfigModel):
    """``watcher.heartbeat`` every ``interval``, for a dead-man's switch."""

    interval: Duration = 300.0
