"""Adaptive polling under a request budget (issue 7, item 3): at the same
``max_requests_per_minute``, how soon watcher's fine-tuning source sees status changes with
its adaptive policy and with a uniform one.

Both pollers are the package's own ``FineTuningSource`` with ``max_requests_per_minute`` set;
only the ranking differs: ``Adaptive`` (watcher/sources/policy.py, the default) or
``RoundRobin`` (the uniform baseline: every listing a whole cycle makes — new jobs, each page
of each followed status — in turn, the one made longest ago first). Changes found in a
listing get their detail the same way in both.

The account: about 1,000 active jobs in a steady state (a 26 h warm-up comes first). Jobs
arrive at random, wait in QUEUED (exponential, 2 min mean), VALIDATING (1-3 min), VALIDATED
(2-10 s), then RUNNING for their ``metadata.expected_duration_seconds`` (2-24 h,
log-uniform; the simulator's value, 60 s per planned checkpoint + 240 s) give or take
``--spread`` (normal, default 15 %); 7 % fail and 3 % are cancelled at a random moment of
the run. About 9 status changes a minute. Checkpoint tracking is off: the figure is about
status changes. Pages of 100 (the default): a whole steady cycle is 14 listings and the
details of what changed, about 34 requests a minute at a 30 s interval and 87 at 10 s
(``--unbudgeted`` measures it).

The series (issue 16, part 4) are cases where the budget, not the interval, is what binds,
so that a smarter policy *can* halve round-robin's median:

- no poller polling every ``interval`` sees a change sooner than the next poll: the median
  latency cannot go below about half an interval (15 s at 30 s). At 30 s and 12 or 14
  requests a minute round-robin already lists everything every other cycle or so (median
  31.7 s and 27.8 s): halving that means reaching the floor itself (15.9 s) or going below
  it (13.9 s), which no policy can. Those two series (the earlier default) are replaced by
  30 s at 8 a minute, where round-robin's median (88 s) is several times the floor. (An odd
  budget at 30 s is the even one below it: a cycle's share is a whole number of requests,
  9 a minute spends 8);
- 6 a minute at 30 s is not a series either: it is too little to keep up with the account
  at all, the backlog grows for every policy (medians of 15 and 24 minutes, changes of the
  window never seen) and the ratio says nothing;
- at 10 s the floor is 5 s and round-robin's medians at 12, 18 and 24 a minute (36, 20,
  14 s) are all well above twice that: the three stay.

At the lowest budgets (30 s at 8 a minute, 10 s at 12: two to four requests a cycle) the
policy missed 0.5 (0.65, 0.55) while it checked the short-lived statuses with a page each;
its new-jobs listing now reaches back over the newest followed jobs (one page, whatever
their status), which brought those two to 0.29 and 0.20.

It runs in virtual time: the real simulator (its starlette app, through
``httpx.ASGITransport``) and the source share one fake clock, so hours of polling take a
minute, and the budget's waits advance the clock instead of sleeping (the jobs go on living
meanwhile). The diff is the package's; snapshots stay in memory (the pipeline's store is not
what is measured). Polls come every interval, as the daemon's scheduler makes them. The
watcher starts 3 h before the measured window (its silent baseline under a budget fetches
every active job's detail, which takes a while). A change's latency is from the moment the
simulator applied it to the end of the poll whose diff reported it; changes applied within
the measured window count (2 h by default). Requests are counted by the simulator app (every
``/v1`` request), per poller; "max in 60s" is the busiest sliding minute of the whole run.

    .venv/bin/python -m benchmarks.adaptive [--series "30:8,10;10:12,18,24"] [--hours 2]
        [--spread 0.15] [--seed 7] [--unbudgeted]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from watcher.abc import PollContext
from watcher.app import eventloop
from watcher.config import FineTuningSourceConfig
from watcher.detect.diff import diff
from watcher.devtools.simulator.app import create_app
from watcher.devtools.simulator.engine import Simulator
from watcher.model.secrets import Secret
from watcher.model.snapshot import Cursor, Snapshot
from watcher.sources.budgeted import budgeted
from watcher.sources.fine_tuning import KIND, FineTuningSource
from watcher.sources.policy import Policy, RoundRobin

KEY = "bench-key"
START = 1_780_000_000.0  # virtual epoch (2026)
DRAIN = 3600.0  # polling goes on this long after the measured window
LEAD = 3 * 3600.0  # the watcher starts this long before the measured window…
SETTLE = 3600.0  # …and at least this long after its baseline ends
# Budget-bound series only (see the docstring): interval:budget,budget;…
DEFAULT_SERIES = "30:8,10;10:12,18,24"


class Clock:
    """Virtual time: ``sleep`` moves it on at once, letting the world live meanwhile."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.meanwhile: Callable[[float], Awaitable[None]] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(0.0, seconds)
        if self.meanwhile is not None:
            await self.meanwhile(target)
        self.now = max(self.now, target)


