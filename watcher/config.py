"""The configuration file: one YAML document, validated into :class:`Config`.

``load_config(path)`` applies defaults, expands ``${VAR}`` from the environment, reads the
``*_file`` variants of secrets, validates, and raises only :class:`ConfigError` naming the
exact field (``sinks[1].url: …``). Secrets become :class:`~watcher.secrets.Secret` and never
appear in errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from watcher.exceptions import ConfigError
from watcher.model.secrets import Secret
from watcher.model.webhooks import check_headers, decode_secret

DEFAULT_PATH = Path("/etc/watcher/config.yaml")

# Keys whose value may be given as ``<key>_file`` (Kubernetes secret mounts, systemd
# credentials). ``ca_file`` and friends are plain paths, not secret files.
SECRET_FILE_KEYS = frozenset(
    {"api_key", "secret", "url", "webhook_url", "token", "password", "routing_key"}
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MAX_DURATION = 3650 * 86400.0


def check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host and a valid port, or ``ValueError``."""
    import httpx

    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ValueError("must be a valid http:// or https:// URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms``, ``2d`` or a bare number."""
    if isinstance(value, bool):
        raise ValueError("invalid duration (use e.g. 30s, 5m, 1h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text or _DURATION.sub("", text) != "" or not _DURATION.match(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"invalid duration {value[:40]!r} (use e.g. 30s, 5m, 1h)"
                ) from None
        else:
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    else:
        raise ValueError("invalid duration (use e.g. 30s, 5m, 1h)")
    if not seconds > 0 or seconds != seconds:
        raise ValueError("duration must be positive")
    if seconds > MAX_DURATION:
        raise ValueError("duration must be at most 3650d")
    return seconds


def parse_wait(value: Any) -> float:
    """A duration that may be zero (``0``, ``0s``): no wait at all."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration(value)


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$|^\d+(\.\d+)?$"},
    ],
    "description": "seconds, or a duration such as 250ms, 30s, 5m, 1h30m, 2d",
}


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value[:64]!r}") from None
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]  # an IANA name such as Europe/Paris
Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
Wait = Annotated[
    float, BeforeValidator(parse_wait), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], BeforeValidator(_listify)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceBaseConfig(_Model):
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
    progress_milestones: list[Percent] = [50.0, 90.0]
    # batch.job.errors_rising fires once per RUNNING job whose failed share of processed
    # requests reaches error_ratio, once at least error_min_requests were processed.
    error_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1
    error_min_requests: Annotated[int, Field(ge=1)] = 20


SourceConfig = Annotated[FineTuningSourceConfig | BatchSourceConfig, Field(discriminator="kind")]


class TemplatesConfig(_Model):
    """Jinja2 templates overriding a sink's built-in message (see watcher/templates.py)."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None


class _SinkConfig(_Model):
    """What every sink has: a name, grouping and a rate limit."""

    name: Name
    # Transitions that arrive within group_wait of the first go out as one message (up to
    # group_max); past max_per_minute messages, the rest waits and joins the next message.
    group_wait: Wait | None = None  # default per kind
    group_max: Annotated[int, Field(ge=1, le=1000)] | None = None
    max_per_minute: Annotated[int, Field(ge=1)] | None = None
    templates: TemplatesConfig | None = None

    # (group_wait, group_max, max_per_minute) when not configured
    DEFAULTS: ClassVar[tuple[float, int, int | None]] = (0.0, 1, None)

    @property
    def grouping(self) -> tuple[float, int, int | None]:
        wait, size, rate = self.DEFAULTS
        return (
            self.group_wait if self.group_wait is not None else wait,
            self.group_max if self.group_max is not None else size,
            self.max_per_minute if self.max_per_minute is not None else rate,
        )

    @model_validator(mode="after")
    def _templates_render(self) -> Self:
        if self.templates is not None:
            from watcher.render.templates import MessageTemplates

            try:
                MessageTemplates(self.name, self.templates.model_dump()).check()
            except ValueError as exc:
                raise ValueError(f"sink {self.name!r}: {exc}") from None
        return self


class WebhookSinkConfig(_SinkConfig):
    kind: Literal["webhook"]
    url: Secret  # may carry a token: treated as a secret, shown redacted
    secret: Secret | None = None
    timeout: Duration = 10.0
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: Secret) -> Secret:
        check_http_url(value.get())
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)
        return value

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: Secret | None) -> Secret | None:
        if value is not None:
            decode_secret(value.get())  # the sink's own rule, so check-config agrees with it
        return value


class ConsoleSinkConfig(_SinkConfig):
    kind: Literal["console"]


