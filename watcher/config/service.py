"""How the daemon itself runs: ``state:`` (the database), ``logging:`` and ``http:``."""

from __future__ import annotations

import importlib.util
import re
from typing import Literal

from pydantic import field_validator, model_validator

from watcher.config.fields import ConfigModel
from watcher.exceptions import POSTGRES_EXTRA, MissingExtra
from watcher.model.secrets import Secret

# What a postgresql:// URL may say after ``?``: libpq's connection parameters that asyncpg
# understands (anything else would be sent to the server as a setting and fail there).
POSTGRES_PARAMETERS = frozenset(
    {
        "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword",
        "sslnegotiation", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "target_session_attrs", "krbsrvname", "gsslib", "passfile", "service",
    }
)  # fmt: skip
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class StateConfig(ConfigModel):
    url: str = "sqlite:///watcher-state.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            return value
        if value.startswith(("postgresql://", "postgresql+asyncpg://")):
            # lazy: SQLAlchemy is heavy and only a PostgreSQL URL needs its parser
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                url = make_url(value)
            except (ArgumentError, ValueError) as e:
                raise ValueError(f"not a valid PostgreSQL URL: {e}") from None
            if not url.database:
                raise ValueError("names no database: postgresql://USER@HOST:PORT/DATABASE")
            for name, given in url.query.items():
                if name not in POSTGRES_PARAMETERS:
                    known = ", ".join(sorted(POSTGRES_PARAMETERS))
                    raise ValueError(f"unknown connection parameter {name!r} (known: {known})")
                if name == "sslmode" and given not in SSL_MODES:
                    raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
            if importlib.util.find_spec(POSTGRES_EXTRA[0]) is None:  # the `postgres` extra
                raise ValueError(MissingExtra("", *POSTGRES_EXTRA).message)
            return value
        raise ValueError(
            "must be sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        )


class LoggingConfig(ConfigModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]*)):(?P<port>\d{1,5})$")


class HttpAuth(ConfigModel):
    """Who may press the status page's buttons (retry, silence, expire): a bearer ``token``
    (a browser gives it as the password of basic auth, any user name), or ``username`` +
    ``password``. Secrets, from ``token_file`` / ``password_file`` as well."""

    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None

    @model_validator(mode="after")
    def _one_way(self) -> HttpAuth:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.token is None) == (self.password is None):
            raise ValueError("give either token (or token_file) or username + password")
        for secret in (self.token, self.password):
            if secret is not None and len(secret.get()) < 12:
                raise ValueError("a token or password needs at least 12 characters")
        return self


class HttpConfig(ConfigModel):
    """``/healthz``, ``/readyz``, ``/metrics`` and the status page on ``listen``
    (``HOST:PORT``, ``[::1]:PORT``, or ``:PORT`` for every interface); off when ``listen`` is
    absent. The page is read-only unless ``auth`` is set."""

    listen: str | None = None
    auth: HttpAuth | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _LISTEN.match(value.strip())
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464 (IPv6: [::1]:9464)")
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to bind, or ``None`` when off."""
        if self.listen is None:
            return None
        match = _LISTEN.match(self.listen)
        assert match is not None  # validated above
        host = match["v6"] or match["host"] or "0.0.0.0"  # noqa: S104 (":PORT" asks for it)
        return host, int(match["port"])
