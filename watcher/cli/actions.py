"""``watcher cancel`` and ``watcher ack``: what people do, from the command line.

Each builds the store and a recorder routed by the config (the audit transitions go to the
outbox; a running daemon delivers them on its next dispatcher pass, within a second or so)
and, for cancel, only the named source with its HTTP client; then calls
:class:`~watcher.app.actions.Actions` and prints its answer. Exit codes: 0 done, 1 refused
or failed (the API said no, no open alert), 2 usage (unknown source, bad id or name).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2 as httpx

from watcher.abc import Source
from watcher.app.actions import Actions, Done
from watcher.config import Config
from watcher.detect.routing import Router
from watcher.model.jobs import job_id_problem
from watcher.record.recorder import Recorder
from watcher.render.text import clean
from watcher.sources import build_source
from watcher.stores import open_store

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
MAX_BY = 100  # characters of a name kept in the audit


def default_by() -> str:
    """The OS user's name (``unknown`` when the system cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no $USER and no passwd entry (a bare container)
        return "unknown"


def _usage(message: str) -> int:
    print(f"watcher: {message}", file=sys.stderr)
    return EXIT_USAGE


def _checked(args: argparse.Namespace, config: Config, source: str | None) -> str | int:
    """The cleaned ``--by`` name, or the exit code of a usage error (printed)."""
    if source is not None and source not in {s.name for s in config.sources}:
        known = ", ".join(sorted(s.name for s in config.sources))
        return _usage(f"unknown source {clean(source)!r} (the config has: {known})")
    problem = job_id_problem(args.job_id)
    if problem is not None:
        return _usage(f"bad job id {clean(args.job_id)!r}: {problem}")
    by = clean(args.by if args.by is not None else default_by(), MAX_BY)
    if not by:
        return _usage("--by must name someone")
    return by


@asynccontextmanager
async def _actions(config: Config, source: str | None) -> AsyncIterator[Actions]:
    """:class:`Actions` over the config's store, with ``source`` built when given."""
    store = open_store(config.state.url)
    await store.open()
    try:
        recorder = Recorder(store, Router(config.effective_routes))
        async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
            sources: dict[str, Source] = {}
            for source_config in config.sources:
                if source_config.name == source:
                    sources[source] = build_source(source_config, client)
            try:
                yield Actions(store, recorder, sources)
            finally:
                for built in sources.values():
                    await built.aclose()
    finally:
        await store.aclose()


def _told(done: Done) -> int:
    """Print ``done``'s message (stdout when done, stderr when not); its exit code."""
    message = clean(done.message, None)
    if done.ok:
        print(message)
        return EXIT_OK
    print(f"watcher: {message}", file=sys.stderr)
    return EXIT_FAILURE


async def cancel(config: Config, args: argparse.Namespace) -> int:
    """``watcher cancel SOURCE JOB_ID [--by NAME]``."""
    by = _checked(args, config, args.source)
    if isinstance(by, int):
        return by
    async with _actions(config, args.source) as actions:
        return _told(await actions.cancel(args.source, args.job_id, by=by))


async def acknowledge(config: Config, args: argparse.Namespace) -> int:
    """``watcher ack JOB_ID [--source NAME] [--by NAME]``."""
    by = _checked(args, config, args.source)
    if isinstance(by, int):
        return by
    async with _actions(config, None) as actions:
        return _told(await actions.acknowledge(args.job_id, by=by, source=args.source))
