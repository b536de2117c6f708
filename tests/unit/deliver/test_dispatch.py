"""The dispatcher: done only after the sink accepted, backoff, dead-letter, order per job."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.waiting import wait_until
from watcher.config import DeliveryConfig
from watcher.deliver.dispatch import Dispatcher
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope, Routed
from watcher.model.snapshot import Cursor
from watcher.model.transitions import Transition
from watcher.stores import open_store
from watcher.stores.sql import SqlStore


class FakeSink:
    """Accepts, or raises what the test queued for a given transition id."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[str] = []
        self.errors: dict[str, list[Exception]] = {}

    async def send(self, batch: Sequence[Envelope]) -> None:
        for envelope in batch:
            queued = self.errors.get(envelope.transition.id)
            if queued:
                raise queued.pop(0)
            self.got.append(envelope.transition.id)

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path}/state.db")
    assert isinstance(s, SqlStore)
    await s.open()
    yield s
    await s.aclose()


def t(n: int, job: str = "j1") -> Transition:
    return Transition(id=f"{job}-{n}", type="fine_tuning.job.running", source="ft", job_id=job)


async def setup(
    store: SqlStore,
    clock: Clock,
    sinks: list[FakeSink],
    transitions: list[Transition],
    **delivery: float,
) -> Dispatcher:
    names = [s.name for s in sinks]
    await store.commit("ft", Cursor(), [], [Routed(x, names) for x in transitions], now=clock.now)
    return Dispatcher(
        store,
        {s.name: s for s in sinks},
        DeliveryConfig(**delivery),  # type: ignore[arg-type]
        clock=clock,
        rng=random.Random(1),
    )


async def test_delivers_in_order(store: SqlStore) -> None:
    """Every pending delivery goes out, in order per job, and is then done."""
    clock, sink = Clock(), FakeSink("a")
    dispatcher = await setup(store, clock, [sink], [t(1), t(1, "j2"), t(2), t(3)])
    await dispatcher.drain()
    assert ["j1-1", "j1-2", "j1-3"] == [x for x in sink.got if x.startswith("j1")]
    assert 4 == len(sink.got)
    assert [] == await store.pending(now=1e12, limit=10)


async def test_retryable_failure_waits_and_blocks_later_ones(store: SqlStore) -> None:
    """A retryable failure waits its backoff (Retry-After first); the job's later
    transitions wait behind it; other jobs go on."""
    clock, sink = Clock(), FakeSink("a")
    sink.errors["j1-1"] = [DeliveryError("HTTP 503", retryable=True, retry_after=30)]
    dispatcher = await setup(store, clock, [sink], [t(1), t(2), t(1, "j2")])
    await dispatcher.drain()
    assert ["j2-1"] == sink.got
    (first,) = [
        p for p in await store.pending(now=1e12, limit=10) if p.envelope.transition.id == "j1-1"
    ]
    assert first.next_attempt_at >= clock.now + 30
    clock.now += 31
    await dispatcher.drain()
    assert ["j2-1", "j1-1", "j1-2"] == sink.got


async def test_final_failure_is_dead_and_unblocks(store: SqlStore) -> None:
    """A final failure dead-letters at once and the next transition of the job goes."""
    clock, sink = Clock(), FakeSink("a")
    sink.errors["j1-1"] = [DeliveryError("HTTP 400", retryable=False)]
    dispatcher = await setup(store, clock, [sink], [t(1), t(2)])
    await dispatcher.drain()
    assert ["j1-2"] == sink.got
    assert 1 == (await store.status()).dead


async def test_dead_after_max_age(store: SqlStore) -> None:
    """A delivery that keeps failing is dead-lettered once older than max_age."""
    clock, sink = Clock(), FakeSink("a")
    sink.errors["j1-1"] = [DeliveryError("down", retryable=True)] * 50
    dispatcher = await setup(store, clock, [sink], [t(1)], max_age=60, max_backoff=10)
    for _ in range(20):
        await dispatcher.drain()
        clock.now += 11
    status = await store.status()
    assert (0, 1) == (status.pending, status.dead)


async def test_backoff_grows(store: SqlStore) -> None:
    """Consecutive failures wait longer and longer (exponential, jittered)."""
    clock, sink = Clock(), FakeSink("a")
    sink.errors["j1-1"] = [DeliveryError("down", retryable=True)] * 5
    dispatcher = await setup(store, clock, [sink], [t(1)], initial_backoff=1, max_backoff=1000)
    waits = []
    for _ in range(5):
        await dispatcher.drain()
        (pending,) = await store.pending(now=1e12, limit=1)
        waits.append(pending.next_attempt_at - clock.now)
        clock.now = pending.next_attempt_at
    assert waits == sorted(waits)
    assert waits[-1] >= 8


