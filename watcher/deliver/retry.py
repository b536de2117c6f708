"""The retry decision and the backoff, shared by the API client and the HTTP sinks."""

from __future__ import annotations

import enum
import random
from datetime import UTC
from email.utils import parsedate_to_datetime


class Verdict(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    FINAL = "final"


def classify(status_code: int) -> Verdict:
    """2xx done; 408, 425, 429 and 5xx retried (assumed recoverable); the rest is final."""
    if 200 <= status_code < 300:
        return Verdict.DONE
    if status_code in (408, 425, 429) or 500 <= status_code < 600:
        return Verdict.RETRY
    return Verdict.FINAL


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Unparseable values give ``None``; a negative number or a date in the past gives 0 (the
    wait is over); the wait is capped at one hour so that a hostile or broken peer cannot
    park us forever. A date without an offset (asctime, ``-0000``) is GMT, as every HTTP
    date is, whatever the host's time zone.
    """
    if value is None:
        return None
    value = value.strip()
    seconds: float
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:  # naive would mean the host's local time
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0 if seconds == seconds else None
    return min(seconds, 3600.0)


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before try number ``attempt + 1``: exponential with "equal jitter", never
    less than what the peer asked for in ``Retry-After``."""
    exp = min(cap, base * (2.0 ** min(attempt, 62)))
    jitter: float = (rng or random).uniform(0.5, 1.0)
    delay = exp * jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
