"""Delivery throughput: 5,000 pending deliveries drained to a loopback webhook receiver
(issue 7, #5; issue 16, #5).

5,000 transitions (500 jobs x 10: four status changes, five checkpoints, SUCCESS) are
enqueued through the store's public ``enqueue`` into a SQLite store, bound for one webhook
sink (``watcher.sinks.build_sink``, signed, over the daemon's sink client:
``watcher.deliver.transport.aiohttp_client``). Then ``Dispatcher.drain()`` sends them with the
default delivery settings (concurrency 8 per sink): store claims and commits, encoding and
signing included. Two runs, each receiver a real HTTP server in its own process:

- ``signing``: ``python -m watcher.devtools.receiver`` (Starlette, verifies every signature);
- ``minimal``: ``benchmarks._minimal_server`` (an asyncio protocol answering 200, records the
  ``webhook-id`` only): what the sender costs when the receiver costs next to nothing.

Afterwards the receiver's record is checked: every transition arrived once (with a valid
signature, where checked), and each job's transitions arrived in the order they were
enqueued. For reference, in the same run: the same webhooks once more through the same sink
without store or dispatcher ("sink alone": encoding and signing, no store), and the very
same requests (bodies and signed headers as the sink built them) through the same client
alone ("raw HTTP"), each job's in order, 8 jobs at a time. ``drain / raw HTTP`` is what
watcher adds to the HTTP client's own time.

    .venv/bin/python -m benchmarks.delivery [--jobs 500] [--per-job 10]
        [--receiver both|signing|minimal] [--profile FILE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx

from benchmarks._minimal_server import cpu_seconds, minimal_server
from benchmarks._report import table, verdict, write
from benchmarks._sim import receiver_process
from watcher.abc import Sink
from watcher.app import eventloop
from watcher.app.logging import configure
from watcher.config import validate_config
from watcher.deliver.dispatch import Dispatcher, SinkPolicy
from watcher.deliver.exchange import post
from watcher.deliver.redact import Scrubber
from watcher.deliver.transport import aiohttp_client
from watcher.devtools.receiver import generate_secret
from watcher.model.outbox import Envelope, Routed
from watcher.model.transitions import Transition, stable_id
from watcher.sinks import build_sink
from watcher.stores import open_store

LIFE = ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")
TARGET_S = 10.0  # to the signature-checking receiver
TARGET_RATE = 2000  # deliveries/s to the minimal receiver
TARGET_CPU_MS = 0.5  # sender CPU per delivery, to the minimal receiver


def transitions(jobs: int, per_job: int, now: int) -> list[Transition]:
    """``per_job`` transitions for each job, in the order a poller would record them."""
    out = []
    for n in range(jobs):
        job_id = f"ftjob-{n:05d}"
        job = {
            "id": job_id,
            "status": "RUNNING",
            "model": "open-mistral-7b",
            "job_type": "completion",
            "suffix": f"bench-{n % 17}",
            "fine_tuned_model": None,
            "created_at": now - 3600,
            "modified_at": now,
        }
        previous = None
        for k in range(per_job):
            if k < len(LIFE) or k == per_job - 1:
                status = LIFE[k] if k < len(LIFE) else "SUCCESS"
                out.append(
                    Transition(
                        id=stable_id("bench", job_id, "status", k, status),
                        type=f"fine_tuning.job.{status.lower()}",
                        source="bench",
                        job_id=job_id,
                        status=status,
                        previous_status=previous,
                        occurred_at=now - 3600 + 60 * k,
                        job={**job, "status": status},
                    )
                )
                previous = status
                continue
            step = 10 * (k - len(LIFE) + 1)
            out.append(
                Transition(
                    id=stable_id("bench", job_id, "checkpoint", step),
                    type="fine_tuning.job.checkpoint",
                    source="bench",
                    job_id=job_id,
                    occurred_at=now - 3600 + 60 * k,
                    job=job,
                    details={
                        "checkpoint": {
                            "step_number": step,
                            "metrics": {"train_loss": 1.0 / step, "valid_loss": 1.1 / step},
                        }
                    },
                )
            )
    return out


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """With ``--profile``: a pyinstrument profile of the block, as text to ``path``."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler  # a development tool, only when asked for

    profiler = Profiler(interval=0.001, async_mode="enabled")
    with profiler:
        yield
    path.write_text(profiler.output_text(unicode=True, show_all=False))
    print(f"profile written to {path}")


