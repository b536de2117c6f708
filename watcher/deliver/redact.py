"""What of a secret-bearing value may be shown: shared by every sink and source.

:func:`redact_url` is the form of a URL that errors and logs may carry; :class:`Scrubber`
removes every known secret, in every form a peer may echo it back, from a text before it is
quoted (a response excerpt, a transport error, a server reply). A sink's scrubber is built
once, from its config (:func:`watcher.sinks.scrubber_for`), and handed to the sink.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from watcher.model.secrets import Secret
from watcher.model.webhooks import SECRET_PREFIX
from watcher.render.text import clean

REDACTED = "<redacted>"
EXCERPT_CHARS = 200
_SHORTEST = 3  # shorter values would blank ordinary words; an SMTP password may be this short


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


def _url_forms(url: str) -> list[str]:
    """The parts of a URL that may carry its credentials: userinfo (and the Basic auth httpx
    makes of it, which an error page may echo), path, its long segments, query, fragment."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    if not parts.scheme or not parts.netloc:
        return []
    found = [parts.path, parts.query, parts.fragment, user or "", password or ""]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 6]
    if user is not None or password is not None:
        userinfo = f"{unquote(user or '')}:{unquote(password or '')}"
        found += [unquote(password or ""), userinfo, base64.b64encode(userinfo.encode()).decode()]
    return found


def _forms(secret: str) -> list[str]:
    """``secret`` in every form a peer may show it: as is, percent-encoded, base64 (SMTP
    AUTH LOGIN), a Standard Webhooks key without its prefix, a URL's credential parts."""
    found = [secret, base64.b64encode(secret.encode("utf-8", "replace")).decode()]
    if secret.startswith(SECRET_PREFIX):
        found.append(secret.removeprefix(SECRET_PREFIX))
    found += _url_forms(secret)
    return found


class Scrubber:
    """Replaces every known secret by ``<redacted>``, longest first (so that a secret
    containing another goes whole). Its ``repr`` shows no secret."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        found = [v for v in values if v]
        found += [quote(v, safe="") for v in found]
        self._values = tuple(
            sorted({v for v in found if len(v) >= _SHORTEST}, key=len, reverse=True)
        )
        self._extra: tuple[str, ...] = ()  # added by also(), sorted in on first use

    def __repr__(self) -> str:
        return f"<Scrubber of {len(self._known())} values>"

    @classmethod
    def of_secrets(
        cls,
        *secrets: Secret | str | None,
        username: str | None = None,
        plain: Iterable[str] = (),
    ) -> Scrubber:
        """A scrubber for ``secrets`` in all their forms; with ``username``, also the SMTP
        AUTH PLAIN forms of each secret; ``plain`` values are scrubbed as given."""
        found = list(plain)
        for secret in secrets:
            if secret is None:
                continue
            value = secret.get() if isinstance(secret, Secret) else secret
            found += _forms(value)
            if username is not None:
                auth = f"{username}\0{value}"
                found += [auth, base64.b64encode(f"\0{auth}".encode()).decode()]
        return cls(found)

    def also(self, *values: str) -> Scrubber:
        """This scrubber with ``values`` too (e.g. one request's signature). Called once per
        message, used only when something is to be quoted: the new values are quoted and
        sorted in on first use."""
        wider = Scrubber()
        wider._values = self._values
        wider._extra = tuple(v for v in values if v)
        return wider

    def _known(self) -> tuple[str, ...]:
        if self._extra:
            extra = [*self._extra, *(quote(v, safe="") for v in self._extra)]
            longer = {*self._values, *(v for v in extra if len(v) >= _SHORTEST)}
            self._values = tuple(sorted(longer, key=len, reverse=True))
            self._extra = ()
        return self._values

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``<redacted>``."""
        for value in self._known():
            text = text.replace(value, REDACTED)
        return text

    def excerpt(self, text: str, limit: int = EXCERPT_CHARS) -> str:
        """What of a peer's text may be quoted in an error: one clean line, scrubbed before
        and after cleaning (a control character may split a secret), cut to ``limit``."""
        return clean(self.scrub(clean(self.scrub(text), None, mark=" ")), limit)