@dataclass(frozen=True)
class Plan:
    """One job's life, drawn once and replayed identically for every poller."""

    arrive: float
    queued: float
    validating: float
    validated: float
    checkpoints: int  # the simulator's expected_duration_seconds = 60 * checkpoints + 240
    ending: tuple[tuple[str, float], ...]  # after RUNNING starts


def plans(
    seed: int,
    hours: float,
    warmup: float,
    active: int,
    spread: float,
    runs: tuple[float, float] = (2.0, 24.0),
) -> list[Plan]:
    rng = random.Random(seed)
    lows, highs = math.log(runs[0] * 3600), math.log(runs[1] * 3600)
    mean_run = (math.exp(highs) - math.exp(lows)) / (highs - lows)
    rate = active / (mean_run + 120 + 120 + 6)  # arrivals per second for ~`active` jobs
    out: list[Plan] = []
    t = START - warmup
    end = START + (hours + 3) * 3600  # a baseline that takes very long pushes the window on
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            return out
        expected = math.exp(rng.uniform(lows, highs))
        checkpoints = max(1, round((expected - 240) / 60))
        expected = 60.0 * checkpoints + 240
        run = max(60.0, rng.gauss(expected, spread * expected))
        fate = rng.random()
        if fate < 0.07:
            ending: tuple[tuple[str, float], ...] = (("FAILED", rng.uniform(0.05, 0.9) * run),)
        elif fate < 0.10:
            at = rng.uniform(0.05, 0.95) * run
            ending = (("CANCELLATION_REQUESTED", at), ("CANCELLED", at + rng.uniform(10, 60)))
        else:
            ending = (("SUCCESS", run),)
        out.append(
            Plan(
                arrive=t,
                queued=rng.expovariate(1 / 120),
                validating=rng.uniform(60, 180),
                validated=rng.uniform(2, 10),
                checkpoints=checkpoints,
                ending=ending,
            )
        )


@dataclass
class Run:
    policy: str
    budget: int | None
    applied: dict[tuple[str, str], float] = field(default_factory=dict)
    detected: dict[tuple[str, str], float] = field(default_factory=dict)
    requests: list[float] = field(default_factory=list)  # when each /v1 request arrived
    measure_from: float = 0.0
    measure_to: float = 0.0
    baseline_seconds: float = 0.0


