"""The configuration file: one YAML document, validated into :class:`Config`.

``load_config(path)`` applies defaults, expands ``${VAR}`` from the environment, reads the
``*_file`` variants of secrets, validates, and raises only :class:`ConfigError` naming the
exact field (``sinks[1].url: …``). Secrets become :class:`~watcher.model.secrets.Secret` and
never appear in errors.

One module per part of the file: :mod:`.fields` (durations, names, URLs), :mod:`.sources`,
:mod:`.sinks`, :mod:`.routes`, :mod:`.rules` (alert rules, digest, heartbeat),
:mod:`.delivery`, :mod:`.service` (state, logging, http), :mod:`.model` (:class:`Config` and
the checks across sections), :mod:`.loader` (reading the file) and :mod:`.summary`.

May import :mod:`watcher.render`, :mod:`watcher.abc`, :mod:`watcher.model` and
:mod:`watcher.exceptions`; never a source, sink, store or anything that uses the config.
"""

from __future__ import annotations

from watcher.config.delivery import DeliveryConfig
from watcher.config.fields import (
    MAX_DURATION,
    NAME_PATTERN,
    ConfigModel,
    Duration,
    Name,
    StrList,
    TimeZone,
    Wait,
    check_http_url,
    parse_duration,
    parse_wait,
)
from watcher.config.loader import (
    DEFAULT_PATH,
    SECRET_FILE_KEYS,
    load_config,
    resolve_path,
    validate_config,
)
from watcher.config.model import Config, check_references
from watcher.config.routes import WEEKDAYS, MatchConfig, MuteWindow, RouteConfig
from watcher.config.rules import (
    CostRuleConfig,
    DigestConfig,
    HeartbeatConfig,
    MetricRuleConfig,
    OverrunRuleConfig,
    RetryStormRuleConfig,
    RuleConfig,
    StalledRuleConfig,
    TimeRuleConfig,
)
from watcher.config.service import HttpConfig, LoggingConfig, StateConfig
from watcher.config.sinks import (
    ConsoleSinkConfig,
    EmailSinkConfig,
    PagerDutySinkConfig,
    SinkConfig,
    SlackActionsConfig,
    SlackSinkConfig,
    TemplatesConfig,
    WebhookSinkConfig,
)
from watcher.config.sources import (
    BatchSourceConfig,
    FineTuningSourceConfig,
    Percent,
    SourceBaseConfig,
    SourceConfig,
    WorkflowsSourceConfig,
)
from watcher.config.summary import secrets_of, summary

__all__ = [
    "DEFAULT_PATH",
    "MAX_DURATION",
    "NAME_PATTERN",
    "SECRET_FILE_KEYS",
    "WEEKDAYS",
    "BatchSourceConfig",
    "Config",
    "ConfigModel",
    "ConsoleSinkConfig",
    "CostRuleConfig",
    "DeliveryConfig",
    "DigestConfig",
    "Duration",
    "EmailSinkConfig",
    "FineTuningSourceConfig",
    "HeartbeatConfig",
    "HttpConfig",
    "LoggingConfig",
    "MatchConfig",
    "MetricRuleConfig",
    "MuteWindow",
    "Name",
    "OverrunRuleConfig",
    "PagerDutySinkConfig",
    "Percent",
    "RetryStormRuleConfig",
    "RouteConfig",
    "RuleConfig",
    "SinkConfig",
    "SlackActionsConfig",
    "SlackSinkConfig",
    "SourceBaseConfig",
    "SourceConfig",
    "StalledRuleConfig",
    "StateConfig",
    "StrList",
    "TemplatesConfig",
    "TimeRuleConfig",
    "TimeZone",
    "Wait",
    "WebhookSinkConfig",
    "WorkflowsSourceConfig",
    "check_http_url",
    "check_references",
    "load_config",
    "parse_duration",
    "parse_wait",
    "resolve_path",
    "secrets_of",
    "summary",
    "validate_config",
]
