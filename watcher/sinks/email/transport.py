"""The email sink's SMTP side: one connection per message, transport security exactly as
configured (never an opportunistic downgrade), and the meaning of the server's replies."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib
import anyio

from watcher.deliver.redact import Scrubber
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret

TlsMode = Literal["starttls", "tls", "none"]

DEADLINE_FACTOR = 4  # the whole exchange may take this many times the per-command timeout
_QUIT_SECONDS = 5.0


@dataclass(frozen=True)
class SmtpTransport:
    """One SMTP server as configured; ``where`` names the sink in errors, ``scrubber``
    removes the password from every server reply quoted."""

    host: str
    port: int
    tls: TlsMode
    tls_context: ssl.SSLContext | None
    username: str | None
    password: Secret | None
    timeout: float
    sender: str
    recipients: list[str]
    where: str
    scrubber: Scrubber

    async def deliver(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        """Send ``message`` to the envelope recipients; those the server refused (some got
        it). Raises :class:`DeliveryError` when nobody got it."""
        try:
            with anyio.fail_after(self.timeout * DEADLINE_FACTOR):
                return await self._exchange(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            raise self.error(exc) from None

    async def _exchange(self, message: EmailMessage) -> dict[str, aiosmtplib.SMTPResponse]:
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=False,  # decided below, explicitly: never an opportunistic downgrade
            timeout=self.timeout,
            tls_context=self.tls_context,
        )
        talking = False  # the server answers sensibly: say goodbye rather than hang up
        try:
            await smtp.connect()
            talking = True
            if self.tls == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise DeliveryError(
                        f"{self.where}: server does not offer STARTTLS; "
                        "refusing to send in plaintext",
                        retryable=False,
                    )
                await smtp.starttls(tls_context=self.tls_context)
            if self.username is not None and self.password is not None:
                await smtp.login(self.username, self.password.get())
            refused, _ = await smtp.send_message(
                message, sender=self.sender, recipients=self.recipients
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
                    anyio.move_on_after(min(self.timeout, _QUIT_SECONDS)),
                    contextlib.suppress(aiosmtplib.SMTPException, OSError),
                ):
                    await smtp.quit()
            smtp.close()

    def error(self, exc: Exception) -> DeliveryError:
        """The :class:`DeliveryError` for what the exchange raised (4xx, network and timeouts
        retryable; 5xx and refusals final)."""
        where = self.where
        shown = self.scrubber.excerpt
        if isinstance(exc, TimeoutError):  # our deadline or aiosmtplib's per command
            return DeliveryError(f"{where}: timed out ({type(exc).__name__})", retryable=True)
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = sorted({r.code for r in exc.recipients})
            reply = exc.recipients[0].message if exc.recipients else ""
            return DeliveryError(
                f"{where}: all {len(exc.recipients)} recipient(s) refused "
                f"({', '.join(map(str, codes))}: {shown(reply)})",
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
            reason = f"{where}: {what} ({code} {shown(exc.message)})"
            # 5xx is permanent by definition (RFC 5321 4.2.1); 4xx and odd codes are not.
            return DeliveryError(reason, retryable=not 500 <= code < 600)
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return DeliveryError(f"{where}: {shown(exc.message)}", retryable=False)
        if isinstance(exc, ssl.SSLError):
            # Retryable: a certificate is fixed on the server side, and a wrong ca_file
            # still ends in dead-letter after the max age, every attempt logged.
            return DeliveryError(
                f"{where}: TLS failed ({shown(getattr(exc, 'reason', None) or str(exc))})",
                retryable=True,
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
            return DeliveryError(f"{where}: {shown(exc.message)}", retryable=True)
        if isinstance(exc, OSError):
            return DeliveryError(
                f"{where}: {type(exc).__name__}: {shown(str(exc))}", retryable=True
            )
        if isinstance(exc, aiosmtplib.SMTPException):
            # No code: a capability the server lacks (AUTH) or a protocol mismatch; the
            # configuration has to change.
            return DeliveryError(f"{where}: {shown(exc.message)}", retryable=False)
        if isinstance(exc, ValueError):  # an address aiosmtplib cannot send safely
            return DeliveryError(f"{where}: {shown(str(exc))}", retryable=False)
        return DeliveryError(f"{where}: {type(exc).__name__}", retryable=True)
