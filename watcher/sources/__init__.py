"""Sources: one module per API family, each implementing :class:`watcher.abc.Source`."""

from __future__ import annotations

import httpx

from watcher.abc import Source
from watcher.config import SourceConfig


def build_source(config: SourceConfig, client: httpx.AsyncClient) -> Source:
    from watcher.sources.fine_tuning import FineTuningSource

    return FineTuningSource(config, client)