class SlackSinkConfig(_SinkConfig):
    """Incoming webhook (``webhook_url``) or bot token (``token`` + ``channel``: one thread
    per job)."""

    kind: Literal["slack"]
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api"
    job_url_template: str | None = None  # e.g. https://console.example/{source}/{job_id}
    timeout: Duration = 10.0
    DEFAULTS: ClassVar[tuple[float, int, int | None]] = (2.0, 50, 60)  # Slack: 1 msg/s

    @field_validator("webhook_url")
    @classmethod
    def _hook_url(cls, value: Secret | None) -> Secret | None:
        if value is not None:
            check_http_url(value.get())
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError("give either webhook_url (incoming webhook) or token + channel")
        if self.token is not None and not self.channel:
            raise ValueError("a bot token needs a channel")
        return self


class EmailSinkConfig(_SinkConfig):
    kind: Literal["email"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    tls: Literal["starttls", "tls", "none"] = "starttls"  # none only when written
    ca_file: str | None = None  # trust a private CA
    username: str | None = None
    password: Secret | None = None
    sender: str = Field(alias="from")
    to: Annotated[StrList, Field(min_length=1)]
    timeout: Duration = 30.0
    job_url_template: str | None = None
    DEFAULTS: ClassVar[tuple[float, int, int | None]] = (10.0, 100, 10)

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"cannot read {value[:200]}")
        return value

    @field_validator("sender", "to")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        for address in [value] if isinstance(value, str) else value:
            if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+", address):
                raise ValueError(f"not an email address: {address[:100]!r}")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        loopback = self.host in ("localhost", "::1") or self.host.startswith("127.")
        if self.password is not None and self.tls == "none" and not loopback:
            raise ValueError("a password is never sent in plaintext: use tls: starttls or tls")
        return self


class PagerDutySinkConfig(_SinkConfig):
    """Events API v2: FAILED, TIMEOUT_EXCEEDED, stalled… trigger; SUCCESS, CANCELLED and
    resolved alerts resolve (one dedup_key per job)."""

    kind: Literal["pagerduty"]
    routing_key: Secret
    url: str = "https://events.pagerduty.com/v2/enqueue"
    severity: dict[str, Literal["critical", "error", "warning", "info"]] = {}
    resolve_on: StrList | None = None  # default: SUCCESS, CANCELLED
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


SinkConfig = Annotated[
    WebhookSinkConfig | ConsoleSinkConfig | SlackSinkConfig | EmailSinkConfig | PagerDutySinkConfig,
    Field(discriminator="kind"),
]


class MatchConfig(_Model):
    """Keys combine with AND, listed values with OR; values are exact strings or globs."""

    type: StrList | None = None
    status: StrList | None = None
    previous_status: StrList | None = None
    source: StrList | None = None
    job_type: StrList | None = None
    model: StrList | None = None
    suffix: StrList | None = None


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class MuteWindow(_Model):
    """When a route's sinks stay quiet: on ``days`` (default every day), ``between``
    ``HH:MM-HH:MM`` (default all day; may wrap past midnight), in ``timezone``."""

    days: StrList = list(WEEKDAYS)
    between: str = "00:00-24:00"
    timezone: TimeZone = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for day in value:
            day = day.strip().lower()[:3]
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day {day!r} (use mon..sun)")
            out.append(day)
        return out

    @field_validator("between")
    @classmethod
    def _between(cls, value: str) -> str:
        if not _CLOCK.match(value.replace(" ", "")):
            raise ValueError("must be HH:MM-HH:MM, e.g. 22:00-07:00")
        return value.replace(" ", "")


class RouteConfig(_Model):
    match: MatchConfig = MatchConfig()
    sinks: Annotated[StrList, Field(min_length=1)]
    continue_: bool = Field(True, alias="continue")
    mute: list[MuteWindow] = []


