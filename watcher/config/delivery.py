"""The ``delivery:`` section: retries, backoff, dead-lettering and retention."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from watcher.config.fields import ConfigModel, Duration


class DeliveryConfig(ConfigModel):
    max_age: Duration = 86400.0  # then dead-letter
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 600.0
    concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    retention: Duration = 7 * 86400.0  # delivered outbox rows are kept this long
