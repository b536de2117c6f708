"""One sink's pass, pipelined: the slots keep sending while the store commits, the accepted
messages are recorded with the next claim, a lease covers every send that may go before its
message, and a store error mid-pass loses nothing the sink accepted."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from watcher.config import DeliveryConfig
from watcher.deliver.dispatch import ROUND_PER_SLOT, Dispatcher
from watcher.model.outbox import Envelope, Routed
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.stores import open_store
from watcher.stores.sql import SqlStore

NOW = 1000.0
LEASE = 30.0


class Sink:
    name = "a"

    def __init__(self) -> None:
        self.got: list[str] = []
        self.started: list[str] = []
        self._more = anyio.Event()

    async def sent(self, count: int) -> None:
        """Until the sink has taken ``count`` messages."""
        while len(self.got) < count:
            await self._more.wait()

    async def send(self, batch: Sequence[Envelope]) -> None:
        self.started.append(batch[0].transition.id)
        await anyio.lowlevel.checkpoint()  # a real exchange awaits the network
        self.got.extend(e.transition.id for e in batch)
        self._more.set()
        self._more = anyio.Event()

    async def aclose(self) -> None:
        pass


class Watched:
    """The store, its write transactions seen (and held, when a test says so)."""

    def __init__(self, store: SqlStore, sink: Sink) -> None:
        self.store = store
        self.sink = sink
        self.claims: list[dict[str, Any]] = []
        self.records = 0
        self.gate: anyio.Event | None = None  # claims after the first wait for it
        self.held = anyio.Event()  # a claim is waiting for the gate
        self.fail_after: int | None = None  # claims after this many raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def claim(self, keys: Sequence[tuple[int, str]], **kw: Any) -> set[tuple[int, str]]:
        if self.fail_after is not None and len(self.claims) >= self.fail_after:
            raise OSError("disk I/O error")
        if self.gate is not None and self.claims:
            self.held.set()
            await self.gate.wait()
        seen = (len(self.sink.started), len(self.sink.got))  # sends started, finished
        got = await self.store.claim(keys, **kw)
        self.claims.append({**kw, "keys": list(keys), "got": got, "seen": seen})
        return got

    async def delivered_all(self, keys: Sequence[tuple[int, str]], *, now: float) -> None:
        self.records += 1
        await self.store.delivered_all(keys, now=now)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(s, SqlStore)
    await s.open()
    yield s
    await s.aclose()


async def setup(store: SqlStore, jobs: int, slots: int) -> tuple[Dispatcher, Watched, Sink]:
    routed = [
        Routed(Transition(id=f"j{n}", type="x", source="ft", job_id=f"j{n}"), ["a"])
        for n in range(jobs)
    ]
    await store.commit("ft", Cursor(), [], routed, now=NOW)
    sink = Sink()
    watched = Watched(store, sink)
    dispatcher = Dispatcher(
        watched,  # type: ignore[arg-type]
        {"a": sink},
        DeliveryConfig(concurrency=slots),
        clock=lambda: NOW,
        rng=random.Random(1),
        lease=LEASE,
    )
    return dispatcher, watched, sink


async def states(store: SqlStore) -> dict[str, str]:
    return {r.transition_id: r.state for r in await store.list_deliveries(state=None, limit=999)}


async def test_the_slots_keep_sending_while_the_next_claim_commits(store: SqlStore) -> None:
    slots = 2
    per_claim = slots * ROUND_PER_SLOT
    dispatcher, watched, sink = await setup(store, 5 * per_claim, slots)
    watched.gate = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run_once)
            await watched.held.wait()
            await sink.sent(per_claim)  # all of the first claim's, the second one held
            assert 1 == len(watched.claims)
            watched.gate.set()
    assert 5 * per_claim == len(sink.got) == len(set(sink.got))
    assert {"delivered"} == set((await states(store)).values())


async def test_accepted_messages_are_recorded_with_the_next_claim(store: SqlStore) -> None:
    """About one write transaction per claim's worth of messages, not two."""
    slots = 2
    per_claim = slots * ROUND_PER_SLOT
    dispatcher, watched, _ = await setup(store, 5 * per_claim, slots)
    await dispatcher.run_once()
    claims = [c for c in watched.claims if c["keys"]]
    assert 5 == len(claims)
    assert sum(1 for c in claims if c["delivered"]) >= 3  # the next claim carries them
    transactions = len(watched.claims) + watched.records
    assert transactions <= 5 + 2, transactions  # the tail: what is left, recorded
    assert {"delivered"} == set((await states(store)).values())


async def test_a_lease_covers_every_send_that_may_go_first(store: SqlStore) -> None:
    """A claimed message can wait behind the sends in flight and those claimed before it:
    its lease lasts as many turns (one send per slot each) as go before it, and its own."""
    slots = 2
    dispatcher, watched, sink = await setup(store, 6 * slots * ROUND_PER_SLOT, slots)
    seq_of = {p.envelope.transition.id: p.seq for p in await store.pending(now=NOW, limit=999)}
    await dispatcher.run_once()
    start = {seq_of[tid]: n for n, tid in enumerate(sink.started)}
    assert len(watched.claims) > 2
    for claim in watched.claims:
        began, finished = claim["seen"]
        for seq, _ in claim["got"]:
            ahead = (finished - began) + (start[seq] - began) + 1  # in flight, queued, itself
            assert claim["until"] - NOW >= LEASE * math.ceil(ahead / slots)


async def test_a_store_error_mid_pass_loses_nothing_the_sink_accepted(store: SqlStore) -> None:
    slots = 2
    per_claim = slots * ROUND_PER_SLOT
    dispatcher, watched, sink = await setup(store, 4 * per_claim, slots)
    watched.fail_after = 1
    with pytest.raises(ExceptionGroup) as raised:
        await dispatcher.run_once()
    assert raised.group_contains(OSError, match="disk I/O error")
    # What was claimed went out and is recorded; the rest waits, unclaimed, for a later pass.
    assert per_claim == len(sink.got)
    found = await states(store)
    assert {t: "delivered" for t in sink.got} == {t: s for t, s in found.items() if t in sink.got}
    assert {"pending"} == {s for t, s in found.items() if t not in sink.got}
    assert set() == await store.claimants()
