"""watcher: keeps watch over Mistral AI jobs and tells people when something happens."""

from __future__ import annotations

__version__ = "0.1.0"
