"""A secret value that never shows itself in a repr, a log line or an error; and the
credentials a plain URL of the config may carry (userinfo, query tokens), found and masked."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema


class Secret:
    """Wraps a secret string; ``repr`` and ``str`` print ``<secret>``; ``get()`` reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def coerce(value: Any) -> Secret:
            if isinstance(value, Secret):
                return value
            if not isinstance(value, str):
                raise ValueError("must be a string")
            if not value:
                raise ValueError("must not be empty")
            return Secret(value)

        return core_schema.no_info_plain_validator_function(
            coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: "<secret>"),
            json_schema_input_schema=core_schema.str_schema(),
        )


# Query keys whose values are credentials whatever their length (shorter values of other
# keys, ``sslmode=require``, are settings: scrubbing them from every log line would blank
# ordinary words).
_CREDENTIAL_KEY = re.compile(r"token|key|secret|pass|pwd|sig|auth|code|credential", re.I)
_LONG_VALUE = 8
MASK = "****"


def url_credentials(url: str) -> list[str]:
    """What a plain (not :class:`Secret`) URL of the config carries that is a credential:
    the password of its userinfo (or a lone user name, the ``https://TOKEN@host`` form), and
    its query values that are long or named like a credential. Empty for a non-URL."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    if not parts.scheme or not parts.netloc:
        return []
    found = [unquote(password) if password is not None else unquote(user or "")]
    if password is not None:
        found.append(password)
    elif user:
        found.append(user)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if len(value) >= _LONG_VALUE or _CREDENTIAL_KEY.search(key):
            found.append(value)
    return list(dict.fromkeys(value for value in found if value))


def masked_url(url: str) -> str:
    """``url`` as a human may see it (``check-config``, ``status``): the userinfo's password
    (or a lone user name) and every query value replaced by ``****``; the rest as is."""
    try:
        parts = urlsplit(url)
        user, password, host = parts.username, parts.password, parts.hostname
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not parts.netloc:
        return url if "@" not in url and "?" not in url else "<invalid url>"
    netloc = f"[{host}]" if host and ":" in host else (host or "")
    if port is not None:
        netloc = f"{netloc}:{port}"
    if password is not None:
        netloc = f"{user}:{MASK}@{netloc}"
    elif user:
        netloc = f"{MASK}@{netloc}"
    query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query.replace("%2A", "*"), ""))
