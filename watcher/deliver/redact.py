"""What of a secret-bearing value may be shown: shared by every sink and source."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: what of a URL may be shown (no userinfo, path, query).

    Webhook, Slack and PagerDuty URLs often carry their token in the path or the query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown = f"{shown}:{port}"
    rest = "" if parts.path in ("", "/") and not parts.query and not parts.fragment else "…"
    return f"{parts.scheme.lower()}://{shown}/{rest}"
