"""Where an API client's requests go: the base URL split into its root and its query, and the
query of one request (pure, no I/O).

A base URL may carry a query (a gateway's tenant, a token): each request's path goes after
the root, and the base query before the request's own parameters. A list value repeats its
key (``status=A&status=B``), as httpx sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Endpoint:
    root: str  # scheme, host and path prefix, without a trailing slash
    query: tuple[tuple[str, str], ...] = ()  # the base URL's own parameters

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        root, _, query = base_url.partition("?")
        return cls(root.rstrip("/"), tuple(parse_qsl(query, keep_blank_values=True)))

    def url(self, path: str) -> str:
        return self.root + path

    def params(self, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The base URL's query, then ``params`` (a list value repeats its key)."""
        pairs: list[tuple[str, Any]] = list(self.query)
        for key, value in params.items():
            if isinstance(value, list | tuple):
                pairs.extend((key, one) for one in value)
            else:
                pairs.append((key, value))
        return pairs
