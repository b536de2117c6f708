"""Fakes for the record stage's tests (and the app's): a clock set by hand, the metrics and
the dispatcher's wake as counters, one fine-tuning source's config, a SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from watcher.config import SourceConfig, validate_config
from watcher.model.transitions import Transition
from watcher.stores import open_store
from watcher.stores.sql import SqlStore


class Clock:
    """A clock that says ``now`` until told otherwise."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counted:
    """The metrics a cycle reports: its outcomes, and the types of the transitions
    counted, in order."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.types: list[str] = []
        self.silenced = 0

    def poll_done(self, source: str, outcome: str, seconds: float) -> None:
        self.outcomes.append(outcome)

    def transitions_recorded(self, transitions: Iterable[Transition]) -> None:
        self.types.extend(t.type for t in transitions)

    def transitions_silenced(self, count: int) -> None:
        self.silenced += count


class Bell:
    """The dispatcher's wake: how many times it rang."""

    def __init__(self) -> None:
        self.rings = 0

    def __call__(self) -> None:
        self.rings += 1


def ft_config(**options: Any) -> SourceConfig:
    """The config of fine-tuning source ``ft`` (with ``options``) beside a console sink."""
    config = validate_config(
        {"sources": [{"name": "ft", "kind": "mistral-fine-tuning", "api_key": "k", **options}],
         "sinks": [{"name": "hooks", "kind": "console"}]},
        env={},
    )  # fmt: skip
    return config.sources[0]


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """An open SQLite store in a fresh file under ``tmp_path``."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(store, SqlStore)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()
