"""``watcher render``: what a sink would send for a sample transition, without sending it
(the user's templates first, then the sink's own layout)."""

from __future__ import annotations

import json
import sys

from watcher.config import Config, SinkConfig
from watcher.model.outbox import Envelope
from watcher.render.templates import SAMPLES, MessageTemplates, sample_envelopes

EXIT_OK, EXIT_USAGE = 0, 2


def render(config: Config, sink_name: str, sample: str) -> int:
    """``watcher render``: what a sink would send for a sample transition (nothing is sent)."""
    sink = next((s for s in config.sinks if s.name == sink_name), None)
    if sink is None:
        print(f"watcher: no sink named {sink_name!r}", file=sys.stderr)
        return EXIT_USAGE
    if sample not in SAMPLES:
        print(f"watcher: no sample {sample!r} (one of {', '.join(SAMPLES)})", file=sys.stderr)
        return EXIT_USAGE
    batch = sample_envelopes(sample)
    templates = MessageTemplates(sink.name, sink.templates.model_dump() if sink.templates else {})
    for part in MessageTemplates.PARTS:
        rendered = templates.render(part, batch)
        if rendered is not None:
            print(f"--- {part} (template) ---\n{rendered}")
    built = _built_in(sink, batch, config)
    print(f"--- {sink.kind} message ---")
    print(built if isinstance(built, str) else json.dumps(built, indent=2, ensure_ascii=False))
    return EXIT_OK


def _built_in(sink: SinkConfig, batch: list[Envelope], config: Config) -> object:
    """The sink's own rendering of ``batch``, without sending it."""
    # heavy: httpx and every sink with its client library
    import httpx

    from watcher.abc import Previews
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
    built = build_sink(sink, httpx.AsyncClient(), _NoState(), job_links=links)
    if isinstance(built, Previews):
        return built.preview(batch)
    return batch[0].transition.payload(batch[0].detected_at)
