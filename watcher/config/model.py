"""The whole config file, :class:`Config`, and the checks that span its sections (every
name a route, digest or rule refers to exists; names are unique)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field

from watcher.config.delivery import DeliveryConfig
from watcher.config.fields import ConfigModel, Duration
from watcher.config.routes import RouteConfig
from watcher.config.rules import DigestConfig, HeartbeatConfig, RuleConfig
from watcher.config.service import HttpConfig, LoggingConfig, StateConfig
from watcher.config.sinks import SinkConfig
from watcher.config.sources import SourceConfig, WorkflowsSourceConfig
from watcher.exceptions import ConfigError
from watcher.render.templates import MessageTemplates
from watcher.render.workflow_samples import SAMPLES as WORKFLOWS

WORKFLOW_SAMPLES = tuple(WORKFLOWS)


class Config(ConfigModel):
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    state: StateConfig = StateConfig()
    sinks: Annotated[list[SinkConfig], Field(min_length=1)]
    # Absent: one route sends everything to every sink. ``routes: []``: nothing is sent.
    routes: list[RouteConfig] | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    logging: LoggingConfig = LoggingConfig()
    rules: list[RuleConfig] = []  # noqa: RUF012 (a pydantic field)
    rules_interval: Duration = 30.0  # how often time-based rules (stalled, overrun) are checked
    digest: DigestConfig | None = None  # off unless configured
    heartbeat: HeartbeatConfig | None = None  # off unless configured
    http: HttpConfig | None = None  # /healthz /readyz /metrics; off unless configured

    @property
    def effective_routes(self) -> list[RouteConfig]:
        if self.routes is None:
            return [RouteConfig(sinks=[s.name for s in self.sinks])]
        return self.routes


def check_references(config: Config) -> None:
    """Unique names, and every sink or source a route, the digest or a rule names exists;
    the first mistake found raises :class:`ConfigError` naming its field."""
    _unique((rule.key, "rules", "two rules are called {!r}: name them") for rule in config.rules)
    sources = _unique(
        (source.name, "sources", "duplicate source name {!r}") for source in config.sources
    )
    sinks = _unique((sink.name, "sinks", "duplicate sink name {!r}") for sink in config.sinks)
    for r, route in enumerate(config.routes or []):
        _known(route.sinks, sinks, f"routes[{r}].sinks", "sink")
        patterns = [n for n in route.match.source or [] if any(c in n for c in "*?[")]
        _known(route.match.source or [], sources, f"routes[{r}].match.source", "source", patterns)
    if config.digest is not None:
        if config.digest.period > config.delivery.retention:
            raise ConfigError(
                "digest.period",
                "longer than delivery.retention: the digest would miss what "
                "housekeeping already forgot",
            )
        _known(config.digest.sinks, sinks, "digest.sinks", "sink")
    for i, rule in enumerate(config.rules):
        _known(rule.sources or [], sources, f"rules[{i}].sources", "source")
    _templates_fit_workflows(config)


def _templates_fit_workflows(config: Config) -> None:
    """With a Workflows source, a sink's templates must render its transitions too (each
    sink checked them against the other families when it loaded)."""
    if not any(isinstance(s, WorkflowsSourceConfig) for s in config.sources):
        return
    for i, sink in enumerate(config.sinks):
        if sink.templates is None:
            continue
        try:
            MessageTemplates(sink.name, sink.templates.model_dump()).check(WORKFLOW_SAMPLES)
        except ValueError as exc:
            where, why = f"sinks[{i}].templates", f"{exc}: a Workflows source is configured"
            raise ConfigError(where, why) from None


def _unique(entries: Iterable[tuple[str, str, str]]) -> set[str]:
    """The names of one section, or :class:`ConfigError` at the first one given twice."""
    seen: set[str] = set()
    for i, (name, section, message) in enumerate(entries):
        if name in seen:
            raise ConfigError(f"{section}[{i}].name", message.format(name))
        seen.add(name)
    return seen


def _known(
    names: list[str], known: set[str], at: str, what: str, patterns: Iterable[str] = ()
) -> None:
    """Every name is in ``known`` (globs in ``patterns`` match later, at routing time)."""
    skip = set(patterns)
    for i, name in enumerate(names):
        if name not in known and name not in skip:
            raise ConfigError(f"{at}[{i}]", f"unknown {what} {name[:64]!r}")
