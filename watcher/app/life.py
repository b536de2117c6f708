"""The daemon's life: one :class:`~watcher.app.daemon.Watcher` after another, from start to
SIGTERM, each SIGHUP reload opening the next one beside the running one before the switch
(``watcher run``)."""

from __future__ import annotations

from pathlib import Path

import anyio
import structlog

from watcher.app.daemon import Watcher
from watcher.app.httpserver import bind
from watcher.app.logging import configure
from watcher.app.reload import SIGNALS
from watcher.config import Config, secrets_of

log = structlog.get_logger(__name__)

RELOAD_TIMEOUT = 30.0  # seconds to open a reloaded config's store, sinks and sources


async def run(config: Config, path: Path | None) -> None:
    """The daemon's life. SIGHUP re-reads ``path``: a valid config replaces sources, sinks
    and routes (pending deliveries and snapshots live in the store and carry over); an
    invalid one is refused, logged, and the running config goes on. A valid config that
    cannot be applied (its port taken, its state path or database out of reach) is found
    out before the running one is torn down: refused the same way, and said by
    ``watcher_config_last_reload_successful`` and ``/readyz``. SIGTERM/SIGINT stop."""
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        watcher = Watcher(config)
        await watcher.__aenter__()
        try:
            while True:
                new = await watcher.serve_signals(signals, path)
                if new is None:
                    return
                replacement = await _replacement(watcher, new)
                if replacement is None:
                    continue  # the running config serves on
                old, watcher = watcher, replacement
                await old.__aexit__(None, None, None)
                configure(new.logging.level, new.logging.format, secrets=secrets_of(new))
                log.info(
                    "reloaded",
                    sources=[s.name for s in new.sources],
                    sinks=[s.name for s in new.sinks],
                )
        finally:
            await watcher.__aexit__(None, None, None)


async def _replacement(running: Watcher, new: Config) -> Watcher | None:
    """The daemon of ``new``, opened beside the running one (store, sinks, sources, its
    port checked), or ``None`` when it cannot be: logged, and the running one told."""
    replacement = Watcher(new)
    try:
        _port_free(new, running.config)
        with anyio.fail_after(RELOAD_TIMEOUT):  # a database out of reach: not forever
            await replacement.__aenter__()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        log.error("reload_failed", error=reason, hint="the running config stays")
        running.reload_failed(reason)
        return None
    return replacement


def _port_free(new: Config, old: Config) -> None:
    """Raise :class:`OSError` when ``new``'s ``http.listen`` cannot be bound (the running
    daemon's own listener is closed while it reloads, so its address is free)."""
    address = new.http.address if new.http is not None else None
    if address is None:
        return
    sock = bind(*address)
    sock.close()
