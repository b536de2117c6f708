"""``watcher silence add|list|expire``: runtime silences from the command line, through
:class:`watcher.app.actions.Actions` like Slack's buttons; and the active silences in
``watcher status``.

Every bad input is one line on stderr and exit 2; an unknown silence on ``expire`` exit 1.
Everything printed that a person typed is cleaned first.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime

from watcher.config import Config, parse_duration
from watcher.detect.silencing import MATCH_KEYS, matches_everything
from watcher.model.silences import Silence
from watcher.model.transitions import rfc3339
from watcher.record.silences import describe
from watcher.render.text import clean

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Refused(ValueError):
    """A bad argument: its message is the one line the user sees."""


def matchers_of(pairs: Sequence[str], *, everything: bool) -> dict[str, str]:
    """``KEY=VALUE`` arguments as matchers; refuses unknown or repeated keys, empty values,
    and (unless ``everything``) a silence that matches everything."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise Refused(f"--match {clean(pair, 60)!r}: expected KEY=VALUE")
        if key not in MATCH_KEYS:
            raise Refused(
                f"--match: unknown key {clean(key, 40)!r} (valid: {', '.join(MATCH_KEYS)})"
            )
        if key in out:
            raise Refused(f"--match: {key} given twice (one glob per key)")
        if not value or clean(value, None) != value:
            raise Refused(f"--match {key}: the value must be printable text, not empty")
        out[key] = value
    if matches_everything(out) and not everything:
        raise Refused("this silence matches everything: add a --match, or --all if you mean it")
    return out


def end_of(for_: str | None, until: str | None, now: float) -> float | None:
    """When the silence ends: ``now`` + ``--for``, or ``--until`` (RFC 3339, with a zone, in
    the future), or ``None`` (neither given)."""
    if for_ is None and until is None:
        return None
    if for_ is not None:
        try:
            return now + parse_duration(for_)
        except ValueError as exc:
            raise Refused(f"--for: {exc}") from None
    text = (until or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"--until {clean(text, 40)!r}: not an RFC 3339 time") from None
    if moment.tzinfo is None or "T" not in text.upper().replace(" ", "T"):
        raise Refused(f"--until {clean(text, 40)!r}: give a date, a time and a zone (Z, +01:00)")
    end = moment.timestamp()
    if end <= now:
        raise Refused(f"--until {clean(text, 40)!r} is in the past")
    return end


def _bound(pair: Sequence[str] | None) -> tuple[str, str] | None:
    """``--until-resolved SOURCE JOB_ID``."""
    if pair is None:
        return None
    source, job_id = pair
    if not source or not job_id or clean(source, None) != source or clean(job_id, None) != job_id:
        raise Refused("--until-resolved: SOURCE and JOB_ID must be printable, not empty")
    return source, job_id


def _who(by: str | None) -> str:
    if by is not None:
        if not clean(by, 80):
            raise Refused("--by: empty")
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _ends(silence: Silence, now: float) -> str:
    if silence.ended_at is not None:
        return f"ended {rfc3339(silence.ended_at)} by {clean(silence.ended_by or '-', 40)}"
    parts = [] if silence.ends_at is None else [rfc3339(silence.ends_at)]
    if silence.resolved is not None:
        parts.append(f"when {clean(silence.resolved[1], 60)} resolves")
    if silence.ends_at is not None and silence.ends_at <= now:
        return f"ended {rfc3339(silence.ends_at)}"
    return ", or ".join(parts)


def lines(silences: Sequence[Silence], now: float) -> list[str]:
    """The silences as aligned lines under a header: id, matchers, ends, by, comment (all
    cleaned; plain text, so that it greps and never wraps an id)."""
    rows = [("ID", "MATCHERS", "ENDS", "BY", "COMMENT")]
    for s in silences:
        by, comment = clean(s.created_by, 40), clean(s.comment, 80)
        rows.append((clean(s.id, 40), describe(s.matchers), _ends(s, now), by, comment))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]])
        for row in rows
    ]


def as_json(silence: Silence) -> dict[str, object]:
    return {
        "id": silence.id,
        "matchers": dict(silence.matchers),
        "starts_at": rfc3339(silence.starts_at),
        "ends_at": rfc3339(silence.ends_at) if silence.ends_at is not None else None,
        "until_resolved": list(silence.resolved) if silence.resolved else None,
        "comment": silence.comment,
        "created_by": silence.created_by,
        "created_at": rfc3339(silence.created_at),
        "ended_at": rfc3339(silence.ended_at) if silence.ended_at is not None else None,
        "ended_by": silence.ended_by,
        "end_reason": silence.end_reason,
    }


async def run(config: Config, args: argparse.Namespace) -> int:
    """``watcher silence ACTION``."""
    now = time.time()
    try:
        if args.action == "add":
            resolved = _bound(args.until_resolved)
            pairs = args.match
            if resolved is not None and not pairs:
                pairs = [f"source={resolved[0]}", f"job_id={resolved[1]}"]
            matchers = matchers_of(pairs, everything=args.all)
            until = end_of(args.for_, args.until, now)
            if until is None and resolved is None:
                raise Refused("say when it ends: --for, --until and/or --until-resolved")
            if not clean(args.comment, None):
                raise Refused("--comment: say why (it is shown to whoever wonders)")
            by = _who(args.by)
        elif args.action == "expire":
            by = _who(args.by)
    except Refused as exc:
        print(f"watcher silence {args.action}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from watcher.app.actions import Actions  # heavy: SQLAlchemy
    from watcher.detect.routing import Router
    from watcher.record.recorder import Recorder
    from watcher.stores import open_store

    store = open_store(config.state.url)
    await store.open()
    try:
        if args.action == "list":
            silences = await store.list_silences(include_ended=args.all)
            if args.output == "json":
                print(json.dumps([as_json(s) for s in silences], indent=2))  # ASCII: escaped
            elif silences:
                print("\n".join(lines(silences, now)))
            else:
                print("no silences" if args.all else "no silence in force")
            return EXIT_OK
        actions = Actions(store, Recorder(store, Router(config.effective_routes)), {})
        if args.action == "add":
            done = await actions.silence(
                matchers, by=by, comment=args.comment, until=until, resolved=resolved
            )
        else:
            done = await actions.expire(args.id, by=by)
    finally:
        await store.aclose()
    if not done.ok:
        print(f"watcher silence {args.action}: {done.message}", file=sys.stderr)
        return EXIT_FAILURE if args.action == "expire" else EXIT_USAGE
    print(done.message)
    if done.ref is not None and args.action == "add":
        print(done.ref)
    return EXIT_OK