async def run(
    jobs: int, per_job: int, receiver: str, profile: Path | None = None
) -> dict[str, Any]:
    """One drain of ``jobs`` x ``per_job`` deliveries to ``receiver`` ("signing": the
    signature-checking receiver; "minimal": ``benchmarks._minimal_server``), then the same
    webhooks through the sink alone, then the same requests through the client alone."""
    configure("warning", "json")
    secret = generate_secret()
    serving = receiver_process(secret) if receiver == "signing" else minimal_server()
    with serving as (url, pid), tempfile.TemporaryDirectory() as tmp:
        config = validate_config(
            {
                "sources": [{"name": "bench", "kind": "mistral-fine-tuning", "api_key": "unused"}],
                "state": {"url": f"sqlite:///{tmp}/state.db"},
                "sinks": [{"name": "hook", "kind": "webhook", "url": f"{url}/h", "secret": secret}],
            },
            env={},
        )
        sink_config = config.sinks[0]
        store = open_store(config.state.url)
        await store.open()
        try:
            sent = transitions(jobs, per_job, int(time.time()))
            started = time.perf_counter()
            added = await store.enqueue([Routed(t, ["hook"]) for t in sent], now=time.time())
            enqueue_s = time.perf_counter() - started
            async with aiohttp_client() as client:  # the daemon's sinks' client
                sink = build_sink(sink_config, client, store)
                dispatcher = Dispatcher(
                    store,
                    {"hook": sink},
                    config.delivery,
                    policies={"hook": SinkPolicy(*sink_config.grouping)},
                )
                with profiled(profile):
                    theirs = cpu_seconds(pid)
                    cpu, wall = time.process_time(), time.perf_counter()
                    await dispatcher.drain()
                    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                    theirs = cpu_seconds(pid) - theirs
                status = await store.status()
                received = await arrivals(client, url, receiver)
                concurrency = config.delivery.concurrency
                floor_cpu = time.process_time()
                floor_s = await transport_floor(sink, sent, concurrency)
                floor_cpu = time.process_time() - floor_cpu
                await arrivals(client, url, receiver)  # cleared
                requests = await captured(sink_config, store, sent)
                raw_cpu = time.process_time()
                raw_s = await raw_pass(client, requests, concurrency)
                raw_cpu = time.process_time() - raw_cpu
        finally:
            await store.aclose()
    return {
        "receiver": receiver,
        "deliveries": len(sent),
        "enqueued": added,
        "jobs": jobs,
        "concurrency": config.delivery.concurrency,
        "enqueue_s": round(enqueue_s, 2),
        "drain_s": round(wall, 2),
        "drain_cpu_s": round(cpu, 2),
        "cpu_ms_per_delivery": round(1000 * cpu / len(sent), 3),
        "per_second": round(len(sent) / wall),
        "receiver_cpu_s": round(theirs, 2),
        "floor_s": round(floor_s, 2),
        "floor_cpu_s": round(floor_cpu, 2),
        "raw_s": round(raw_s, 2),
        "raw_cpu_s": round(raw_cpu, 2),
        "drain_vs_raw": round(wall / raw_s, 2),
        "left_pending": status.pending,
        "dead": status.dead,
        **check(sent, received),
    }


async def arrivals(client: httpx.AsyncClient, url: str, receiver: str) -> list[dict[str, Any]]:
    """What the receiver recorded, in arrival order (and forget it): ``id``, ``valid``,
    ``status`` and the job's id for each request."""
    if receiver == "signing":
        got: list[dict[str, Any]] = (await client.get(f"{url}/_received", timeout=60)).json()
        await client.post(f"{url}/_control", json={"clear": True})
        return [{**r, "job_id": r["data"]["job"]["id"]} for r in got]
    ids = (await client.get(f"{url}/_received", timeout=60)).text.split()
    return [{"id": i, "valid": True, "status": 200, "job_id": None} for i in ids]


async def captured(
    sink_config: Any, store: Any, sent: list[Transition]
) -> list[tuple[str, str, bytes, list[tuple[str, str]]]]:
    """The requests the sink sends for ``sent`` (job id, url, body, headers), caught by
    a mock transport: the raw pass sends exactly these."""
    out: list[tuple[str, str, bytes, list[tuple[str, str]]]] = []
    job: list[str] = [""]

    def catch(request: httpx.Request) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.multi_items() if k != "content-length"]
        out.append((job[0], str(request.url), request.content, headers))
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(catch)) as mock:
        sink = build_sink(sink_config, mock, store)
        now = time.time()
        for t in sent:
            job[0] = str(t.job_id)
            await sink.send([Envelope(t, now)])
    return out


async def raw_pass(
    client: httpx.AsyncClient,
    requests: list[tuple[str, str, bytes, list[tuple[str, str]]]],
    concurrency: int,
) -> float:
    """The same requests through the same client alone (``exchange.post``, as the sink
    sends them: deadline and capped read): no store, dispatcher, encoding or signing; each
    job's requests one after the other, ``concurrency`` jobs at a time."""
    by_job: dict[str, list[tuple[str, bytes, list[tuple[str, str]]]]] = defaultdict(list)
    for job, url, body, headers in requests:
        by_job[job].append((url, body, headers))
    limiter = anyio.CapacityLimiter(concurrency)

    scrubber = Scrubber.of_secrets()

    async def one_job(items: list[tuple[str, bytes, list[tuple[str, str]]]]) -> None:
        async with limiter:
            for url, body, headers in items:
                answer = await post(
                    client,
                    url,
                    content=body,
                    headers=dict(headers),
                    deadline_seconds=10.0,
                    where="raw",
                    scrubber=scrubber,
                )
                assert answer.status == 200, answer.status

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for items in by_job.values():
            tg.start_soon(one_job, items)
    return time.perf_counter() - started


