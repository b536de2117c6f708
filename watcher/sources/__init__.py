"""Sources: one module per API family, each a :class:`~watcher.sources.listing.ListingSource`
(composed into a :class:`~watcher.sources.budgeted.BudgetedSource` under a request budget).

Owns the polling of the APIs: paging, details, request budgets, the families' parsers and
facts. May import :mod:`watcher.detect`, :mod:`watcher.config`, :mod:`watcher.abc`,
:mod:`watcher.model` and below; never :mod:`watcher.sinks` or :mod:`watcher.stores`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2 as httpx

from watcher.abc import Source
from watcher.config import BatchSourceConfig, SourceConfig, WorkflowsSourceConfig
from watcher.sources.answers import ByteBudget
from watcher.sources.batch import BatchSource
from watcher.sources.budget import RequestBudget
from watcher.sources.budgeted import budgeted
from watcher.sources.fine_tuning import FineTuningSource
from watcher.sources.listing import ListingSource
from watcher.sources.workflows import WorkflowsSource


def build_source(
    config: SourceConfig,
    client: httpx.AsyncClient,
    *,
    observe: Callable[[str, int | None], None] | None = None,
    in_flight: ByteBudget | None = None,
) -> Source:
    """The source ``config`` names; ``observe`` is told of each request its API client
    sends: (route, HTTP status, or ``None`` when no answer came); ``in_flight`` bounds the
    bytes of API answers buffered at once (the daemon shares one among its sources)."""
    if isinstance(config, WorkflowsSourceConfig):
        # Paged by token: under a budget its requests wait for room, cycles stay whole.
        per_minute = config.max_requests_per_minute
        budget = None if per_minute is None else RequestBudget(per_minute, interval=config.interval)
        return WorkflowsSource(config, client, observe=observe, budget=budget, in_flight=in_flight)
    family: type[ListingSource] = (
        BatchSource if isinstance(config, BatchSourceConfig) else FineTuningSource
    )
    if config.max_requests_per_minute is not None:
        return budgeted(family, config, client, observe=observe, in_flight=in_flight)
    return family(config, client, observe=observe, in_flight=in_flight)
