"""Disk trouble (SQLite): the database becomes read-only mid-run. The daemon says so (not
ready, an error in the log), loses nothing it had committed, and recovers by itself once
the database is writable again.

How the database is made read-only: as root (this machine kind), ``chmod`` binds nobody,
and even for another user it only binds files opened afterwards: the daemon's pooled
SQLite connections keep writing through their open descriptors. The immutable attribute
(``chattr +i``, needs CAP_LINUX_IMMUTABLE and a filesystem that has it, such as ext4) makes
every write fail, through open descriptors too, as on a filesystem remounted read-only
after an error. It is set on the database and its ``-wal``, not on the ``-shm``: that one is
memory-mapped, and a write into a mapping of an immutable file is a SIGBUS, not an error
SQLite could report.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.harness import free_port
from tests.waiting import wait_until
from watcher.stores import open_store

from .facts import all_arrived, scenario, settled, tally
from .rig import Fleet, peers, readyz, watcher_config
from .scale import MINUTE, SPEED, Scale, real

pytestmark = pytest.mark.endurance

BEFORE = 1.5 * MINUTE  # simulated seconds of normal operation first
INTERVAL = 0.5  # real seconds (30 simulated)
# /readyz fails once no poll succeeded for 3 intervals (with jitter); then a margin.
NOT_READY_WITHIN = 3 * 1.1 * INTERVAL + 3.0
PROBE_BURST = 6  # concurrent /readyz probes while read-only
GRACE = 2.0  # real seconds after recovery for a pass or poll already under way
RECOVERY_WAIT = 10.0  # real seconds for every fact to arrive once writable again


def can_make_immutable(directory: Path) -> str | None:
    """None when ``chattr +i`` works here and stops writes; else why not."""
    probe = directory / "immutable-probe"
    probe.write_text("x")
    try:
        done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    except FileNotFoundError:
        return "chattr is not installed"
    if done.returncode != 0:
        return f"chattr +i failed: {done.stderr.strip()}"
    try:
        with probe.open("a") as f:
            f.write("y")
    except PermissionError:
        return None
    finally:
        subprocess.run(["chattr", "-i", str(probe)], check=True)
        probe.unlink()
    return "chattr +i does not stop writes here"


@contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """The files stay immutable for the block (and are always given back)."""
    subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


async def test_read_only_database_is_reported_and_recovered(
    tmp_path: Path, scale: Scale, figures: Callable[[dict[str, Any]], None]
) -> None:
    """With the database read-only for ``scale.read_only_minutes`` simulated minutes while
    probes keep coming: /readyz turns 503 within a few intervals and an error is logged;
    the daemon stays up; once writable, /readyz is 200 again, no store error is logged any
    more, and every fact arrives (committed before, or happened meanwhile), under one id."""
    why_not = can_make_immutable(tmp_path)
    if why_not is not None:
        pytest.skip(f"no way to make the database read-only for a running daemon: {why_not}")
    read_only = scale.read_only_minutes * MINUTE
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    port = free_port()
    # Jobs that change before (committed, some of it undelivered when the disk turns
    # read-only), and jobs that change while it is (nothing can be committed then).
    gap = (0.2 * MINUTE, 0.6 * MINUTE)
    early = scenario(41, round(6 * BEFORE / MINUTE), within=0.5 * BEFORE, step_gap=gap)
    late = scenario(43, round(6 * read_only / MINUTE), within=0.5 * read_only, step_gap=gap)
    statuses: list[tuple[float, int, list[str]]] = []  # (time, /readyz code, failed)
    read_only_at = writable_at = float("inf")
    async with peers(seed=17) as p:
        fleet = Fleet(tmp_path, watcher_config(p, state_url=url, http_port=port))
        fleet.start()

        async def probe() -> None:
            code, body = await readyz(port)
            statuses.append((time.time(), code, list(body.get("failed", []))))

        async def watch_readiness() -> None:
            while True:
                # Not ready, a daemon draws more probes (kubelet, load balancer, an
                # operator): several at once while the disk is read-only.
                burst = PROBE_BURST if read_only_at <= time.time() < writable_at else 1
                async with anyio.create_task_group() as probes:
                    for _ in range(burst):
                        probes.start_soon(probe)
                await anyio.sleep(0.2)

        def recovered() -> bool:
            return (
                bool(statuses)
                and statuses[-1][1] == 200
                and statuses[-1][0] > writable_at
                and settled(p.counting)
                and all_arrived(p.counting, p.receiver.received)
            )

        try:
            await wait_until(
                fleet.baselined, within=30, what="the baseline poll", diagnose=fleet.raw_output
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_readiness)
                p.counting.schedule(early)
                await anyio.sleep(real(BEFORE - MINUTE))
                p.receiver.set_down(True)  # some commits wait for delivery when it happens
                await anyio.sleep(real(MINUTE))
                store = open_store(url)
                rows = await store.list_deliveries(state=None, limit=100_000)
                await store.aclose()
                committed = [r.transition_id for r in rows]
                undelivered = [r.transition_id for r in rows if r.state == "pending"]
                with immutable([db, db.with_name(db.name + "-wal")]):
                    read_only_at = time.time()
                    p.counting.schedule(late)
                    await anyio.sleep(real(read_only) / 2)
                    p.receiver.set_down(False)  # sends succeed, recording them cannot
                    await anyio.sleep(real(read_only) / 2)
                    writable_at = time.time()
                # Bounded but not fatal here: the assertions below say what did not recover.
                with suppress(AssertionError):
                    await wait_until(
                        recovered, within=RECOVERY_WAIT, what="the recovery", every=0.2
                    )
                tg.cancel_scope.cancel()
            alive = fleet.alive()
        finally:
            codes = fleet.stop()
    t = tally(p.counting, p.receiver.received)
    before = [s for s in statuses if s[0] < read_only_at]
    during = [s for s in statuses if read_only_at <= s[0] < writable_at]
    after = [s for s in statuses if s[0] > writable_at]
    first_503 = next((s for s in during if s[1] == 503), None)
    back = next((s for s in after if s[1] == 200), None)
    events = fleet.events()
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    while_read_only = [e for e in errors if read_only_at <= _when(e) <= writable_at + GRACE]
    after_recovery = [e for e in errors if _when(e) > writable_at + GRACE]
    accepted = {r.id for r in p.receiver.received if r.accepted}
    figures(
        {
            "simulated minutes read-only": round((writable_at - read_only_at) * SPEED / MINUTE, 1),
            "mechanism": "chattr +i on the database and its -wal",
            "committed before": len(committed),
            "of which undelivered": len(undelivered),
            "seconds to not-ready": round(first_503[0] - read_only_at, 1) if first_503 else None,
            "failed checks": sorted({c for s in during for c in s[2]}),
            "seconds to ready again": round(back[0] - writable_at, 1) if back else None,
            "503 answers after recovery": sum(s[1] != 200 for s in after),
            "error events while read-only": sorted({_cause(e) for e in while_read_only}),
            "error events after recovery": len(after_recovery),
            "store errors after recovery": sorted({_cause(e) for e in after_recovery}),
            **t.figures(),
        }
    )
    assert alive
    assert [0] == codes
    assert 1 == fleet.starts
    assert 200 == before[-1][1]
    assert first_503 is not None, f"/readyz while read-only: {sorted({s[1] for s in during})}"
    assert first_503[0] - read_only_at <= NOT_READY_WITHIN
    assert while_read_only, "nothing logged at error level while the database was read-only"
    assert undelivered, "some committed deliveries must wait when the database turns read-only"
    assert back is not None
    assert [] == [_cause(e) for e in after_recovery]
    assert [] == [i for i in committed if i not in accepted]
    assert [] == t.lost
    assert [] == t.spurious
    assert {} == t.other_ids
    assert [] == t.out_of_order
    assert [] == fleet.tracebacks()


def _cause(event: dict[str, Any]) -> str:
    """The event and the last line of its exception: what went wrong, in one line."""
    lines = str(event.get("exception", "")).strip().splitlines()
    last = next((line.strip() for line in reversed(lines) if "Error" in line), "")
    return f"{str(event.get('event')).splitlines()[0]}: {last[:120]}"


def _when(event: dict[str, Any]) -> float:
    """A log line's time (ISO 8601 UTC) as Unix seconds."""
    stamp = str(event.get("timestamp", ""))
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
