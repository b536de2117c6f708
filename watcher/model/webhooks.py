"""What a valid Standard Webhooks secret and a valid extra HTTP header are: one rule, used
by the webhook sink when it signs and by the config check, so that both agree."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 16  # the Standard Webhooks spec recommends 24..64; its own example has 21
MAX_SECRET_BYTES = 64
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name


def decode_secret(value: str) -> bytes:
    """The key bytes of a ``whsec_…`` secret; ``ValueError`` (never quoting it) when invalid.

    Stricter than the ``standardwebhooks`` package, which silently drops characters that
    are not base64 and would sign with a key the receiver does not have.
    """
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"webhook secret must start with {SECRET_PREFIX!r} (Standard Webhooks)")
    encoded = value[len(SECRET_PREFIX) :].strip()
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not valid base64 after 'whsec_'") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"webhook secret must decode to {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, "
            f"got {len(key)}"
        )
    return key


def check_headers(headers: Mapping[str, str]) -> None:
    """Extra request headers: valid names, no line breaks (no header injection)."""
    for field_name, value in headers.items():
        if not _TOKEN.fullmatch(field_name):
            raise ValueError(f"header name {field_name[:40]!r} is invalid")
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError(f"header {field_name!r} has a line break or NUL")