async def transport_floor(sink: Sink, sent: list[Transition], concurrency: int) -> float:
    """The same webhooks through the same sink and client, without store or dispatcher:
    each job's transitions one after the other, ``concurrency`` jobs at a time. What the
    HTTP path alone costs on this machine (the receiver included)."""
    by_job: dict[str, list[Transition]] = defaultdict(list)
    for t in sent:
        by_job[str(t.job_id)].append(t)
    limiter = anyio.CapacityLimiter(concurrency)
    now = time.time()

    async def one_job(items: list[Transition]) -> None:
        async with limiter:
            for t in items:
                await sink.send([Envelope(t, now)])

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for items in by_job.values():
            tg.start_soon(one_job, items)
    return time.perf_counter() - started


def check(sent: list[Transition], received: list[dict[str, Any]]) -> dict[str, Any]:
    """What the receiver saw against what was enqueued: missing, duplicated, out of order."""
    accepted = [r for r in received if r["valid"] and r["status"] == 200]
    seen: dict[str, int] = defaultdict(int)
    for item in accepted:
        seen[item["id"]] += 1
    expected: dict[str, list[str]] = defaultdict(list)
    for t in sent:
        expected[str(t.job_id)].append(t.id)
    job_of = {t.id: str(t.job_id) for t in sent}
    arrived: dict[str, list[str]] = defaultdict(list)
    for item in accepted:
        arrived[item["job_id"] or job_of.get(item["id"], "?")].append(item["id"])
    return {
        "received": len(received),
        "invalid_or_refused": len(received) - len(accepted),
        "missing": sum(1 for t in sent if t.id not in seen),
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "jobs_out_of_order": sum(1 for job, ids in expected.items() if arrived[job] != ids),
    }


COLUMNS = {
    "receiver": "receiver",
    "deliveries": "deliveries",
    "concurrency": "concurrency/sink",
    "drain_s": "drain s",
    "per_second": "deliveries/s",
    "drain_cpu_s": "sender CPU s",
    "cpu_ms_per_delivery": "sender CPU ms/delivery",
    "receiver_cpu_s": "receiver CPU s",
    "floor_s": "sink alone s",
    "raw_s": "raw HTTP s",
    "raw_cpu_s": "raw HTTP CPU s",
    "drain_vs_raw": "drain / raw HTTP",
    "missing": "missing",
    "duplicates": "duplicates",
    "jobs_out_of_order": "jobs out of order",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--per-job", type=int, default=10)
    parser.add_argument(
        "--receiver", choices=["both", "signing", "minimal"], default="both", help="which runs"
    )
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile of the drain")
    args = parser.parse_args()
    kinds = ["signing", "minimal"] if args.receiver == "both" else [args.receiver]
    rows = [eventloop.run(run, args.jobs, args.per_job, kind, args.profile) for kind in kinds]
    print(table(rows, COLUMNS))
    print()
    checks = []
    for row in rows:
        correct = not (row["missing"] or row["duplicates"] or row["jobs_out_of_order"])
        checks.append(
            verdict(
                f"{row['receiver']}: nothing missing or duplicated, order per job kept",
                correct and row["left_pending"] == 0 and row["invalid_or_refused"] == 0,
                f"missing {row['missing']}, duplicates {row['duplicates']}, "
                f"jobs out of order {row['jobs_out_of_order']}, left pending {row['left_pending']}",
            )
        )
        if row["receiver"] == "signing":
            checks.append(
                verdict(
                    f"signing: {row['deliveries']:,} deliveries drain in <= {TARGET_S:g} s",
                    row["drain_s"] <= TARGET_S,
                    f"{row['drain_s']} s ({row['per_second']}/s)",
                )
            )
            continue
        checks += [
            verdict(
                f"minimal: >= {TARGET_RATE:,} deliveries/s",
                row["per_second"] >= TARGET_RATE,
                f"{row['deliveries']:,} in {row['drain_s']} s ({row['per_second']:,}/s), "
                f"{row['drain_vs_raw']}x the raw HTTP pass ({row['raw_s']} s)",
            ),
            verdict(
                f"minimal: sender CPU <= {TARGET_CPU_MS} ms per delivery",
                row["cpu_ms_per_delivery"] <= TARGET_CPU_MS,
                f"{row['cpu_ms_per_delivery']} ms ({row['drain_cpu_s']} s)",
            ),
        ]
    write("delivery", {"rows": rows, "targets": checks})