class StateConfig(_Model):
    url: str = "sqlite:///watcher-state.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            return value
        if value.startswith(("postgresql://", "postgresql+asyncpg://")):
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                url = make_url(value)
            except (ArgumentError, ValueError) as e:
                raise ValueError(f"not a valid PostgreSQL URL: {e}") from None
            if not url.database:
                raise ValueError("names no database: postgresql://USER@HOST:PORT/DATABASE")
            return value
        raise ValueError(
            "must be sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        )


class DeliveryConfig(_Model):
    max_age: Duration = 86400.0  # then dead-letter
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 600.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    retention: Duration = 7 * 86400.0  # delivered outbox rows are kept this long


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _RuleConfig(_Model):
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


RuleConfig = Annotated[
    StalledRuleConfig | OverrunRuleConfig | CostRuleConfig | MetricRuleConfig,
    Field(discriminator="kind"),
]
TimeRuleConfig = StalledRuleConfig | OverrunRuleConfig


class DigestConfig(_Model):
    """A summary of the last ``period`` per source, sent on a cron schedule."""

    cron: str  # crontab: minute hour day month day-of-week, e.g. "0 9 * * MON-FRI"
    timezone: TimeZone = "UTC"
    period: Duration = 86400.0
    sinks: Annotated[StrList, Field(min_length=1)]

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except (ValueError, KeyError) as exc:
            raise ValueError(f"not a crontab expression: {exc}") from None
        fields = value.split()
        if len(fields) == 5 and re.search(r"\d", fields[4]):
            # APScheduler 3 counts weekdays from 0 = Monday, crontab from 0 = Sunday: a
            # number would silently mean another day. Names mean the same everywhere.
            raise ValueError("write the day of week with names (MON-FRI, SAT,SUN), not numbers")
        return value


class HeartbeatConfig(_Model):
    """``watcher.heartbeat`` every ``interval``, for a dead-man's switch."""

    interval: Duration = 300.0


_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>\d{1,5})$")


