"""Deliver: from the outbox to the sinks, at least once.

Owns: the dispatcher (claims, rounds, pacing), the retry decision and backoff (``retry``),
one HTTP exchange for every HTTP peer (``exchange``), secret scrubbing (``redact``). Talks to
sinks and the store only through :mod:`watcher.abc`. May import :mod:`watcher.config` and
below; never a concrete sink or store.
"""
