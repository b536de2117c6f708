"""Sources shared between replicas by PostgreSQL session advisory locks.

Each replica keeps one dedicated connection. On it, it holds:

- a *member* lock ``(MEMBERS, backend pid)``: the number of such locks in ``pg_locks`` is
  the number of live replicas, from which the fair share follows (:mod:`.share`);
- one *source* lock ``(SOURCES, hash of the name)`` per source it polls;
- possibly the *leader* lock ``(LEADER, 0)``: the once-per-deployment chores.

Session locks live and die with the connection: when a replica dies (even by SIGKILL) the
server closes its session and the locks are free for the others' next round, a second
later. The connection's ``application_name`` carries the replica's name, so that anyone can
tell who holds what from ``pg_locks`` and ``pg_stat_activity`` alone (``watcher status``).

A replica that cannot run its round (query error, timeout, connection lost) drops its
connection and considers every source lost at once; it joins again when it can.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from watcher.app.coordination import APP_PREFIX
from watcher.app.coordination.share import rebalance
from watcher.exceptions import POSTGRES_EXTRA, MissingExtra
from watcher.stores.postgres import libpq_dsn

try:
    import asyncpg
except ImportError:  # the `postgres` extra is not installed (check-config says so first)
    raise MissingExtra("state.url", *POSTGRES_EXTRA) from None

log = structlog.get_logger(__name__)

# Advisory lock namespaces (the first of the two int4 keys): "WA" + 1, 2, 3.
MEMBERS = 0x5741_0001
SOURCES = 0x5741_0002
LEADER = 0x5741_0003
ROUND = 1.0  # seconds between rounds: a dead replica's sources move within about this
ROUND_TIMEOUT = 5.0  # a round's queries must answer within this, else the connection is dropped
REJOIN_WAIT = (1.0, 10.0)  # backoff bounds between attempts to reconnect

# Every advisory lock of this database with two int4 keys (objsubid 2), and who holds it.
SURVEY = """
SELECT l.classid::int8 AS ns, l.objid::int8 AS key, l.pid, a.application_name AS app
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

