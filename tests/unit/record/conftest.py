from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.record.fakes import sqlite_store
from watcher.stores.sql import SqlStore


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """An open SQLite store in a fresh file (the tests that need no other kind)."""
    async with sqlite_store(tmp_path) as s:
        yield s
