"""What operators read in a terminal: ``watcher status`` and ``watcher deliveries``.

Everything shown came from somewhere else (the API's statuses and ids, a sink's error, a
silence's comment): it is cleaned of control, bidi and escape characters
(:func:`watcher.render.text.clean`) and handed to rich as plain :class:`~rich.text.Text`,
never as markup, so that a status ``[/bold]`` is shown, not interpreted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from watcher.app.health import Limits
from watcher.cli import silences
from watcher.config import Config
from watcher.model.outbox import DeliveryRow
from watcher.model.snapshot import Cursor
from watcher.model.transitions import rfc3339
from watcher.render.text import clean

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Console(Console):
    """rich's console, but a closed stdout ends the command as every other one does (the
    quiet exit of :mod:`watcher.__main__`), not with rich's own exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


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
    rows: list[dict[str, Any]] = []
    for source in config.sources:
        last = found.last_poll_at.get(source.name)
        rows.append(
            {
                "name": source.name,
                "kind": source.kind,
                "interval_seconds": source.interval,
                "last_poll_at": rfc3339(last) if last else None,
                "last_poll_age_seconds": round(now - last, 1) if last else None,
                "state": source_state(
                    found.cursors.get(source.name),
                    last,
                    now=now,
                    ready_limit=limits.get(source.name, float("inf")),
                ),
                "jobs_by_status": dict(sorted(found.jobs_by_source.get(source.name, {}).items())),
                **({"polled_by": owners.get(source.name)} if owners is not None else {}),
            }
        )
    oldest = found.oldest_pending_at
    outbox = {
        "pending": found.pending,
        "oldest_pending_age_seconds": round(now - oldest, 1) if oldest else None,
        "dead": found.dead,
        "delivered": found.delivered,
        "silenced": found.silenced,
    }
    if args.output == "json":
        document = {
            "sources": rows,
            "deliveries": outbox,
            "silences": [silences.as_json(s) for s in silenced],
        }
        print(json.dumps(document, indent=2))  # ASCII: no bidi or C1 character reaches a terminal
        return EXIT_OK
    _status_table(rows, outbox, owners is not None)
    if silenced:
        print("silences in force:\n  " + "\n  ".join(silences.lines(silenced, now)))
    return EXIT_OK


def _status_table(rows: list[dict[str, Any]], outbox: dict[str, Any], replicas: bool) -> None:
    """``watcher status`` for a person: a table of sources, a line about deliveries."""
    console = _Console(highlight=False, soft_wrap=True)
    sources = Table(title="sources", title_justify="left")
    columns = ["source", "kind", "interval", "last poll", "state", "jobs by status"]
    if replicas:
        columns.append("polled by")
    for column in columns:
        sources.add_column(column)
    for row in rows:
        jobs: dict[str, int] = row["jobs_by_status"]
        by_status = ", ".join(f"{clean(name, 40, mark='?')} {n}" for name, n in jobs.items())
        age = row["last_poll_age_seconds"]
        cells = [
            _cell(row["name"]),
            _cell(row["kind"]),
            Text(f"{row['interval_seconds']:g}s"),
            Text(f"{age:.0f}s ago" if age is not None else "never"),
            _cell(row["state"], 120),
            _cell(f"{sum(jobs.values())}: {by_status}" if jobs else "0", 400),
        ]
        if replicas:
            cells.append(_cell(row.get("polled_by") or "nobody (no replica running?)"))
        sources.add_row(*cells)
    console.print(sources)
    age = outbox["oldest_pending_age_seconds"]
    oldest = f", oldest {age:.0f}s" if age is not None else ""
    console.print(
        Text(
            f"deliveries: {outbox['pending']} pending{oldest}, {outbox['dead']} dead, "
            f"{outbox['delivered']} delivered"
            + (f", {outbox['silenced']} silenced" if outbox["silenced"] else "")
            + ("  (see: watcher deliveries --state dead)" if outbox["dead"] else "")
        )
    )


async def deliveries(config: Config, args: argparse.Namespace) -> int:
    """``watcher deliveries``: list them, or ``retry`` dead ones (exit 1 when the named
    transition has no dead delivery)."""
    from watcher.stores import open_store  # heavy: SQLAlchemy

    if args.all_dead and args.action != "retry":
        print("watcher: --all-dead goes with retry: watcher deliveries retry --all-dead",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
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
    if args.output == "json":
        print(json.dumps([_delivery_json(row) for row in rows], indent=2))  # ASCII, as status
        return EXIT_OK
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


def _delivery_json(row: DeliveryRow) -> dict[str, Any]:
    return {
        "transition_id": row.transition_id,
        "type": row.type,
        "source": row.source,
        "job_id": row.job_id,
        "sink": row.sink,
        "state": row.state,
        "attempts": row.attempts,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
        "next_attempt_at": rfc3339(row.next_attempt_at) if row.state == "pending" else None,
        "last_error": row.last_error,
    }
