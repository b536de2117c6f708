"""The ``sinks:`` section: where transitions go (webhook, console, Slack, email, PagerDuty).

The webhook secret and header rules are the sink's own (:mod:`watcher.model.webhooks`), and
templates are compiled here with the renderer's code, so ``check-config`` refuses exactly what
the sinks would.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, ClassVar, Literal, Self

import structlog
from pydantic import Field, field_validator, model_validator

from watcher.config.fields import ConfigModel, Duration, Name, StrList, Wait, check_http_url
from watcher.model.secrets import Secret
from watcher.model.webhooks import check_headers, decode_secret
from watcher.render.templates import CLASSIC, MessageTemplates

log = structlog.get_logger(__name__)


def _deprecated_link(sink: str, template: str | None) -> None:
    """A sink-level ``job_url_template`` still works, for fine-tuning jobs only: say so."""
    if template is not None:
        log.warning(
            "config_deprecated",
            option=f"sinks[{sink}].job_url_template",
            hint="links are per source now: set sources[].job_url_template; the sink's own "
            "template only links fine-tuning jobs of sources without one",
        )


class TemplatesConfig(ConfigModel):
    """Jinja2 templates overriding a sink's built-in message (see watcher/render/templates.py)."""

    subject: str | None = None
    text: str | None = None
    html: str | None = None


class _SinkConfig(ConfigModel):
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
            try:
                # The Workflows samples are left out: a template written before them must
                # not turn a config invalid (``watcher render`` shows them).
                MessageTemplates(self.name, self.templates.model_dump()).check(CLASSIC)
            except ValueError as exc:
                raise ValueError(f"sink {self.name!r}: {exc}") from None
        return self


class WebhookSinkConfig(_SinkConfig):
    kind: Literal["webhook"]
    url: Secret  # may carry a token: treated as a secret, shown redacted
    secret: Secret | None = None
    timeout: Duration = 10.0
    headers: dict[str, str] = {}  # noqa: RUF012 (a pydantic field)
    # Bodies past this many bytes have their data trimmed (marked data.truncated: true).
    max_body: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 256 * 1024

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


class SlackActionsConfig(ConfigModel):
    """Who may act from a Slack card's buttons (bot mode with interactivity)."""

    allowed_users: StrList | None = None  # Slack user ids (U…); unset: anyone in the channel
    allowed_channels: StrList | None = None  # channel ids (C…); unset: any channel
    cancel: bool = False  # the *Cancel job* button: off unless asked for

    @field_validator("allowed_users", "allowed_channels")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if not _SLACK_ID.fullmatch(item):
                raise ValueError(
                    f"not a Slack id (letters and digits, e.g. U0123ABC): {item[:80]!r}"
                )
        return value


_SLACK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SlackSinkConfig(_SinkConfig):
    """Incoming webhook (``webhook_url``) or bot token (``token`` + ``channel``: one card per
    job, edited in place, its thread the history).

    Interactivity (bot mode only): ``signing_secret`` verifies the requests Slack sends to
    ``POST /slack/actions``; ``app_token`` (``xapp-…``) opens Socket Mode instead of a public
    URL. Either one puts buttons on the cards; ``actions`` says who may press them."""

    kind: Literal["slack"]
    webhook_url: Secret | None = None
    token: Secret | None = None
    channel: str | None = None
    api_url: str = "https://slack.com/api"
    # Deprecated: use sources[].job_url_template. Links fine-tuning jobs of sources without
    # a template of their own, e.g. https://console.example/{source}/{job_id}.
    job_url_template: str | None = None
    timeout: Duration = 10.0
    signing_secret: Secret | None = None
    app_token: Secret | None = None
    actions: SlackActionsConfig | None = None
    DEFAULTS: ClassVar[tuple[float, int, int | None]] = (2.0, 50, 60)  # Slack: 1 msg/s

    @property
    def interactive(self) -> bool:
        """Buttons on the cards: a way in for the clicks is configured."""
        return self.signing_secret is not None or self.app_token is not None

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, value: Secret | None) -> Secret | None:
        if value is not None and not value.get().startswith("xapp-"):
            raise ValueError(
                "an app-level token starts with xapp- (Basic Information > App-Level Tokens)"
            )
        return value

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
        webhook = self.webhook_url is not None
        for name in ("signing_secret", "app_token", "actions"):
            if webhook and getattr(self, name) is not None:
                raise ValueError(f"{name}: interactivity needs bot mode (token + channel)")
        if self.actions is not None and not self.interactive:
            raise ValueError("actions: give a signing_secret or an app_token for the clicks")
        _deprecated_link(self.name, self.job_url_template)
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
    job_url_template: str | None = None  # deprecated: see SlackSinkConfig.job_url_template
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
        _deprecated_link(self.name, self.job_url_template)
        return self


class PagerDutySinkConfig(_SinkConfig):
    """Events API v2: FAILED, TIMEOUT_EXCEEDED, TIMED_OUT, TERMINATED, retry storms,
    stalled… trigger; SUCCESS, CANCELLED, COMPLETED, CANCELED and resolved alerts resolve
    (one dedup_key per job or execution)."""

    kind: Literal["pagerduty"]
    routing_key: Secret
    url: str = "https://events.pagerduty.com/v2/enqueue"
    severity: dict[str, Literal["critical", "error", "warning", "info"]] = {}  # noqa: RUF012 (a pydantic field)
    # default: SUCCESS, CANCELLED, COMPLETED, CANCELED; a list naming SUCCESS or COMPLETED
    # means both, CANCELLED or CANCELED both (each family's word).
    resolve_on: StrList | None = None
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


SinkConfig = Annotated[
    WebhookSinkConfig | ConsoleSinkConfig | SlackSinkConfig | EmailSinkConfig | PagerDutySinkConfig,
    Field(discriminator="kind"),
]
