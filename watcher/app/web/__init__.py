"""The status page served on ``http.listen`` beside the probes (:class:`StatusPage`): what
watcher sees, what it sent, what it could not, and the few buttons that act on it."""

from __future__ import annotations

from watcher.app.web.pages import StatusPage

__all__ = ["StatusPage"]
