"""What keeps the status page safe: security headers on every answer, and the guard of its
buttons (authentication from ``http.auth`` and a CSRF token).

Reading is open (the page is read-only by default, like ``/metrics``). A POST needs:

- ``http.auth`` configured (else 403: nothing can be changed from the page);
- credentials: ``Authorization: Bearer TOKEN``, or basic auth (``username`` + ``password``,
  or any user name + the token, so that a browser's own login prompt works), compared in
  constant time; missing or wrong: 401 with a basic-auth challenge;
- the CSRF token of its form, equal to the ``watcher_csrf`` cookie (double submit; the
  cookie is ``SameSite=Strict`` and ``HttpOnly``), and a same-origin ``Sec-Fetch-Site``
  (or, from a browser that sends none, ``Origin``): 403 otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watcher.config.service import HttpAuth

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CSRF_COOKIE = "watcher_csrf"
CSRF_FIELD = "csrf"
REALM = 'Basic realm="watcher", charset="UTF-8"'


class SecurityHeaders:
    """ASGI middleware: :data:`HEADERS` on every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


@dataclass(frozen=True)
class Refusal:
    """Why a POST is refused: the HTTP status and a sentence for the person."""

    status: int
    reason: str


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """Decides who may press a button; ``auth=None``: nobody (the page is read-only)."""

    def __init__(self, auth: HttpAuth | None) -> None:
        self.auth = auth

    @property
    def enabled(self) -> bool:
        """Buttons are shown (and POSTs possible) only with ``http.auth``."""
        return self.auth is not None

    def who(self, request: Request) -> str | None:
        """The name of the person the request's credentials prove, or ``None``."""
        auth = self.auth
        if auth is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and auth.token is not None:
            return "token" if _same(value, auth.token.get()) else None
        if scheme != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        if auth.token is not None:
            return (user or "token")[:64] if _same(password, auth.token.get()) else None
        assert auth.username is not None and auth.password is not None  # the config checks
        ok = _same(user, auth.username) & _same(password, auth.password.get())
        return auth.username if ok else None

    @staticmethod
    def csrf_token(request: Request) -> tuple[str, bool]:
        """The request's CSRF token (its cookie's), and whether the cookie must be set."""
        token = request.cookies.get(CSRF_COOKIE, "")
        if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
            return token, False
        return secrets.token_urlsafe(32), True

    def refuse(self, request: Request, form_token: str | None) -> Refusal | None:
        """``None`` when the POST may go on, else why not."""
        if self.auth is None:
            return Refusal(403, "the page is read-only: http.auth is not configured")
        if self.who(request) is None:
            return Refusal(401, "sign in to do this")
        # A browser says where the request comes from in Sec-Fetch-Site (pages cannot forge
        # it); its Origin is "null" under Referrer-Policy: no-referrer, so it counts only
        # without Sec-Fetch-Site (an older browser).
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        if site is not None:
            if site not in ("same-origin", "none"):
                return Refusal(403, "cross-site request refused")
        elif origin is not None and origin != own:
            return Refusal(403, "cross-site request refused")
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not form_token or not _same(form_token, cookie):
            return Refusal(403, "the form's CSRF token is missing or stale: reload the page")
        return None
