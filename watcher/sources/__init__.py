"""Sources: one module per API family, each a :class:`~watcher.sources.listing.ListingSource`
(composed into a :class:`~watcher.sources.budgeted.BudgetedSource` under a request budget).

Owns the polling of the APIs: paging, details, request budgets, the families' parsers and
facts. May import :mod:`watcher.detect`, :mod:`watcher.config`, :mod:`watcher.abc`,
:mod:`watcher.model` and below; never :mod:`watcher.sinks` or :mod:`watcher.stores`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from watcher.abc import Source
from watcher.config import BatchSourceConfig, SourceConfig
from watcher.sources.batch import BatchSource
from watcher.sources.budgeted import budgeted
from watcher.sources.fine_tuning import FineTuningSource
from watcher.sources.listing import ListingSource


def build_source(
    config: SourceConfig,
    client: httpx.AsyncClient,
    *,
    observe: Callable[[str, int | None], None] | None = None,
) -> Source:
    """The source ``config`` names; ``observe`` is told of each request its API client
    sends: (route, HTTP status, or ``None`` when no answer came)."""
    family: type[ListingSource] = (
        BatchSource if isinstance(config, BatchSourceConfig) else FineTuningSource
    )
    if config.max_requests_per_minute is not None:
        return budgeted(family, config, client, observe=observe)
    return family(config, client, observe=observe)
