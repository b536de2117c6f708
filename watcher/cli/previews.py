"""``watcher render``: what a sink would send for a sample transition, without sending it
(the user's templates first, then the sink's own layout).

A Slack sink with a ``text`` template also shows its built-in card (what it sends when the
template renders nothing) and a link to Slack's Block Kit Builder for each; ``--format html``
gives an email sink's HTML part alone (``-o FILE`` to open it in a browser).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from watcher.config import Config, SinkConfig
from watcher.model.outbox import Envelope
from watcher.render.templates import SAMPLES, MessageTemplates, sample_envelopes

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
BLOCK_KIT_BUILDER = "https://app.slack.com/block-kit-builder#"


def render(
    config: Config, sink_name: str, sample: str, *, fmt: str = "all", out: str | None = None
) -> int:
    """``watcher render``: what a sink would send for a sample transition (nothing is sent)."""
    sink = next((s for s in config.sinks if s.name == sink_name), None)
    if sink is None:
        print(f"watcher: no sink named {sink_name!r}", file=sys.stderr)
        return EXIT_USAGE
    if sample not in SAMPLES:
        print(f"watcher: no sample {sample!r} (one of {', '.join(SAMPLES)})", file=sys.stderr)
        return EXIT_USAGE
    if fmt == "html" and sink.kind != "email":
        print(f"watcher: --format html is for an email sink ({sink_name!r} is {sink.kind})",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    batch = sample_envelopes(sample)
    text = _html(sink, batch, config) if fmt == "html" else _everything(sink, batch, config)
    if out is None:
        print(text)
        return EXIT_OK
    try:
        Path(out).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"watcher: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{sample} as {sink_name} would send it: {out}", file=sys.stderr)
    return EXIT_OK


def _everything(sink: SinkConfig, batch: list[Envelope], config: Config) -> str:
    parts: list[str] = []
    templates = MessageTemplates(sink.name, sink.templates.model_dump() if sink.templates else {})
    for part in MessageTemplates.PARTS:
        rendered = templates.render(part, batch)
        if rendered is not None:
            parts.append(f"--- {part} (template) ---\n{rendered}")
    built = _preview(sink, batch, config)
    parts.append(f"--- {sink.kind} message ---\n{_shown(built)}")
    if sink.kind == "slack":
        parts.append(_slack_link(built))
        if sink.templates is not None and sink.templates.text is not None:
            plain = _preview(sink.model_copy(update={"templates": None}), batch, config)
            parts.append(
                "--- slack message without the text template (sent when it renders nothing) "
                f"---\n{_shown(plain)}\n{_slack_link(plain)}"
            )
    return "\n".join(parts)


def _shown(built: object) -> str:
    return built if isinstance(built, str) else json.dumps(built, indent=2, ensure_ascii=False)


def _slack_link(payload: object) -> str:
    """Slack's Block Kit Builder showing ``payload``'s blocks (nothing is sent: the blocks
    travel in the link's fragment, which the browser keeps to itself)."""
    blocks = payload.get("blocks", []) if isinstance(payload, dict) else []
    body = json.dumps({"blocks": blocks}, separators=(",", ":"), ensure_ascii=False)
    return f"preview: {BLOCK_KIT_BUILDER}{quote(body, safe='')}"


def _html(sink: SinkConfig, batch: list[Envelope], config: Config) -> str:
    """The HTML part of the email an email sink would send."""
    built = _sink(sink, config)
    message = built.build(batch)
    body = message.get_body(preferencelist=("html",))
    return str(body.get_content()) if body is not None else ""


def _sink(sink: SinkConfig, config: Config) -> Any:
    # heavy: httpx and every sink with its client library
    import httpx2 as httpx

    from watcher.sinks import build_sink

    class _NoState:
        async def get_sink_state(self, sink: str, key: str) -> str | None:
            return None

        async def put_sink_state(self, sink: str, key: str, value: str) -> None:
            return None

        async def put_sink_state_once(self, sink: str, key: str, value: str) -> bool:
            return False

        async def forget_sink_state(self, sink: str, *, before: float) -> int:
            return 0

    links = {s.name: s.job_url_template for s in config.sources if s.job_url_template}
    return build_sink(sink, httpx.AsyncClient(), _NoState(), job_links=links)


def _preview(sink: SinkConfig, batch: list[Envelope], config: Config) -> object:
    """The sink's own rendering of ``batch``, without sending it."""
    from watcher.abc import Previews

    built = _sink(sink, config)
    if isinstance(built, Previews):
        return built.preview(batch)
    return batch[0].transition.payload(batch[0].detected_at)
