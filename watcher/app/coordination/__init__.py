"""Which replica polls which source (:class:`watcher.abc.Ownership`).

With SQLite, one process owns everything (:class:`SoleOwnership`). With PostgreSQL, the
replicas sharing the database split the sources between them with session advisory locks
(:class:`~watcher.app.coordination.advisory.AdvisoryLocks`), even when only one runs: a second
one started by mistake then waits instead of polling twice.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection, Sequence

from watcher.abc import Ownership
from watcher.app.coordination.sole import SoleOwnership
from watcher.stores import POSTGRES_PREFIXES

APP_PREFIX = "watcher:"  # each replica's connection: application_name = prefix + its name
SHOWN_NAME = 63 - len(APP_PREFIX)  # PostgreSQL keeps 63 bytes of application_name


def claims_of(owner: str, replica: str) -> bool:
    """Whether a delivery claim's ``owner`` (``replica#pid``) is ``replica``'s, as the
    replica's name is seen in the database (cut to :data:`SHOWN_NAME`)."""
    name = owner.rsplit("#", 1)[0]
    return name == replica or (len(replica) >= SHOWN_NAME and name[:SHOWN_NAME] == replica)


def replica_name() -> str:
    """``$WATCHER_REPLICA`` (e.g. the pod's name), else ``host-pid``."""
    name = os.environ.get("WATCHER_REPLICA", "").strip()
    return (name or f"{socket.gethostname()}-{os.getpid()}")[:100]


def build_ownership(
    url: str,
    sources: Sequence[str],
    *,
    replica: str,
    busy: Callable[[], Collection[str]] = frozenset,
    observe: Callable[[str, str], None] | None = None,
) -> Ownership:
    if url.startswith(POSTGRES_PREFIXES):
        # Lazy: asyncpg (and its connection machinery) loads only for a PostgreSQL store;
        # a SQLite daemon never needs it.
        from watcher.app.coordination.advisory import AdvisoryLocks

        return AdvisoryLocks(url, sources, replica=replica, busy=busy, observe=observe)
    return SoleOwnership(sources, replica=replica)


__all__ = ["SoleOwnership", "build_ownership", "replica_name"]
