"""The commands behind ``watcher``; each returns its exit code."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio
import structlog

from watcher.config import Config, load_config, resolve_path, summary
from watcher.exceptions import ConfigError
from watcher.logging import configure

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _load(args: argparse.Namespace) -> Config | None:
    path = resolve_path(args.config)
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"watcher: config error: {exc}", file=sys.stderr)
        return None


def dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "simulate":
        return simulate(args)
    if command == "demo":
        from watcher.demo import run_demo

        return run_demo(speed=args.speed, timeout=args.timeout)
    config = _load(args)
    if config is None:
        return EXIT_USAGE
    if command == "check-config":
        print(f"config OK: {resolve_path(args.config)}")
        print(summary(config))
        return EXIT_OK
    configure(config.logging.level, config.logging.format)
    try:
        if command == "run":
            return anyio.run(_run, config)
        if command == "once":
            return anyio.run(_once, config)
        if command == "status":
            return anyio.run(_status, config)
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:
        structlog.get_logger(__name__).exception("watcher_failed")
        return EXIT_FAILURE
    raise AssertionError(f"unhandled command {command}")  # argparse only lets known ones in


async def _run(config: Config) -> int:
    from watcher.daemon import Watcher

    async with Watcher(config) as watcher:
        await watcher.run_until_stopped()
    return EXIT_OK


async def _once(config: Config) -> int:
    from watcher.daemon import Watcher

    async with Watcher(config) as watcher:
        outcomes = await watcher.once()
    failed = [name for name, o in outcomes.items() if o.outcome in ("error", "auth_error")]
    return EXIT_FAILURE if failed else EXIT_OK


async def _status(config: Config) -> int:
    from watcher.stores import open_store

    store = open_store(config.state.url)
    await store.open()
    try:
        status = await store.status()
    finally:
        await store.aclose()
    now = time.time()
    for source in config.sources:
        jobs = status.jobs_by_source.get(source.name, {})
        last = status.last_poll_at.get(source.name)
        cursor = status.cursors.get(source.name)
        ago = f"{now - last:.0f}s ago" if last else "never"
        retired = " (retired: 410 Gone)" if cursor and cursor.retired else ""
        print(f"source {source.name}: {sum(jobs.values())} jobs tracked, last poll {ago}{retired}")
        for name, count in sorted(jobs.items()):
            print(f"  {name}: {count}")
    oldest = f", oldest {now - status.oldest_pending_at:.0f}s" if status.oldest_pending_at else ""
    print(
        f"deliveries: {status.pending} pending{oldest}, {status.dead} dead, "
        f"{status.delivered} delivered"
    )
    return EXIT_OK


def simulate(args: argparse.Namespace) -> int:
    from watcher.simulator import format_banner, run_simulator

    configure("warning", "auto")
    scenario = Path(args.scenario) if args.scenario else None

    def ready(base_url: str) -> None:
        print(format_banner(base_url, args.api_key), flush=True)

    try:
        anyio.run(
            lambda: run_simulator(
                host=args.host,
                port=args.port,
                scenario=scenario,
                speed=args.speed,
                seed=args.seed,
                api_key=args.api_key,
                ready=ready,
            )
        )
    except KeyboardInterrupt:
        return EXIT_OK
    except (ValueError, OSError) as exc:
        print(f"watcher simulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
