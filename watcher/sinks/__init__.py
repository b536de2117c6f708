"""Sinks: one module or package per kind (webhook, console, slack, email, pagerduty); they
format and deliver, and never import each other. What several share lives below them:
hygiene of shown text in :mod:`watcher.render.text`, the HTTP exchange and the meaning of an
answer in :mod:`watcher.deliver.exchange`, secret scrubbing in :mod:`watcher.deliver.redact`.

:func:`build_sink` makes one from its config, with the scrubber of that config's secrets
(:func:`scrubber_for`).
May import :mod:`watcher.deliver`, :mod:`watcher.config`, :mod:`watcher.render` and below."""

from __future__ import annotations

from collections.abc import Mapping

import httpx2 as httpx

from watcher.abc import Sink, SinkState
from watcher.config import (
    ConsoleSinkConfig,
    EmailSinkConfig,
    PagerDutySinkConfig,
    SinkConfig,
    SlackSinkConfig,
    WebhookSinkConfig,
    secrets_of,
)
from watcher.deliver.redact import Scrubber
from watcher.render.templates import MessageTemplates


def scrubber_for(config: SinkConfig) -> Scrubber:
    """The scrubber of one sink's config: every ``Secret`` in it (``secrets_of``), plus a
    webhook's extra header values and an SMTP login's AUTH forms."""
    plain: list[str] = []
    username = None
    if isinstance(config, WebhookSinkConfig):
        plain = list(config.headers.values())
    if isinstance(config, EmailSinkConfig):
        username = config.username
    return Scrubber.of_secrets(*secrets_of(config), username=username, plain=plain)


def build_sink(
    config: SinkConfig,
    client: httpx.AsyncClient,
    state: SinkState,
    *,
    job_links: Mapping[str, str] | None = None,
) -> Sink:
    """The sink ``config`` describes; it receives the daemon's HTTP client and the store's
    sink state, and builds neither.

    ``job_links`` maps a source's name to its ``job_url_template``: the link of that
    source's jobs in Slack and email messages. A sink's own ``job_url_template``
    (deprecated) only links fine-tuning jobs of sources without one."""
    # Each sink's module is imported when a config names it: a daemon without an email
    # sink never loads aiosmtplib, one without Slack never loads its Block Kit layouts.
    scrubber = scrubber_for(config)
    templates = (
        MessageTemplates(config.name, config.templates.model_dump())
        if config.templates is not None
        else None
    )
    if isinstance(config, ConsoleSinkConfig):
        from watcher.sinks.console import ConsoleSink

        return ConsoleSink(config.name)
    if isinstance(config, WebhookSinkConfig):
        from watcher.sinks.webhook import WebhookSink

        return WebhookSink(
            config.name,
            config.url.get(),
            secret=config.secret,
            client=client,
            timeout=config.timeout,
            headers=config.headers,
            scrubber=scrubber,
            max_body=config.max_body,
        )
    if isinstance(config, SlackSinkConfig):
        from watcher.sinks.slack import SlackSink
        from watcher.sinks.slack.card import Buttons

        buttons = Buttons(
            interactive=config.interactive,
            cancel=config.actions is not None and config.actions.cancel,
        )
        return SlackSink(
            config.name,
            client=client,
            webhook_url=config.webhook_url,
            token=config.token,
            channel=config.channel,
            api_url=config.api_url,
            state=state,
            templates=templates,
            job_url_template=config.job_url_template,
            job_links=job_links,
            timeout=config.timeout,
            scrubber=scrubber,
            buttons=buttons,
        )
    if isinstance(config, EmailSinkConfig):
        from watcher.sinks.email import EmailSink

        return EmailSink(
            config.name,
            host=config.host,
            port=config.port,
            tls=config.tls,
            sender=config.sender,
            recipients=list(config.to),
            username=config.username,
            password=config.password,
            ca_file=config.ca_file,
            timeout=config.timeout,
            templates=templates,
            job_url_template=config.job_url_template,
            job_links=job_links,
            scrubber=scrubber,
        )
    assert isinstance(config, PagerDutySinkConfig)
    from watcher.sinks.pagerduty import PagerDutySink

    return PagerDutySink(
        config.name,
        client=client,
        routing_key=config.routing_key,
        url=config.url,
        severity=config.severity or None,
        resolve_on=config.resolve_on,
        timeout=config.timeout,
        scrubber=scrubber,
    )
