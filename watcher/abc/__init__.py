"""The extension points: :class:`Source`, :class:`Sink` and :class:`Store` (with its parts).

Implementations live side by side in ``sources/``, ``sinks/`` and ``stores/`` and never
import each other; the pipeline around them owns retries, routing and commits. The store's
parts are in :mod:`watcher.abc.store`, the rest in :mod:`watcher.abc.plugins`; both are
imported from here.
"""

from watcher.abc.plugins import (
    CancelAnswer,
    Cancels,
    CountsFinalErrors,
    Follows,
    Ownership,
    PollContext,
    PollResult,
    Previews,
    Sink,
    Source,
)
from watcher.abc.store import (
    AdminViews,
    AlertStore,
    CursorReader,
    DigestLog,
    Outbox,
    PageViews,
    Readiness,
    SilenceStore,
    SinkState,
    SnapshotReader,
    SnapshotStore,
    Store,
    StoreLifecycle,
)

__all__ = [
    "AdminViews",
    "AlertStore",
    "CancelAnswer",
    "Cancels",
    "CountsFinalErrors",
    "CursorReader",
    "DigestLog",
    "Follows",
    "Outbox",
    "Ownership",
    "PageViews",
    "PollContext",
    "PollResult",
    "Previews",
    "Readiness",
    "SilenceStore",
    "Sink",
    "SinkState",
    "SnapshotReader",
    "SnapshotStore",
    "Source",
    "Store",
    "StoreLifecycle",
]