LockError = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def source_key(name: str) -> int:
    """The second lock key of source ``name``: 32 bits of a hash, as PostgreSQL's int4."""
    digest = hashlib.blake2b(name.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Survey:
    """Who holds what in this database, as one query saw it."""

    members: dict[int, str]  # backend pid -> replica name
    holders: dict[str, int]  # source -> backend pid
    leader: int | None  # backend pid

    def named(self, sources: Sequence[str]) -> dict[str, str | None]:
        return {
            s: self.members.get(self.holders[s], f"pid {self.holders[s]}")
            if s in self.holders
            else None
            for s in sources
        }


async def survey(conn: asyncpg.Connection, sources: Sequence[str]) -> Survey:
    by_key = {source_key(s) & 0xFFFFFFFF: s for s in sources}
    rows = await conn.fetch(SURVEY, timeout=ROUND_TIMEOUT)
    members: dict[int, str] = {}
    holders: dict[str, int] = {}
    leader = None
    for row in rows:
        app = row["app"] or ""
        name = app.removeprefix(APP_PREFIX) if app.startswith(APP_PREFIX) else f"pid {row['pid']}"
        if row["ns"] == MEMBERS:
            members[row["pid"]] = name
        elif row["ns"] == SOURCES and row["key"] in by_key:
            holders[by_key[row["key"]]] = row["pid"]
        elif row["ns"] == LEADER:
            leader = row["pid"]
    return Survey(members, holders, leader)


async def connect(url: str, replica: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        libpq_dsn(url),
        timeout=ROUND_TIMEOUT,
        server_settings={
            "application_name": f"{APP_PREFIX}{replica}"[:63],
            # A replica cut off by the network (not closed) is noticed by the server too.
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
        },
    )


async def current_owners(url: str, sources: Sequence[str]) -> dict[str, str | None]:
    """Source -> replica polling it, read from the database (``watcher status``)."""
    conn = await connect(url, "status")
    try:
        return (await survey(conn, sources)).named(sources)
    finally:
        await conn.close(timeout=ROUND_TIMEOUT)


class AdvisoryLocks:
    """:class:`watcher.abc.Ownership` over PostgreSQL advisory locks."""

    def __init__(
        self,
        url: str,
        sources: Sequence[str],
        *,
        replica: str,
        busy: Callable[[], Collection[str]] = frozenset,
        observe: Callable[[str, str], None] | None = None,
        round_seconds: float = ROUND,
    ) -> None:
        self.url = url
        self.sources = list(sources)
        self.replica = replica
        self.owned: dict[str, float] = {}
        self.leader = False
        self.busy = busy
        self.observe = observe or (lambda source, change: None)
        self.round_seconds = round_seconds
        self._conn: Any = None
        self._seen: dict[str, str | None] = dict.fromkeys(self.sources)
        self._members: frozenset[str] = frozenset()  # replica names, as the last round saw

    def owners(self) -> Mapping[str, str | None]:
        return {s: self.replica if s in self.owned else self._seen.get(s) for s in self.sources}

    def replicas(self) -> Collection[str] | None:
        return self._members if self._conn is not None and self._members else None

    async def run(self, on_acquired: Callable[[str], None], on_lost: Callable[[str], None]) -> None:
        failures = 0
        while True:
            try:
                if self._conn is None:
                    await self._join()
                await self._round(on_acquired, on_lost)
                failures = 0
                await anyio.sleep(self.round_seconds)
            except LockError as exc:
                failures += 1
                self._drop(on_lost, f"{type(exc).__name__}: {exc}"[:300])
                await anyio.sleep(min(REJOIN_WAIT[1], REJOIN_WAIT[0] * failures))

    async def take_free(self) -> None:
        """Join and take every free source at once (``watcher once``: no fair share)."""
        await self._join()
        seen = await survey(self._conn, self.sources)
        for source in self.sources:
            if source not in seen.holders:
                await self._try(source, lambda s: None)
            else:
                log.warning(
                    "source_held_elsewhere", source=source, owner=seen.named([source])[source]
                )
        if seen.leader is None:
            self.leader = bool(await self._conn.fetchval(_TRY, LEADER, 0, timeout=ROUND_TIMEOUT))

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        self.owned.clear()
        self.leader = False
        if conn is not None:
            with anyio.move_on_after(ROUND_TIMEOUT, shield=True):
                await conn.close()  # a clean close frees the locks at once
            if not conn.is_closed():
                conn.terminate()

    async def _join(self) -> None:
        self._conn = await connect(self.url, self.replica)
        await self._conn.execute(
            "SELECT pg_advisory_lock($1, pg_backend_pid())", MEMBERS, timeout=ROUND_TIMEOUT
        )
        log.info("replica_joined", replica=self.replica, backend_pid=self._conn.get_server_pid())

    async def _round(
        self, on_acquired: Callable[[str], None], on_lost: Callable[[str], None]
    ) -> None:
        conn = self._conn
        me = conn.get_server_pid()
        seen = await survey(conn, self.sources)
        for source in [s for s in self.owned if seen.holders.get(s) != me]:
            self._lose(source, on_lost, "the lock is no longer held")
        holders = {s: str(pid) for s, pid in seen.holders.items()}
        moves = rebalance(self.sources, holders, str(me), len(seen.members), busy=set(self.busy()))
        for source in moves.release:
            del self.owned[source]  # first: no poll of it starts from here on
            on_lost(source)
            await conn.fetchval(_UNLOCK, SOURCES, source_key(source), timeout=ROUND_TIMEOUT)
            self.observe(source, "released")
            log.info(
                "source_released", source=source, replica=self.replica, replicas=len(seen.members)
            )
        room = moves.room
        for source in moves.candidates:
            if room <= 0:
                break
            if await self._try(source, on_acquired):
                room -= 1
        if not self.leader and seen.leader is None:
            self.leader = bool(await conn.fetchval(_TRY, LEADER, 0, timeout=ROUND_TIMEOUT))
            if self.leader:
                log.info("leader_acquired", replica=self.replica)
        self._seen = seen.named(self.sources)
        self._seen.update(dict.fromkeys(moves.release))
        self._members = frozenset(seen.members.values())

    async def _try(self, source: str, on_acquired: Callable[[str], None]) -> bool:
        taken = await self._conn.fetchval(_TRY, SOURCES, source_key(source), timeout=ROUND_TIMEOUT)
        if taken:
            self.owned[source] = time.time()
            self.observe(source, "acquired")
            log.info("source_acquired", source=source, replica=self.replica)
            on_acquired(source)
        return bool(taken)

    def _lose(self, source: str, on_lost: Callable[[str], None], reason: str) -> None:
        del self.owned[source]
        on_lost(source)
        self.observe(source, "lost")
        log.error("source_lost", source=source, replica=self.replica, reason=reason)

    def _drop(self, on_lost: Callable[[str], None], reason: str) -> None:
        """The lock connection failed: everything is lost, now; rejoin later."""
        for source in list(self.owned):
            self._lose(source, on_lost, reason)
        if self.leader:
            log.warning("leader_lost", replica=self.replica)
        self.leader = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
        log.error("lock_connection_lost", replica=self.replica, error=reason)


_TRY = "SELECT pg_try_advisory_lock($1, $2)"
_UNLOCK = "SELECT pg_advisory_unlock($1, $2)"