async def test_one_broken_sink_does_not_silence_the_others(store: SqlStore) -> None:
    """A sink that crashes is retried later; the other sink still gets everything."""

    class Crashing(FakeSink):
        async def send(self, batch: Sequence[Envelope]) -> None:
            raise ZeroDivisionError("bug")

    clock, good, bad = Clock(), FakeSink("good"), Crashing("bad")
    dispatcher = await setup(store, clock, [good, bad], [t(1), t(2)])
    await dispatcher.drain()
    assert ["j1-1", "j1-2"] == good.got
    pending = await store.pending(now=1e12, limit=10)
    assert [("bad", 1)] == [(p.sink, p.attempts) for p in pending]  # its second waits behind
    assert 2 == (await store.status()).pending


async def test_removed_sink_dead_letters(store: SqlStore) -> None:
    """Deliveries for a sink no longer configured are dead-lettered, not retried forever."""
    clock = Clock()
    await store.commit("ft", Cursor(), [], [Routed(t(1), ["gone"])], now=clock.now)
    dispatcher = Dispatcher(store, {}, DeliveryConfig(), clock=clock)
    await dispatcher.drain()
    assert 1 == (await store.status()).dead


async def test_backlog_on_one_sink_does_not_starve_another(store: SqlStore) -> None:
    """More deliveries backing off for a dead sink than one pass reads do not hold up a
    healthy sink."""
    clock, dead, good = Clock(), FakeSink("dead"), FakeSink("good")
    backlog = [t(n, f"job{n}") for n in range(60)]
    for x in backlog:
        dead.errors[x.id] = [DeliveryError("down", retryable=True)] * 3
    await store.commit("ft", Cursor(), [], [Routed(x, ["dead"]) for x in backlog], now=clock.now)
    dispatcher = Dispatcher(
        store,
        {"dead": dead, "good": good},
        DeliveryConfig(),
        clock=clock,
        rng=random.Random(1),
        batch=50,
    )
    await dispatcher.drain()
    alert = t(1, "urgent")
    await store.commit("ft", Cursor(), [], [Routed(alert, ["good"])], now=clock.now)
    await dispatcher.drain()
    assert ["urgent-1"] == good.got


