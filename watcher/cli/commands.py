"""The commands behind ``watcher``; each returns its exit code.

``dispatch`` looks the subcommand up in three tables, one per way a command runs: without a
config, on a config without logging (it prints), or as async work with logging configured.
The imports inside the handlers load the daemon, the stores, the simulator and the sinks
only for the command that needs them, so the light commands stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from watcher.app import eventloop
from watcher.app.logging import configure, level_from_env
from watcher.cli import previews, silences, views
from watcher.cli.failures import one_line
from watcher.cli.schema import config_schema, events_schema
from watcher.config import (
    Config,
    load_config,
    resolve_path,
    secrets_of,
    summary,
)
from watcher.detect.routing import Router
from watcher.exceptions import ConfigError, DeliveryError
from watcher.model import types
from watcher.model.outbox import Envelope
from watcher.model.transitions import Transition, stable_id

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
    try:
        level_from_env()
    except ValueError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    standalone = _STANDALONE.get(command)
    if standalone is not None:
        return standalone(args)
    config = _load(args)
    if config is None:
        return EXIT_USAGE
    printing = _PRINTING.get(command)
    if printing is not None:
        return printing(config, args)
    work = _WORK.get(command)
    if work is None:  # argparse only lets known commands in
        raise AssertionError(f"unhandled command {command}")
    configure(config.logging.level, config.logging.format, secrets=secrets_of(config))
    try:
        return eventloop.run(work, config, args)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        raise  # the reader of stdout left: a quiet exit (watcher.__main__)
    except Exception as exc:
        said = one_line(exc)
        if said is None:  # a bug: the whole story, in the log
            structlog.get_logger(__name__).exception("watcher_failed")
        else:
            print(f"watcher {command}: {said}", file=sys.stderr)
        return EXIT_FAILURE


def _schema(args: argparse.Namespace) -> int:
    chosen = config_schema() if args.what == "config" else events_schema()
    print(json.dumps(chosen, indent=2, sort_keys=True))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from watcher.devtools.demo import run_demo  # heavy: the simulator, receiver and daemon

    return run_demo(speed=args.speed, timeout=args.timeout)


def _receive(args: argparse.Namespace) -> int:
    from watcher.devtools.receiver import main as receive  # heavy: starlette, uvicorn

    return receive(["--host", args.host, "--port", str(args.port)])


def _check_config(config: Config, args: argparse.Namespace) -> int:
    print(f"config OK: {resolve_path(args.config)}")
    print(summary(config))
    return EXIT_OK


async def _migrate(config: Config, args: argparse.Namespace) -> int:
    from watcher.stores import migrate  # heavy: SQLAlchemy and Alembic

    revision = await migrate(config.state.url)
    print(f"state schema at revision {revision}")
    return EXIT_OK


async def _run(config: Config, args: argparse.Namespace) -> int:
    from watcher.app.life import run  # heavy: the whole daemon

    await run(config, resolve_path(args.config))
    return EXIT_OK


async def _once(config: Config, args: argparse.Namespace) -> int:
    from watcher.app.daemon import Watcher  # heavy: the whole daemon

    async with Watcher(config) as watcher:
        outcomes = await watcher.once()
    failed = [name for name, o in outcomes.items() if o.outcome in ("error", "auth_error")]
    return EXIT_FAILURE if failed else EXIT_OK


def simulate(args: argparse.Namespace) -> int:
    from watcher.devtools.simulator import format_banner, run_simulator  # heavy: starlette

    configure("warning", "auto")
    scenario = Path(args.scenario) if args.scenario else None

    def ready(base_url: str) -> None:
        print(format_banner(base_url, args.api_key), flush=True)

    if not 0 <= args.port <= 65535:
        print(f"watcher simulate: --port {args.port}: not a TCP port (0-65535)", file=sys.stderr)
        return EXIT_USAGE
    if not args.speed > 0:
        print(f"watcher simulate: --speed {args.speed:g}: must be above 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        eventloop.run(
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
    except Exception as exc:
        said = one_line(exc)
        if said is None:
            raise
        print(f"watcher simulate: {said}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


_STANDARD_DATA = frozenset({"source", "job", "status", "previous_status", "occurred_at"})


def _transition_from(text: str) -> Transition:
    """A transition from a webhook payload or a stored transition, as a file or JSON."""
    inline = text.lstrip().startswith(("{", "["))
    path = Path(text)
    if not inline and not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise ValueError(f"{text[:200]!r} {what} (give a JSON file or inline JSON)")
    raw = json.loads(text if inline else path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if "data" in raw and "type" in raw:  # a webhook payload
        data = raw["data"]
        job = data.get("job") or {}
        return Transition(
            id=str(raw.get("id", "explain")),
            type=raw["type"],
            source=data.get("source", ""),
            job_id=job.get("id"),
            status=data.get("status"),
            previous_status=data.get("previous_status"),
            job=job,
            # What the payload says besides the standard keys (an activity, a failure).
            details={k: v for k, v in data.items() if k not in _STANDARD_DATA},
        )
    return Transition.from_json({"id": "explain", "source": "", **raw})


def explain_routes(config: Config, text: str) -> int:
    """``watcher routes explain``: which routes and sinks a transition reaches, and why."""
    try:
        transition = _transition_from(text)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        print(f"watcher: cannot read a transition: {exc}", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    router = Router(config.effective_routes)
    print(
        f"transition: {transition.type} (source {transition.source or '-'}, "
        f"status {transition.status or '-'}, previous {transition.previous_status or '-'})"
    )
    decisions = router.decide(transition, now)
    for decision in decisions:
        head = f"route {decision.index} -> {', '.join(decision.route.sinks)}:"
        if not decision.matched:
            print(f"  {head} no match ({'; '.join(decision.why)})")
            continue
        state = "matches, muted now" if decision.muted else "matches"
        stop = "; continue: false, routing stops here" if not decision.route.continue_ else ""
        print(f"  {head} {state}{stop}")
    stopped = len(decisions) < len(router.routes)
    if stopped:
        print(f"  routes {len(decisions)}..{len(router.routes) - 1}: not considered")
    sinks = router.sinks_for(transition, now)
    print(f"sinks: {', '.join(sinks) if sinks else 'none (recorded, sent nowhere)'}")
    return EXIT_OK


async def _test_sink(config: Config, args: argparse.Namespace) -> int:
    """``watcher test-sink``: a clearly labelled test message through one sink."""
    from watcher.app.daemon import Watcher  # heavy: the whole daemon

    sink_name: str = args.sink
    if sink_name not in {s.name for s in config.sinks}:
        print(f"watcher: no sink named {sink_name!r}", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    transition = Transition(
        id=stable_id(types.TEST, sink_name, now),
        type=types.TEST,
        source="watcher",
        occurred_at=int(now),
        details={"reason": "TEST MESSAGE from `watcher test-sink`: no job is concerned"},
    )
    async with Watcher(config) as watcher:
        try:
            await watcher.sinks[sink_name].send([Envelope(transition, now)])
        except DeliveryError as exc:
            print(f"watcher: sink {sink_name!r} refused the test message: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    print(f"sink {sink_name!r} accepted the test message")
    return EXIT_OK


async def _act(config: Config, args: argparse.Namespace) -> int:
    """``watcher cancel`` and ``watcher ack`` (:mod:`watcher.cli.actions`)."""
    from watcher.cli import actions  # heavy: the store and the sources

    return await (actions.cancel if args.command == "cancel" else actions.acknowledge)(config, args)


# Commands that need no config file.
_STANDALONE: dict[str, Callable[[argparse.Namespace], int]] = {
    "simulate": simulate,
    "schema": _schema,
    "demo": _demo,
    "receive": _receive,
}
# Commands that read the config and print, with logging left as it is.
_PRINTING: dict[str, Callable[[Config, argparse.Namespace], int]] = {
    "check-config": _check_config,
    "routes": lambda config, args: explain_routes(config, args.transition),
    "render": lambda config, args: previews.render(
        config, args.sink, args.sample, fmt=args.format, out=args.out
    ),
}
# Commands that run async work with logging configured; a crash is logged, exit 1.
_WORK: dict[str, Callable[[Config, argparse.Namespace], Awaitable[int]]] = {
    "test-sink": _test_sink,
    "deliveries": views.deliveries,
    "run": _run,
    "once": _once,
    "status": views.status,
    "migrate": _migrate,
    "cancel": _act,
    "ack": _act,
    "silence": silences.run,
}
