"""Exceptions raised by watcher.

The tree::

    WatcherError
    ├── ConfigError                 bad config file; names the field path (exit code 2)
    │   └── MissingExtra            the config needs an optional dependency not installed
    ├── SourceError                 a source could not be polled this cycle
    │   ├── SourceUnavailable       connection error, timeout, 429/5xx after retries
    │   ├── SourceAuthError         401/403: the API key is wrong or lacks access
    │   ├── SourceRetired           410 Gone: the API was retired (expected, reported once)
    │   └── SourceProtocolError     an answer we cannot read at all (malformed JSON, no total)
    │       └── UnusableAnswer      one answer refused on its own (too large, nested too deep):
    │                               a detail's job is skipped, a listing's cycle fails
    └── DeliveryError               a sink did not accept a message (retryable or final)

Messages are built from identifiers (source names, job ids, status codes), never from
secrets or request headers.
"""

from __future__ import annotations


class WatcherError(Exception):
    """Base class of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration is invalid; ``path`` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class MissingExtra(ConfigError):
    """The config asks for something whose dependency comes with an extra of the
    distribution that is not installed (e.g. ``state.url: postgresql://`` without asyncpg)."""

    def __init__(self, path: str, module: str, extra: str, what: str) -> None:
        super().__init__(
            path,
            f"{what} needs {module}, which is not installed:"
            f" pip install 'mistral-watcher[{extra}]'",
        )


# ``state.url: postgresql://``: the PostgreSQL store and the replicas' advisory locks.
POSTGRES_EXTRA = ("asyncpg", "postgres", "a PostgreSQL store")


class SourceError(WatcherError):
    """A source could not be polled this cycle; the next cycle tries again."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"source {source!r}: {message}")


class SourceUnavailable(SourceError):
    """Connection errors, timeouts, 429 or 5xx that outlasted the retries."""


class SourceAuthError(SourceError):
    """401 or 403: the API key is missing, wrong or lacks access."""

    def __init__(self, source: str, status_code: int) -> None:
        self.status_code = status_code
        what = (
            "unauthorized (401): check the API key"
            if status_code == 401
            else (f"forbidden ({status_code}): the API key lacks access")
        )
        super().__init__(source, what)


class SourceRetired(SourceError):
    """410 Gone: the API behind this source was retired."""

    def __init__(self, source: str, route: str) -> None:
        self.route = route
        super().__init__(source, f"API retired: {route} answers 410 Gone")


class SourceProtocolError(SourceError):
    """An answer that cannot be read at all (not JSON, wrong shape, unexpected status)."""


class UnusableAnswer(SourceProtocolError):
    """One answer refused on its own, not because of the API's health: larger than watcher
    buffers, or nested deeper than it decodes. Asking again would get the same; a detail's
    job is skipped (the cycle goes on), a listing fails its cycle."""


class NotFound(SourceProtocolError):
    """404: the thing asked for does not exist (a job deleted or never there)."""


class StreamRefused(SourceProtocolError):
    """An event stream answered a final 4xx (a filter refused, a route not there): asking
    again the same way will not help soon."""

    def __init__(self, source: str, status: int, detail: str) -> None:
        super().__init__(source, f"HTTP {status} from the event stream: {detail}")
        self.status_code = status


class DeliveryError(WatcherError):
    """A sink did not accept a message.

    ``retryable`` tells the dispatcher whether to try again later; ``retry_after`` (seconds)
    is the peer's own wish (Retry-After) and overrides the computed backoff when larger.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class StaleCycle(WatcherError):
    """A cycle's commit was refused: another replica committed this source since the cycle
    read it (the source changed hands). Nothing of the cycle was written."""

    def __init__(self, source: str, expected: int) -> None:
        super().__init__(
            f"source {source!r} was committed by another replica since version {expected}"
        )
        self.source = source
        self.expected = expected


class RecordRefused(WatcherError):
    """The store refused what a write carried (a value its columns cannot hold: a NUL
    character, a number out of range…), not the write itself: the same write without the
    offending item goes through. Raised by the store, so that the pipeline can record the
    other items and skip the bad one (one bad job must never blind its whole source)."""
