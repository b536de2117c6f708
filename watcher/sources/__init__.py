"""Sources: one module per API family, each a :class:`~watcher.sources.listing.ListingSource`."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from watcher.abc import Source
from watcher.config import BatchSourceConfig, SourceConfig


def build_source(
    config: SourceConfig,
    client: httpx.AsyncClient,
    *,
    observe: Callable[[str, int | None], None] | None = None,
) -> Source:
    """The source ``config`` names; ``observe`` is told of each request its API client
    sends: (route, HTTP status, or ``None`` when no answer came)."""
    if isinstance(config, BatchSourceConfig):
        from watcher.sources.batch import BatchSource

        return BatchSource(config, client, observe=observe)
    from watcher.sources.fine_tuning import FineTuningSource

    return FineTuningSource(config, client, observe=observe)
