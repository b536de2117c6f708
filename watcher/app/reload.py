"""Signals: SIGTERM/SIGINT stop the daemon; SIGHUP re-reads the config file. A bad new
config is refused (logged, told to systemd) and the running one goes on."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import structlog

from watcher.app.sdnotify import Notifier
from watcher.config import Config, load_config
from watcher.exceptions import ConfigError

log = structlog.get_logger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def next_config(
    signals: AsyncIterator[int], path: Path | None, notifier: Notifier
) -> Config | None:
    """Wait for an instruction: ``None`` on SIGTERM/SIGINT (stop), the new config on a
    SIGHUP whose config file is valid. A SIGHUP without a file to re-read, or with a file
    that is not valid, changes nothing. When ``signals`` end, waits until cancelled."""
    async for signum in signals:
        if signum != signal.SIGHUP:
            log.info("stopping", signal=signal.Signals(signum).name)
            return None
        if path is None:
            log.warning("reload_not_supported", hint="no config file to re-read")
            continue
        try:
            # Off the event loop: reading and validating must not stall polls and deliveries.
            new = await anyio.to_thread.run_sync(load_config, path)
        except ConfigError as exc:
            log.error("reload_refused", error=str(exc), hint="the old config stays")
            notifier.status(f"reload refused: {exc}"[:200])
            continue
        log.info("reloading", config=str(path))
        return new
    await anyio.sleep_forever()  # no more signals: serve until something else stops it
    return None
