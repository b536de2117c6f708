"""What operators read in a terminal: ``watcher status`` and ``watcher deliveries``.

Everything shown came from somewhere else (the API's statuses and ids, a sink's error, a
silence's comment): it is cleaned of control, bidi and escape characters
(:func:`watcher.render.text.clean`) and handed to rich as plain :class:`~rich.text.Text`,
never as markup, so that a status ``[/bold]`` is shown, not interpreted.
"""

from __future__ import annotations

import argparse
import sys
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from watcher.app.health import Limits
from watcher.cli import silences
from watcher.config import Config
from watcher.model.snapshot import Cursor
from watcher.render.text import clean

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _cell(value: object, limit: int = 80) -> Text:
    """A table cell of foreign text: cleaned, never markup."""
    return Text(clean(value, limit, mark="?"))


def source_state(
    cursor: Cursor | None, last: float | None, *, now: float, ready_limit: float
) -> str:
    """``ok``, or what is wrong with a source as the store last saw it: retired, failing,
    never polled, or not polled for longer than ``/readyz`` allows (no daemon running?)."""
    if cursor is not None and cursor.retired:
        return "retired (410 Gone)"
    if cursor is not None and cursor.failing_since is not None:
        return f"failing for {now - cursor.failing_since:.0f}s"
    if not last:
        return "never polled"
    if now - last > ready_limit:
        return f"stale: no poll for {now - last:.0f}s (is a daemon running?)"
    return "ok"


async def status(config: Config, args: argparse.Namespace) -> int:
    """``watcher status``: sources, tracked jobs by status, deliveries, silences. Reads the
    store the daemon uses (SQLite in WAL mode: safe while it runs)."""
    from watcher.stores import POSTGRES_PREFIXES, open_store  # heavy: SQLAlchemy

    store = open_store(config.state.url)
    await store.open()
    try:
        found = await store.status()
        silenced = await store.active_silences(time.time())
    finally:
        await store.aclose()
    owners: dict[str, str | None] | None = None
    if config.state.url.startswith(POSTGRES_PREFIXES):  # replicas: who polls what
        from watcher.app.coordination.advisory import current_owners  # heavy: asyncpg

        owners = await current_owners(config.state.url, [s.name for s in config.sources])
    now = time.time()
    limits = Limits.from_config(config).ready
    console = Console(highlight=False, soft_wrap=True)
    sources = Table(title="sources", title_justify="left")
    columns = ["source", "kind", "interval", "last poll", "state", "jobs by status"]
    if owners is not None:
        columns.append("polled by")
    for column in columns:
        sources.add_column(column)
    for source in config.sources:
        jobs = found.jobs_by_source.get(source.name, {})
        last = found.last_poll_at.get(source.name)
        state = source_state(
            found.cursors.get(source.name),
            last,
            now=now,
            ready_limit=limits.get(source.name, float("inf")),
        )
        by_status = ", ".join(
            f"{clean(name, 40, mark='?')} {count}" for name, count in sorted(jobs.items())
        )
        row = [
            _cell(source.name),
            _cell(source.kind),
            Text(f"{source.interval:g}s"),
            Text(f"{now - last:.0f}s ago" if last else "never"),
            _cell(state, 120),
            _cell(f"{sum(jobs.values())}: {by_status}" if jobs else "0", 400),
        ]
        if owners is not None:
            row.append(_cell(owners.get(source.name) or "nobody (no replica running?)"))
        sources.add_row(*row)
    console.print(sources)
    oldest = f", oldest {now - found.oldest_pending_at:.0f}s" if found.oldest_pending_at else ""
    console.print(
        Text(
            f"deliveries: {found.pending} pending{oldest}, {found.dead} dead, "
            f"{found.delivered} delivered"
            + (f", {found.silenced} silenced" if found.silenced else "")
            + ("  (see: watcher deliveries --state dead)" if found.dead else "")
        )
    )
    if silenced:
        print("silences in force:\n  " + "\n  ".join(silences.lines(silenced, now)))
    return EXIT_OK


async def deliveries(config: Config, args: argparse.Namespace) -> int:
    """``watcher deliveries``: list them, or ``retry`` dead ones (exit 1 when the named
    transition has no dead delivery)."""
    from watcher.stores import open_store  # heavy: SQLAlchemy

    store = open_store(config.state.url)
    await store.open()
    try:
        if args.action == "retry":
            if not args.id and not args.all_dead:
                print(
                    "watcher: deliveries retry needs a transition ID or --all-dead", file=sys.stderr
                )
                return EXIT_USAGE
            count = await store.retry_dead(None if args.all_dead else args.id, now=time.time())
            if count == 0 and not args.all_dead:
                print(
                    f"watcher: no dead delivery of transition {clean(args.id, 80, mark='?')!r}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            print(f"{count} dead deliveries back in the queue")
            return EXIT_OK
        rows = await store.list_deliveries(state=args.state, limit=args.limit)
    finally:
        await store.aclose()
    for row in rows:
        error = f"  {clean(row.last_error, 300, mark='?')}" if row.last_error else ""
        print(
            f"{clean(row.transition_id, 80, mark='?')}  {clean(row.sink, 40, mark='?'):<12} "
            f"{row.state:<9} attempts={row.attempts}  {clean(row.type, 128, mark='?')}  "
            f"{clean(row.source, 64, mark='?')}/{clean(row.job_id or '-', 255, mark='?')}{error}"
        )
    if not rows:
        print("no deliveries")
    return EXIT_OK