class HttpConfig(_Model):
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``listen`` (``HOST:PORT``,
    ``[::1]:PORT``, or ``:PORT`` for every interface); off when ``listen`` is absent."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _LISTEN.match(value.strip())
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 (IPv6: [::1]:9464)")
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to bind, or ``None`` when off."""
        if self.listen is None:
            return None
        match = _LISTEN.match(self.listen)
        assert match is not None  # validated above
        host = match["v6"] or match["host"] or "0.0.0.0"  # noqa: S104 (":PORT" asks for it)
        return host, int(match["port"])


class Config(_Model):
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    state: StateConfig = StateConfig()
    sinks: Annotated[list[SinkConfig], Field(min_length=1)]
    # Absent: one route sends everything to every sink. ``routes: []``: nothing is sent.
    routes: list[RouteConfig] | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    logging: LoggingConfig = LoggingConfig()
    rules: list[RuleConfig] = []
    rules_interval: Duration = 30.0  # how often time-based rules (stalled, overrun) are checked
    digest: DigestConfig | None = None  # off unless configured
    heartbeat: HeartbeatConfig | None = None  # off unless configured
    http: HttpConfig | None = None  # /healthz /readyz /metrics; off unless configured

    @property
    def effective_routes(self) -> list[RouteConfig]:
        if self.routes is None:
            return [RouteConfig(sinks=[s.name for s in self.sinks])]
        return self.routes


# --- loading ------------------------------------------------------------------------------


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _expand(node: Any, at: tuple[str | int, ...], env: Mapping[str, str]) -> Any:
    """``${VAR}`` from ``env`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in env:
                raise ConfigError(_path(at), f"undefined environment variable {name}")
            return env[name]

        return _VAR.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand(v, (*at, str(k)), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, (*at, i), env) for i, v in enumerate(node)]
    return node


def _read_secret_files(node: Any, at: tuple[str | int, ...], base: Path) -> Any:
    """Replace ``<key>_file: PATH`` by ``<key>: <file contents>`` for secret keys."""
    if isinstance(node, list):
        return [_read_secret_files(v, (*at, i), base) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        key = str(key)
        stem = key.removesuffix("_file")
        if key.endswith("_file") and stem in SECRET_FILE_KEYS:
            where = _path((*at, key))
            if stem in node:
                raise ConfigError(where, f"give either {stem} or {key}, not both")
            if not isinstance(value, str) or not value:
                raise ConfigError(where, "must be a file path")
            path = Path(os.path.expandvars(value))
            if not path.is_absolute():
                path = base / path
            try:
                out[stem] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(where, f"cannot read {path}: not UTF-8 text") from None
            if not out[stem]:
                raise ConfigError(where, f"{path} is empty")
        else:
            out[key] = _read_secret_files(value, (*at, key), base)
    return out


def _error_path(loc: tuple[str | int, ...], raw: Any) -> str:
    """Pydantic's location without the discriminator tags it inserts (``sinks.1.webhook``)."""
    parts: list[str | int] = []
    node = raw
    for part in loc:
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part not in node
            and (part == node.get("kind"))
        ):
            continue  # discriminated-union tag, not a key of the file
        parts.append(part)
        if isinstance(node, dict):
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return _path(tuple(parts))


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tags = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind (expected one of {tags})"
    if kind == "union_tag_not_found":
        return "kind is missing"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def validate_config(
    raw: Any, *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> Config:
    """A :class:`Config` from an already parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError("", "the config file must be a YAML mapping (sources:, sinks:, …)")
    expanded = _expand(raw, (), os.environ if env is None else env)
    resolved = _read_secret_files(expanded, (), base or Path.cwd())
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = _error_path(tuple(first["loc"]), resolved)
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            where += ".kind"
        raise ConfigError(where, _message(first) + more) from None
    _check_references(config)
    return config


def _check_references(config: Config) -> None:
    rule_keys: dict[str, int] = {}
    for i, rule in enumerate(config.rules):
        if rule.key in rule_keys:
            raise ConfigError(f"rules[{i}].name", f"two rules are called {rule.key!r}: name them")
        rule_keys[rule.key] = i
    seen: dict[str, int] = {}
    for i, source in enumerate(config.sources):
        if source.name in seen:
            raise ConfigError(f"sources[{i}].name", f"duplicate source name {source.name!r}")
        seen[source.name] = i
    sinks: dict[str, int] = {}
    for i, sink in enumerate(config.sinks):
        if sink.name in sinks:
            raise ConfigError(f"sinks[{i}].name", f"duplicate sink name {sink.name!r}")
        sinks[sink.name] = i
    for r, route in enumerate(config.routes or []):
        for s, name in enumerate(route.sinks):
            if name not in sinks:
                raise ConfigError(f"routes[{r}].sinks[{s}]", f"unknown sink {name[:64]!r}")
        for m, name in enumerate(route.match.source or []):
            if name not in seen and not any(c in name for c in "*?["):
                raise ConfigError(f"routes[{r}].match.source[{m}]", f"unknown source {name[:64]!r}")
    if config.digest is not None:
        if config.digest.period > config.delivery.retention:
            raise ConfigError(
                "digest.period",
                "longer than delivery.retention: the digest would miss what "
                "housekeeping already forgot",
            )
        for s, name in enumerate(config.digest.sinks):
            if name not in sinks:
                raise ConfigError(f"digest.sinks[{s}]", f"unknown sink {name[:64]!r}")
    for i, rule in enumerate(config.rules):
        for m, name in enumerate(rule.sources or []):
            if name not in seen:
                raise ConfigError(f"rules[{i}].sources[{m}]", f"unknown source {name[:64]!r}")


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, validate; raises only :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"cannot read {path}: not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: {problem}{where}") from None
    return validate_config(raw, env=env, base=path.parent)


def resolve_path(cli_value: str | None) -> Path:
    """``-c`` first, else ``$WATCHER_CONFIG``, else ``/etc/watcher/config.yaml``."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get("WATCHER_CONFIG"):
        return Path(os.environ["WATCHER_CONFIG"])
    return DEFAULT_PATH


def summary(config: Config) -> str:
    """A short human summary for ``check-config`` (no secrets)."""
    lines = [f"state: {config.state.url}"]
    lines.append(f"sources ({len(config.sources)}):")
    for source in config.sources:
        if isinstance(source, FineTuningSourceConfig):
            extra = f"checkpoints={'on' if source.track_checkpoints else 'off'}"
        else:
            milestones = ", ".join(f"{m:g}%" for m in source.progress_milestones)
            extra = f"milestones=[{milestones}], errors_rising at {source.error_ratio:.0%}"
        lines.append(
            f"  - {source.name}: {source.kind} at {source.base_url},"
            f" every {source.interval:g}s, on_start={source.on_start}, {extra}"
        )
    lines.append(f"sinks ({len(config.sinks)}):")
    for sink in config.sinks:
        extra = ""
        if isinstance(sink, WebhookSinkConfig):
            extra = f" (signed: {'yes' if sink.secret else 'no'})"
        lines.append(f"  - {sink.name}: {sink.kind}{extra}")
    routes = config.effective_routes
    implicit = (
        " (implicit: no routes given, everything goes to every sink)"
        if config.routes is None
        else ""
    )
    lines.append(f"routes ({len(routes)}){implicit}:")
    for route in routes:
        conds = [
            f"{key} in {vals}" for key, vals in route.match.model_dump(exclude_none=True).items()
        ]
        stop = ", stop" if not route.continue_ else ""
        lines.append(f"  - {' and '.join(conds) or 'everything'} -> {', '.join(route.sinks)}{stop}")
    return "\n".join(lines)


def secrets_of(config: object) -> list[str]:
    """Every secret value in the config (API keys, webhook secrets, URLs, tokens, passwords),
    for the log redactor."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, Secret):
            found.append(node.get())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    walk(config)
    return found
