"""The email sink: its configuration checked, one message per batch composed and handed to
its SMTP transport."""

from __future__ import annotations

import email.utils
import ipaddress
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from email.message import EmailMessage

import structlog

from watcher.deliver.redact import Scrubber
from watcher.exceptions import DeliveryError
from watcher.model.outbox import Envelope
from watcher.model.secrets import Secret
from watcher.render.links import JobLinks
from watcher.render.templates import MessageTemplates
from watcher.sinks.email.compose import compose
from watcher.sinks.email.facts import clean
from watcher.sinks.email.transport import SmtpTransport, TlsMode

log = structlog.get_logger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _address(value: str, what: str) -> str:
    """The addr-spec of a configured address (``ValueError`` when unusable)."""
    if not isinstance(value, str) or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise ValueError(f"{what} must be one line of text")
    parsed = email.utils.getaddresses([value])
    if len(parsed) != 1:
        raise ValueError(f"{what} must be exactly one address")
    addr = parsed[0][1]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in addr):
        raise ValueError(f"{what} {clean(value, 80)!r} is not an email address")
    return addr


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmailSink:
    """Sends one email per batch through an SMTP server (a new connection per send).

    Connection errors, timeouts and 4xx replies are retryable; 5xx replies (mailbox
    unavailable, authentication failed), a server without STARTTLS when ``starttls`` is
    configured, and every recipient refused are final.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        tls: TlsMode,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: Secret | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        templates: MessageTemplates | None = None,
        job_url_template: str | None = None,
        job_links: Mapping[str, str] | None = None,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.name = name
        where = f"email {name!r}"
        if not host or host != clean(host, 255) or " " in host:
            raise ValueError(f"{where}: host must be a host name or address")
        if isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"{where}: port must be 1..65535")
        if tls not in ("starttls", "tls", "none"):
            raise ValueError(f"{where}: tls must be starttls, tls or none")
        if not timeout > 0:
            raise ValueError(f"{where}: timeout must be positive")
        if (username is None) != (password is None):
            raise ValueError(f"{where}: username and password go together")
        if username is not None and (not username or username != clean(username, 255)):
            raise ValueError(f"{where}: username must be one line of text")
        if password is not None and tls == "none" and not _is_loopback(host):
            raise ValueError(
                f"{where}: a password with tls: none would cross the network in plaintext; "
                "use starttls or tls"
            )
        if job_url_template is not None and (
            not job_url_template.startswith(("https://", "http://"))
            or job_url_template != clean(job_url_template, 2000)
            or " " in job_url_template
        ):
            raise ValueError(f"{where}: job_url_template must be an http(s) URL")
        try:
            envelope_sender = _address(sender, "from")
            if isinstance(recipients, str) or not recipients:
                raise ValueError("to must list at least one address")
            envelope_recipients = [_address(r, "to") for r in recipients]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        tls_context: ssl.SSLContext | None = None
        if tls != "none":
            try:
                tls_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unusable"
                raise ValueError(f"{where}: ca_file cannot be loaded ({reason})") from None
        self._sender = sender
        self._recipients = list(recipients)
        self._templates = templates
        # The sink's own template (deprecated) only links fine-tuning jobs of sources that
        # have no template of their own (watcher.render.links).
        self._links = JobLinks(job_links, job_url_template)
        self._smtp = SmtpTransport(
            host=host,
            port=port,
            tls=tls,
            tls_context=tls_context,
            username=username,
            password=password,
            timeout=timeout,
            sender=envelope_sender,
            recipients=envelope_recipients,
            where=f"{where} ({host}:{port})",
            scrubber=scrubber or Scrubber.of_secrets(password, username=username),
        )

    def build(self, batch: Sequence[Envelope], *, now: float | None = None) -> EmailMessage:
        """The message for ``batch`` (``ValueError`` when a user template fails)."""
        return compose(
            batch,
            sender=self._sender,
            recipients=self._recipients,
            templates=self._templates,
            links=self._links,
            now=now,
        )

    def preview(self, batch: Sequence[Envelope]) -> str:
        """The email :meth:`send` would send for ``batch``, as its source (nothing is sent)."""
        return str(self.build(batch).as_string())

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver ``batch`` as one email; raises :class:`DeliveryError` on failure."""
        if not batch:
            return
        smtp = self._smtp
        try:
            message = self.build(batch)
        except ValueError as exc:
            reason = smtp.scrubber.excerpt(str(exc))
            raise DeliveryError(f"{smtp.where}: {reason}", retryable=False) from None
        refused = await smtp.deliver(message)
        if refused:
            # Some recipients got it: raising would re-send to them (retry) or bury a
            # delivered message (final). The server's codes tell the operator which.
            log.warning(
                "email_recipients_refused",
                sink=self.name,
                refused=len(refused),
                recipients=len(smtp.recipients),
                codes=sorted({response.code for response in refused.values()}),
            )
        log.debug(
            "email_delivered",
            sink=self.name,
            transition_id=batch[0].transition.id,
            transitions=len(batch),
            recipients=len(smtp.recipients) - len(refused),
        )

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""
