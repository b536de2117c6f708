"""Sources: one module per API family, each a :class:`~watcher.sources.listing.ListingSource`."""

from __future__ import annotations

import httpx

from watcher.abc import Source
from watcher.config import BatchSourceConfig, SourceConfig


def build_source(config: SourceConfig, client: httpx.AsyncClient) -> Source:
    if isinstance(config, BatchSourceConfig):
        from watcher.sources.batch import BatchSource

        return BatchSource(config, client)
    from watcher.sources.fine_tuning import FineTuningSource

    return FineTuningSource(config, client)
