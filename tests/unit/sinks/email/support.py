"""What the email sink's tests share: a real SMTP server on loopback that records what it
accepts, a sink pointed at it, envelopes, the parts of a received message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope

from tests.factories import SINK_JOB_ID, sink_envelope, sink_job
from watcher.model.outbox import Envelope
from watcher.sinks.email import EmailSink

JOB_ID = SINK_JOB_ID
USER = "watcher"
PASSWORD = "s3cret-Pa55word-xyz"
SENDER = "watcher@example.com"
RECIPIENTS = ["oncall@example.com", "ml@example.com"]
DETECTED = 1_795_000_100.0


def job(**overrides: Any) -> dict[str, Any]:
    return sink_job(**({"metadata": {"cost": 4.1, "cost_currency": "EUR"}} | overrides))


def envelope(tid: str = "wt_0001", **overrides: Any) -> Envelope:
    return sink_envelope(detected_at=DETECTED, **({"id": tid, "job": job()} | overrides))


class Recorder:
    """An aiosmtpd handler that keeps every MAIL command and every accepted message."""

    def __init__(
        self,
        data_reply: str = "250 OK",
        rcpt_reply: str | None = None,
        refuse: frozenset[str] = frozenset(),
    ) -> None:
        self.mails: list[str] = []
        self.envelopes: list[SMTPEnvelope] = []
        self.logins: list[bytes | None] = []
        self.data_reply = data_reply
        self.rcpt_reply = rcpt_reply
        self.refuse = refuse

    async def handle_MAIL(
        self,
        server: SMTPServer,
        session: Session,
        envelope: SMTPEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.mails.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: SMTPEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTPServer, session: Session, envelope: SMTPEnvelope
    ) -> str:
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
            login = session.auth_data
            self.logins.append(login.login if isinstance(login, LoginPassword) else None)
        return self.data_reply

    def messages(self) -> list[EmailMessage]:
        out = []
        for item in self.envelopes:
            assert isinstance(item.original_content, bytes)
            parsed = email.message_from_bytes(item.original_content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out


def authenticator(
    server: SMTPServer, session: Session, envelope: SMTPEnvelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@asynccontextmanager
async def smtp_server(
    handler: Recorder, *, ssl_context: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[int]:
    """A real aiosmtpd server on 127.0.0.1 inside the test's own event loop; yields its port."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def quiet_handshakes(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # In asyncio debug mode a client refusing our certificate is reported as a loop
        # error on the server side; the client's verdict is what these tests check.
        if isinstance(context.get("exception"), ConnectionResetError | ssl.SSLError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(quiet_handshakes)
    server = await loop.create_server(
        lambda: SMTPServer(handler, hostname="localhost", loop=loop, **options),
        "127.0.0.1",
        0,
        ssl=ssl_context,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let the per-connection tasks see their connection lost
        loop.set_exception_handler(previous)


def make_sink(port: int, **overrides: Any) -> EmailSink:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "sender": SENDER,
        "recipients": RECIPIENTS,
        "timeout": 5.0,
    }
    return EmailSink("oncall", **(options | overrides))


def starttls_options(server_tls: ssl.SSLContext) -> dict[str, Any]:
    return {
        "tls_context": server_tls,
        "require_starttls": True,
        "auth_require_tls": True,
        "authenticator": authenticator,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    body = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(body, EmailMessage)
    return text.get_content(), body.get_content()