def recording(app: Any, clock: Clock, into: list[float]) -> Any:
    """The simulator app, noting the virtual time of every ``/v1`` request."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and str(scope.get("path", "")).startswith("/v1/"):
            into.append(clock())
        await app(scope, receive, send)

    return wrapped


async def play(
    name: str,
    policy: Policy | None,
    budget: int | None,
    jobs: Sequence[Plan],
    *,
    seed: int,
    hours: float,
    interval: float,
) -> Run:
    clock = Clock(jobs[0].arrive)
    sim = Simulator(clock=clock, seed=seed)
    run = Run(name, budget)
    app = recording(create_app(sim, KEY), clock, run.requests)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        config = FineTuningSourceConfig(
            name="ft",
            kind="mistral-fine-tuning",
            base_url="http://sim",
            api_key=Secret(KEY),
            interval=interval,
            track_checkpoints=False,
            max_requests_per_minute=budget,
        )
        source = budgeted(
            FineTuningSource, config, client, sleep=clock.sleep, clock=clock, policy=policy
        )
        snapshots: dict[str, Snapshot] = {}
        cursor = Cursor()

        async def lookup(ids: Sequence[str]) -> Mapping[str, Snapshot]:
            return {i: snapshots[i] for i in ids if i in snapshots}

        async def poll() -> None:
            nonlocal cursor
            active = {k: v for k, v in snapshots.items() if not v.terminal}
            baseline = not cursor.baseline_done
            result = await source.poll(PollContext(cursor, active, clock(), lookup))
            for job in result.jobs:
                snapshots[job.id], transitions = diff(
                    snapshots.get(job.id), job, source="ft", kind=KIND
                )
                for t in transitions:
                    if t.status is not None and not baseline:
                        run.detected.setdefault((job.id, t.status), clock())
            cursor = result.cursor

        async def admin(path: str, body: dict[str, Any]) -> Any:
            response = await client.post(path, json=body)
            response.raise_for_status()
            return response.json()

        events: list[tuple[float, int, str, Plan]] = []
        for n, plan in enumerate(jobs):
            heapq.heappush(events, (plan.arrive, n, "arrive", plan))
        ids: dict[int, str] = {}

        async def live_until(t: float) -> None:
            """Apply every arrival and start due by ``t``, each at its own time (also while
            a poll waits for the budget's window)."""
            while events and events[0][0] <= t:
                at, n, what, plan = heapq.heappop(events)
                clock.now = max(clock.now, at)
                now = clock.now
                if what == "arrive":
                    body = {
                        "checkpoints": plan.checkpoints,
                        "steps": [
                            ["VALIDATING", plan.queued],
                            ["VALIDATED", plan.queued + plan.validating],
                        ],
                    }
                    job_id = (await admin("/_sim/jobs", body))["ids"][0]
                    ids[n] = job_id
                    run.applied[(job_id, "QUEUED")] = now
                    run.applied[(job_id, "VALIDATING")] = now + plan.queued
                    run.applied[(job_id, "VALIDATED")] = now + plan.queued + plan.validating
                    start = now + plan.queued + plan.validating + plan.validated
                    heapq.heappush(events, (start, n, "run", plan))
                else:
                    job_id = ids[n]
                    steps = [[status, after] for status, after in plan.ending]
                    body = {"status": "RUNNING", "steps": steps}
                    await admin(f"/_sim/jobs/{job_id}/status", body)
                    run.applied[(job_id, "RUNNING")] = now
                    for status, after in plan.ending:
                        run.applied[(job_id, status)] = now + after

        clock.meanwhile = live_until
        # The watcher starts early: under a budget its silent baseline fetches every active
        # job's detail, which takes a while and leaves a backlog; neither is what is measured.
        due = START - LEAD
        drain = math.inf  # set once the baseline is done
        while due <= drain:
            await live_until(due)
            clock.now = max(clock.now, due)
            started = clock.now
            first = not cursor.baseline_done
            await poll()
            if first:
                run.baseline_seconds = clock.now - started
                run.measure_from = max(START, clock.now + SETTLE)
                run.measure_to = run.measure_from + hours * 3600
                drain = run.measure_to + DRAIN
            # A poll that overran its interval is followed at once (the daemon's scheduler
            # runs a late poll within its grace time, and coalesces missed ones).
            due = max(started + interval, clock.now)
    return run


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(run: Run) -> dict[str, Any]:
    window = [
        (key, at) for key, at in run.applied.items() if run.measure_from <= at < run.measure_to
    ]
    latencies = []
    missed = 0
    for key, at in window:
        seen = run.detected.get(key)
        if seen is None:
            missed += 1
            seen = run.measure_to + DRAIN  # counted as seen at the very end: a lower bound
        latencies.append(seen - at)
    times = sorted(run.requests)
    spent = bisect.bisect_left(times, run.measure_to) - bisect.bisect_left(times, run.measure_from)
    minutes = (run.measure_to - run.measure_from) / 60
    busiest = max((bisect.bisect_left(times, t + 60) - i for i, t in enumerate(times)), default=0)
    by_status: dict[str, list[float]] = {}
    for (key, _), latency in zip(window, latencies, strict=True):
        by_status.setdefault(key[1], []).append(latency)
    return {
        "policy": run.policy,
        "budget_per_minute": run.budget,
        "requests_per_minute": round(spent / minutes, 2),
        "max_requests_in_60s": busiest,
        "changes": len(window),
        "undetected": missed,
        "p50_s": round(statistics.median(latencies), 1),
        "p90_s": round(percentile(latencies, 0.9), 1),
        "mean_s": round(statistics.fmean(latencies), 1),
        "baseline_minutes": round(run.baseline_seconds / 60, 1),
        "measured_minutes": round(minutes, 1),
        "p50_s_by_status": {
            k: round(statistics.median(v), 1) for k, v in sorted(by_status.items())
        },
    }


def series(text: str) -> list[tuple[float, list[int]]]:
    """``30:10,12,14;10:12,18,24`` -> [(30.0, [10, 12, 14]), (10.0, [12, 18, 24])]."""
    out = []
    for part in text.split(";"):
        interval, _, budgets = part.partition(":")
        out.append((float(interval), [int(b) for b in budgets.split(",")]))
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    warmup = 26 * 3600.0  # longer than the longest run: the account is in a steady state
    jobs = plans(args.seed, args.hours, warmup, args.active, args.spread)
    rows: list[dict[str, Any]] = []
    policies: list[tuple[str, Callable[[], Policy | None]]] = [
        ("adaptive", lambda: None),  # the default policy of a budgeted source
        ("uniform", RoundRobin),
    ]
    ratios: dict[str, float] = {}
    for interval, budgets in args.series:
        plays: list[tuple[str, Callable[[], Policy | None], int | None]] = []
        if args.unbudgeted:
            plays.append(("unbudgeted", lambda: None, None))
        plays += [(name, factory, b) for b in budgets for name, factory in policies]
        for name, factory, budget in plays:
            started = time.process_time()
            run = await play(
                name,
                factory(),
                budget,
                jobs,
                seed=args.seed,
                hours=args.hours,
                interval=interval,
            )
            row = {"interval_s": interval, **summary(run)}
            row["cpu_s"] = round(time.process_time() - started)
            rows.append(row)
            print(line(row), flush=True)
        for budget in budgets:
            by = {
                r["policy"]: r
                for r in rows
                if r["budget_per_minute"] == budget and r["interval_s"] == interval
            }
            ratio = by["adaptive"]["p50_s"] / by["uniform"]["p50_s"]
            ratios[f"interval {interval:g}s, {budget}/min"] = round(ratio, 3)
    return {
        "scenario": {
            "active_jobs": args.active,
            "hours_measured": args.hours,
            "page_size": 100,
            "expected_durations_h": [2, 24],
            "spread": args.spread,
            "seed": args.seed,
            "track_checkpoints": False,
        },
        "rows": rows,
        "p50_ratio_adaptive_over_uniform": ratios,
    }


HEAD = (
    "interval | budget/min | policy     | spent/min | max in 60s | p50 s  | p90 s  | changes"
    " | missed"
)


def line(r: dict[str, Any]) -> str:
    budget = r["budget_per_minute"] if r["budget_per_minute"] is not None else "none"
    return (
        f"{r['interval_s']:>7g}s | {budget!s:>10} | {r['policy']:<10} | "
        f"{r['requests_per_minute']:>9} | {r['max_requests_in_60s']:>10} | {r['p50_s']:>6} | "
        f"{r['p90_s']:>6} | {r['changes']:>7} | {r['undetected']:>6}"
    )


def table(result: dict[str, Any]) -> str:
    lines = [HEAD, "-" * len(HEAD), *map(line, result["rows"]), ""]
    for key, ratio in result["p50_ratio_adaptive_over_uniform"].items():
        lines.append(f"{key}: median latency adaptive / uniform = {ratio}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--series",
        type=series,
        default=series(DEFAULT_SERIES),
        help=f"interval:budget,budget;... (default {DEFAULT_SERIES})",
    )
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--unbudgeted", action="store_true", help="also run each interval without a budget"
    )
    args = parser.parse_args()
    result = eventloop.run(main, args)
    print()
    print(table(result))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "adaptive.json").write_text(json.dumps(result, indent=2))
