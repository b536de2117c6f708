"""The HTTP client alone: 5,000 POSTs of ~0.8 kB, 8 in flight, to a minimal keep-alive
HTTP/1.1 server on loopback (``benchmarks._minimal_server``, its own process), per client.

Clients, one after the other in this process, each its own connection pool: httpx2 (what
the API clients use), httpx 0.28 (only where some other package still brings it in, e.g.
mistralai 1.x in the dev venv), aiohttp alone, httpx2 over watcher's aiohttp transport
(``watcher.deliver.transport.aiohttp_client``: ``client.post``), and
``watcher.deliver.exchange.post`` with that client (what one webhook's exchange costs the
sinks: deadline and capped read included; it drives the transport without httpx's client).
Each gets 100 requests to warm up first. Printed: requests/s and this process's CPU
seconds per client, and both as ratios against httpx2 measured in the same run.

    .venv/bin/python -m benchmarks.http_client [--requests 5000] [--in-flight 8]
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2 as httpx

from benchmarks._minimal_server import minimal_server
from benchmarks._report import table, verdict, write
from watcher.app import eventloop
from watcher.deliver.exchange import post
from watcher.deliver.redact import Scrubber
from watcher.deliver.transport import aiohttp_client

BODY = b'{"type":"fine_tuning.job.failed","data":{' + b'"x":"' + b"a" * 760 + b'"}}'
HEADERS = {"content-type": "application/json", "webhook-id": "msg_bench"}
Poster = Callable[[], Awaitable[None]]


async def timed(post_one: Poster, requests: int, in_flight: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``requests`` calls of ``post_one``, ``in_flight`` at a time."""
    for _ in range(100):
        await post_one()
    share, rest = divmod(requests, in_flight)

    async def worker(n: int) -> None:
        for _ in range(n):
            await post_one()

    cpu, wall = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in range(in_flight):
            tg.start_soon(worker, share + (1 if k < rest else 0))
    return time.perf_counter() - wall, time.process_time() - cpu


async def with_httpx_client(client: Any, url: str) -> Poster:
    async def post_one() -> None:
        response = await client.post(url, content=BODY, headers=HEADERS)
        assert response.status_code == 200

    return post_one


async def clients(stack: AsyncExitStack, url: str) -> dict[str, Poster | str]:
    """Each client's one POST, or why it is not measured."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    out: dict[str, Poster | str] = {}
    plain = await stack.enter_async_context(httpx.AsyncClient(limits=limits, trust_env=False))
    out["httpx2"] = await with_httpx_client(plain, url)
    try:
        legacy = importlib.import_module("httpx")  # not a dependency: whatever brings it in
        old = await stack.enter_async_context(
            legacy.AsyncClient(
                limits=legacy.Limits(max_connections=64, max_keepalive_connections=16),
                trust_env=False,
            )
        )
        out[f"httpx {legacy.__version__}"] = await with_httpx_client(old, url)
    except ImportError:
        out["httpx 0.28"] = "not installed"
    try:
        aiohttp = importlib.import_module("aiohttp")
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def raw() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                assert response.status == 200

        out["aiohttp"] = raw
    except ImportError:
        out["aiohttp"] = "not installed"
    ours = await stack.enter_async_context(aiohttp_client())
    out["httpx2 + watcher transport"] = await with_httpx_client(ours, url)
    scrubber = Scrubber.of_secrets()

    async def exchange() -> None:
        answer = await post(
            ours,
            url,
            content=BODY,
            headers=HEADERS,
            deadline_seconds=10.0,
            where="bench",
            scrubber=scrubber,
        )
        assert answer.status == 200

    out["watcher exchange.post (sink client)"] = exchange
    return out


async def run(requests: int, in_flight: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with minimal_server() as (base, _pid):
        url = f"{base}/hook"
        async with AsyncExitStack() as stack:
            for name, client in (await clients(stack, url)).items():
                if isinstance(client, str):
                    print(f"{name}: skipped ({client})")
                    continue
                wall, cpu = await timed(client, requests, in_flight)
                rows.append(
                    {
                        "client": name,
                        "requests": requests,
                        "wall_s": round(wall, 2),
                        "per_second": round(requests / wall),
                        "cpu_s": round(cpu, 2),
                        "cpu_ms_per_request": round(1000 * cpu / requests, 3),
                    }
                )
    base_row = rows[0]
    for row in rows:
        row["speed_vs_httpx2"] = round(row["per_second"] / base_row["per_second"], 2)
        row["cpu_vs_httpx2"] = round(row["cpu_s"] / base_row["cpu_s"], 2)
    return rows


COLUMNS = {
    "client": "client",
    "requests": "requests",
    "wall_s": "wall s",
    "per_second": "req/s",
    "cpu_s": "client CPU s",
    "cpu_ms_per_request": "CPU ms/req",
    "speed_vs_httpx2": "req/s vs httpx2",
    "cpu_vs_httpx2": "CPU vs httpx2",
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=8)
    args = parser.parse_args()
    rows = eventloop.run(run, args.requests, args.in_flight)
    print(table(rows, COLUMNS))
    print()
    ours = next(r for r in rows if r["client"] == "httpx2 + watcher transport")
    checks = [
        verdict(
            "watcher's transport takes less CPU per request than httpx2's own",
            ours["cpu_vs_httpx2"] < 1,
            f"{ours['cpu_ms_per_request']} ms/request, {ours['cpu_vs_httpx2']}x httpx2's",
        )
    ]
    write("http_client", {"rows": rows, "targets": checks})
