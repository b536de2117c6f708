"""deliver.redact: the one scrubber of secrets, built from a sink's config."""

from __future__ import annotations

import base64

import pytest

from watcher.deliver.redact import REDACTED, Scrubber, redact_url
from watcher.model.secrets import Secret


def test_scrub_replaces_longest_first() -> None:
    """A secret containing another is replaced whole, not left half-shown."""
    scrubber = Scrubber(["abcd", "abcdefgh"])

    assert f"x {REDACTED} y {REDACTED}" == scrubber.scrub("x abcdefgh y abcd")


def test_short_values_are_not_scrubbed() -> None:
    """Values under three characters would blank ordinary words: ignored."""
    assert "ab cd" == Scrubber(["ab", ""]).scrub("ab cd")


def test_percent_encoded_form_is_scrubbed() -> None:
    """A secret echoed percent-encoded is scrubbed too."""
    assert f"u={REDACTED}" == Scrubber(["a b/c"]).scrub("u=a%20b%2Fc")


def test_repr_shows_no_secret() -> None:
    """The scrubber can sit in a sink's attributes: its repr names no value."""
    assert "<Scrubber of 1 values>" == repr(Scrubber(["s3cr3t-value"]))


@pytest.mark.parametrize(
    ("url", "echoed"),
    [
        pytest.param("https://u:p%40ss@h.example/x", "p@ss", id="password decoded"),
        pytest.param("https://u:pass@h.example/x", "u:pass", id="userinfo"),
        pytest.param(
            "https://u:pass@h.example/x", base64.b64encode(b"u:pass").decode(), id="basic auth"
        ),
        pytest.param("https://h.example/hook/T0k3nPath", "T0k3nPath", id="path segment"),
        pytest.param("https://h.example/h?token=abc123&x=1", "abc123", id="query value"),
        pytest.param("https://h.example/h#fragment-key", "fragment-key", id="fragment"),
    ],
)
def test_url_credentials_in_every_form(url: str, echoed: str) -> None:
    """The parts of a secret URL that carry credentials are scrubbed wherever they appear."""
    assert f"saw {REDACTED}" == Scrubber.of_secrets(Secret(url)).scrub(f"saw {echoed}")


def test_excerpt_is_one_scrubbed_capped_line() -> None:
    """An excerpt: scrubbed also in the form cleaning gives it, one line, capped."""
    scrubber = Scrubber(["top secret", "plain-secret"])

    excerpt = scrubber.excerpt("a\r\nb top\tsecret plain-secret " + "z" * 500, limit=40)

    expected = (f"a b {REDACTED} {REDACTED} {'z' * 13}\u2026", 40)
    assert expected == (excerpt, len(excerpt))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com", "https://hooks.example.com/"),
        ("https://hooks.example.com/", "https://hooks.example.com/"),
        ("https://hooks.example.com/a/b?c=d", "https://hooks.example.com/…"),
        ("HTTP://u:p@Hooks.Example.com:8443/x", "http://hooks.example.com:8443/…"),
        ("http://[::1]:9000/t0ken", "http://[::1]:9000/…"),
        ("https://example.com/#frag", "https://example.com/…"),
        ("no scheme at all", "<invalid url>"),
        ("http://host:notaport/", "<invalid url>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """Only scheme, host and port of a URL are shown."""
    assert expected == redact_url(url)
