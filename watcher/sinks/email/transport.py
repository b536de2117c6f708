"""The email sink's SMTP side: the configured server, transport security, one connection
per send, and the meaning of the server's replies."""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import ssl
import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Literal

import aiosmtplib
import anyio
import structlog

from watcher.abc import Envelope
from watcher.deliver.redact import Scrubber
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.render.templates import MessageTemplates
from watcher.sinks.email.compose import compose
from watcher.sinks.email.facts import clean

log = structlog.get_logger(__name__)

TlsMode = Literal["starttls", "tls", "none"]

DEADLINE_FACTOR = 4  # the whole exchange may take this many times the per-command timeout
_QUIT_SECONDS = 5.0
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
            self._sender = sender
            self._envelope_sender = _address(sender, "from")
            if isinstance(recipients, str) or not recipients:
                raise ValueError("to must list at least one address")
            self._recipients = list(recipients)
            self._envelope_recipients = [_address(r, "to") for r in recipients]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        self._tls_context: ssl.SSLContext | None = None
        if tls != "none":
            try:
                self._tls_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unusable"
                raise ValueError(f"{where}: ca_file cannot be loaded ({reason})") from None
        self._host = host
        self._port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._templates = templates
        self._job_url_template = job_url_template
        self._where = f"{where} ({host}:{port})"
        self._scrubber = scrubber or Scrubber.of_secrets(password, username=username)

    def _reason(self, text: str) -> str:
        return self._scrubber.excerpt(text)

    def build(self, batch: Sequence[Envelope], *, now: float | None = None) -> EmailMessage:
        """The message for ``batch`` (``ValueError`` when a user template fails)."""
        return compose(
            batch,
            sender=self._sender,
            recipients=self._recipients,
            templates=self._templates,
            job_url_template=self._job_url_template,
            now=now,
        )

    def preview(self, batch: Sequence[Envelope]) -> str:
        """The email :meth:`send` would send for ``batch``, as its source (nothing is sent)."""
        return str(self.build(batch).as_string())

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver ``batch`` as one email; raises :class:`DeliveryError` on failure."""
        if not batch:
            return
        try:
            message = self.build(batch)
        except ValueError as exc:
            raise DeliveryError(
                f"{self._where}: {self._reason(str(exc))}", retryable=False
            ) from None
        try:
            with anyio.fail_after(self._timeout * DEADLINE_FACTOR):
                refused = await self._deliver(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            raise self._error(exc) from None
        if refused:
            # Some recipients got it: raising would re-send to them (retry) or bury a
            # delivered message (final). The server's codes tell the operator which.
            log.warning(
                "email_recipients_refused",
                sink=self.name,
                refused=len(refused),
                recipients=len(self._envelope_recipients),
                codes=sorted({response.code for response in refused.values()}),
            )
        log.debug(
            "email_delivered",
            sink=self.name,
            transition_id=batch[0].transition.id,
            transitions=len(batch),
            recipients=len(self._envelope_recipients) - len(refused),
        )

    async def _deliver(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        smtp = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._tls == "tls",
            start_tls=False,  # decided below, explicitly: never an opportunistic downgrade
            timeout=self._timeout,
            tls_context=self._tls_context,
        )
        talking = False  # the server answers sensibly: say goodbye rather than hang up
        try:
            await smtp.connect()
            talking = True
            if self._tls == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise DeliveryError(
                        f"{self._where}: server does not offer STARTTLS; "
                        "refusing to send in plaintext",
                        retryable=False,
                    )
                await smtp.starttls(tls_context=self._tls_context)
            if self._username is not None and self._password is not None:
                await smtp.login(self._username, self._password.get())
            refused, _ = await smtp.send_message(
                message, sender=self._envelope_sender, recipients=self._envelope_recipients
            )
            return refused
        except (DeliveryError, aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            raise
        except BaseException:
            talking = False  # timeouts, broken connections, cancellation: just hang up
            raise
        finally:
            if talking and smtp.is_connected:
                # Its own short budget, immune to the deadline: once the message is accepted,
                # a slow QUIT must not turn the delivery into a retry (a duplicate).
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(min(self._timeout, _QUIT_SECONDS)),
                    contextlib.suppress(aiosmtplib.SMTPException, OSError),
                ):
                    await smtp.quit()
            smtp.close()

    def _error(self, exc: Exception) -> DeliveryError:
        """The :class:`DeliveryError` for what the exchange raised (4xx, network and timeouts
        retryable; 5xx and refusals final)."""
        where = self._where
        if isinstance(exc, TimeoutError):  # our deadline or aiosmtplib's per command
            return DeliveryError(f"{where}: timed out ({type(exc).__name__})", retryable=True)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = sorted({r.code for r in exc.recipients})
            reply = exc.recipients[0].message if exc.recipients else ""
            return DeliveryError(
                f"{where}: all {len(exc.recipients)} recipient(s) refused "
                f"({', '.join(map(str, codes))}: {self._reason(reply)})",
                retryable=False,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            code = exc.code
            what = {
                aiosmtplib.SMTPAuthenticationError: "authentication failed",
                aiosmtplib.SMTPSenderRefused: "sender refused",
                aiosmtplib.SMTPRecipientRefused: "recipient refused",
                aiosmtplib.SMTPDataError: "message refused",
                aiosmtplib.SMTPHeloError: "EHLO refused",
                aiosmtplib.SMTPConnectResponseError: "connection refused by the server",
            }.get(type(exc), "server error")
            reason = f"{where}: {what} ({code} {self._reason(exc.message)})"
            # 5xx is permanent by definition (RFC 5321 4.2.1); 4xx and odd codes are not.
            return DeliveryError(reason, retryable=not 500 <= code < 600)
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=False)
        if isinstance(exc, ssl.SSLError):
            # Retryable: a certificate is fixed on the server side, and a wrong ca_file
            # still ends in dead-letter after the max age, every attempt logged.
            return DeliveryError(
                f"{where}: TLS failed ({self._reason(getattr(exc, 'reason', None) or str(exc))})",
                retryable=True,
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=True)
        if isinstance(exc, OSError):
            return DeliveryError(
                f"{where}: {type(exc).__name__}: {self._reason(str(exc))}", retryable=True
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            # No code: a capability the server lacks (AUTH) or a protocol mismatch; the
            # configuration has to change.
            return DeliveryError(f"{where}: {self._reason(exc.message)}", retryable=False)
        if isinstance(exc, ValueError):  # an address aiosmtplib cannot send safely
            return DeliveryError(f"{where}: {self._reason(str(exc))}", retryable=False)
        return DeliveryError(f"{where}: {type(exc).__name__}", retryable=True)

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""