class GroupSink(FakeSink):
    """Records each message (call) as the list of transition ids it carried."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.messages: list[list[str]] = []

    async def send(self, batch: Sequence[Envelope]) -> None:
        self.messages.append([e.transition.id for e in batch])


async def test_group_wait_gathers_a_storm_into_few_messages(store: SqlStore) -> None:
    """200 failures arriving together become 4 messages of 50 that name every job."""
    from watcher.deliver.dispatch import SinkPolicy

    clock, sink = Clock(), GroupSink("slack")
    storm = [t(1, f"job{n:03}") for n in range(200)]
    await store.commit("ft", Cursor(), [], [Routed(x, ["slack"]) for x in storm], now=clock.now)
    dispatcher = Dispatcher(
        store,
        {"slack": sink},
        DeliveryConfig(),
        clock=clock,
        policies={"slack": SinkPolicy(group_wait=2, group_max=50)},
    )
    await dispatcher.drain()
    assert [] == sink.messages  # still gathering
    clock.now += 2
    await dispatcher.drain()
    assert [50, 50, 50, 50] == [len(m) for m in sink.messages]
    assert {x.id for x in storm} == {i for m in sink.messages for i in m}


async def test_rate_limit_defers_and_merges(store: SqlStore) -> None:
    """Past max_per_minute the rest waits and goes out with the next message: nothing is
    dropped, nothing is sent twice."""
    from watcher.deliver.dispatch import SinkPolicy

    clock, sink = Clock(), GroupSink("mail")
    await store.commit(
        "ft", Cursor(), [], [Routed(t(1, f"a{n}"), ["mail"]) for n in range(3)], now=clock.now
    )
    dispatcher = Dispatcher(
        store,
        {"mail": sink},
        DeliveryConfig(),
        clock=clock,
        monotonic=clock,
        policies={"mail": SinkPolicy(group_max=2, max_per_minute=1)},
    )
    await dispatcher.drain()
    assert [["a0-1", "a1-1"]] == sink.messages
    await store.commit("ft", Cursor(), [], [Routed(t(1, "b0"), ["mail"])], now=clock.now)
    clock.now += 30
    await dispatcher.drain()
    assert 1 == len(sink.messages)  # the minute is not over
    clock.now += 31
    await dispatcher.drain()
    assert [["a0-1", "a1-1"], ["a2-1", "b0-1"]] == sink.messages


async def test_waiting_deliveries_do_not_spin_the_loop(store: SqlStore) -> None:
    """Due deliveries that cannot go yet (gathering a group, another replica's sink, a
    spent rate limit) must not make the dispatcher re-read the outbox in a busy loop."""
    import time

    import anyio

    from watcher.deliver.dispatch import SinkPolicy

    await store.commit("ft", Cursor(), [], [Routed(t(1), ["slack"])], now=time.time())
    reads = 0
    pending = store.pending

    async def counting(**kwargs: object) -> list[object]:
        nonlocal reads
        reads += 1
        return await pending(**kwargs)  # type: ignore[arg-type]

    store.pending = counting  # type: ignore[assignment,method-assign]
    sink = GroupSink("slack")
    dispatcher = Dispatcher(
        store,
        {"slack": sink},
        DeliveryConfig(),
        policies={"slack": SinkPolicy(group_wait=3600, group_max=50)},
    )
    with anyio.move_on_after(1.0):
        await dispatcher.run()
    assert [] == sink.messages  # still gathering
    assert 1 <= reads <= 10


async def test_a_round_cut_short_records_what_the_sink_accepted(store: SqlStore) -> None:
    """Stopped mid-round (SIGTERM, a reload): messages the sink already accepted are marked
    delivered, not sent again after the restart; the one in flight stays pending."""
    import anyio

    class SlowForOne(FakeSink):
        async def send(self, batch: Sequence[Envelope]) -> None:
            if batch[0].transition.job_id == "slow":
                await anyio.sleep_forever()
            await super().send(batch)

    clock = Clock()
    sink = SlowForOne("a")
    dispatcher = await setup(store, clock, [sink], [t(1, "fast1"), t(1, "slow"), t(1, "fast2")])
    with anyio.move_on_after(0.5):
        await dispatcher.run_once()
    assert ["fast1-1", "fast2-1"] == sorted(sink.got)
    rows = {r.transition_id: r.state for r in await store.list_deliveries(state=None, limit=9)}
    assert {"fast1-1": "delivered", "fast2-1": "delivered", "slow-1": "pending"} == rows


async def test_only_a_cleaning_replica_dead_letters_unknown_sinks(store: SqlStore) -> None:
    """During a rolling update a replica may not know a sink a newer config added: it leaves
    those deliveries alone unless it is the one allowed to clean up (the leader)."""
    clock = Clock()
    await store.commit("ft", Cursor(), [], [Routed(t(1), ["new-sink"])], now=clock.now)
    sink = FakeSink("a")
    config = DeliveryConfig()
    bystander = Dispatcher(store, {"a": sink}, config, clock=clock, orphans=lambda: False)
    assert 0 == await bystander.run_once()
    assert ["pending"] == [r.state for r in await store.list_deliveries(state=None, limit=9)]
    leader = Dispatcher(store, {"a": sink}, config, clock=clock)
    await leader.run_once()
    assert ["dead"] == [r.state for r in await store.list_deliveries(state=None, limit=9)]


async def test_message_times_are_kept_only_for_paced_sinks(store: SqlStore) -> None:
    """The times of sent messages serve the pacing of rate-limited sinks; a long-running
    daemon must not keep one per message for the others."""
    clock, sink = Clock(), FakeSink("a")
    dispatcher = await setup(store, clock, [sink], [t(n, f"j{n}") for n in range(20)])
    await dispatcher.drain()
    assert 20 == len(sink.got)
    assert {} == dispatcher._sent


async def test_a_store_failing_between_passes_does_not_end_the_dispatcher(
    store: SqlStore,
) -> None:
    """The store fails where the dispatcher looks for the next due delivery (a read-only
    or unreachable database): the loop goes on, and once the store answers again what was
    committed meanwhile is delivered."""
    import time

    import anyio

    failing = 2
    next_due = store.next_due

    async def flaky(**kwargs: object) -> float | None:
        nonlocal failing
        if failing:
            failing -= 1
            raise OSError("disk I/O error")
        return await next_due(**kwargs)  # type: ignore[arg-type]

    store.next_due = flaky  # type: ignore[method-assign]
    sink = FakeSink("hooks")
    dispatcher = Dispatcher(store, {"hooks": sink}, DeliveryConfig())
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)
        await wait_until(lambda: not failing, within=10, what="the store to answer again")
        await store.commit("ft", Cursor(), [], [Routed(t(1), ["hooks"])], now=time.time())
        dispatcher.wake()
        await wait_until(lambda: bool(sink.got), within=10, what="the delivery")
        tg.cancel_scope.cancel()
    assert [t(1).id] == sink.got


async def test_what_a_failed_pass_claimed_goes_in_the_next_one(store: SqlStore) -> None:
    """The sink accepted, recording it failed (the database turned read-only): the failed
    pass's claims are given back, so the next pass sends it again (same id: at least once)
    at once, not after its lease of a minute."""
    import time

    import anyio

    failing = 1
    delivered_all = store.delivered_all

    async def flaky(keys: Sequence[tuple[int, str]], *, now: float) -> None:
        nonlocal failing
        if failing:
            failing -= 1
            raise OSError("attempt to write a readonly database")
        await delivered_all(keys, now=now)

    store.delivered_all = flaky  # type: ignore[method-assign]
    await store.commit("ft", Cursor(), [], [Routed(t(1), ["hooks"])], now=time.time())
    sink = FakeSink("hooks")
    dispatcher = Dispatcher(store, {"hooks": sink}, DeliveryConfig(), lease=60.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(dispatcher.run)

        async def sent_again_and_recorded() -> bool:
            return len(sink.got) >= 2 and not (await store.status()).pending

        await wait_until(sent_again_and_recorded, within=10, what="the second send")
        tg.cancel_scope.cancel()
    assert [t(1).id, t(1).id] == sink.got
