"""What a loaded config says, told to a human (``check-config``) or to the log redactor
(its secret values)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from watcher.config.cron import upcoming
from watcher.config.model import Config
from watcher.config.sinks import SlackSinkConfig, WebhookSinkConfig
from watcher.config.sources import FineTuningSourceConfig, WorkflowsSourceConfig
from watcher.model.secrets import Secret, masked_url, url_credentials


def summary(config: Config, now: datetime | None = None) -> str:
    """A short human summary for ``check-config`` (no secrets); the digest's next fire
    times after ``now`` (default: the wall clock)."""
    lines = [f"state: {masked_url(config.state.url)}"]
    lines.append(f"sources ({len(config.sources)}):")
    for source in config.sources:
        if isinstance(source, FineTuningSourceConfig):
            extra = f"checkpoints={'on' if source.track_checkpoints else 'off'}"
        elif isinstance(source, WorkflowsSourceConfig):
            streams = f"up to {source.max_streams}" if source.stream else "off"
            names = ", ".join(source.workflows) if source.workflows else "all"
            extra = f"workflows=[{names}], streams {streams}"
        else:
            milestones = ", ".join(f"{m:g}%" for m in source.progress_milestones)
            extra = f"milestones=[{milestones}], errors_rising at {source.error_ratio:.0%}"
        lines.append(
            f"  - {source.name}: {source.kind} at {masked_url(source.base_url)},"
            f" every {source.interval:g}s, on_start={source.on_start}, {extra}"
        )
    lines.append(f"sinks ({len(config.sinks)}):")
    for sink in config.sinks:
        extra = ""
        if isinstance(sink, WebhookSinkConfig):
            extra = f" (signed: {'yes' if sink.secret else 'no'})"
        elif isinstance(sink, SlackSinkConfig) and sink.interactive:
            ways = [w for w, on in (("/slack/actions", sink.signing_secret),
                                    ("socket mode", sink.app_token)) if on]  # fmt: skip
            cancel = "on" if sink.actions is not None and sink.actions.cancel else "off"
            extra = f" (buttons via {' + '.join(ways)}, cancel {cancel})"
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
    if config.digest is not None:
        digest = config.digest
        times = upcoming(digest.cron, digest.timezone, now or datetime.now(UTC), 3)
        when = ", ".join(t.strftime("%a %Y-%m-%d %H:%M %Z") for t in times)
        lines.append(f"digest: {digest.cron!r} in {digest.timezone}, next: {when}")
    return "\n".join(lines)


def secrets_of(config: object) -> list[str]:
    """Every secret value in the config (API keys, webhook secrets, URLs, tokens, passwords,
    and the credentials in plain URLs: ``state.url``'s password, a query token of a
    ``base_url``), for the log redactor."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, Secret):
            found.append(node.get())
        elif isinstance(node, str):
            found.extend(url_credentials(node))
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
