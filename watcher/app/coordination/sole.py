"""One process alone (SQLite, or ``watcher once``): it owns every source and every chore."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence

import anyio


class SoleOwnership:
    def __init__(self, sources: Sequence[str], *, replica: str) -> None:
        self.replica = replica
        self.leader = True
        now = time.time()
        self.owned: dict[str, float] = dict.fromkeys(sources, now)

    def owners(self) -> Mapping[str, str | None]:
        return dict.fromkeys(self.owned, self.replica)

    def replicas(self) -> Collection[str] | None:
        return None  # alone: nobody else's claims to release

    async def run(self, on_acquired: Callable[[str], None], on_lost: Callable[[str], None]) -> None:
        await anyio.sleep_forever()

    async def take_free(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
