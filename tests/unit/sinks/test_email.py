"""EmailSink: real SMTP exchanges on loopback (STARTTLS, TLS, plaintext), threading
headers, header injection, HTML escaping, the retry verdict, and no secret leaks."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import socket
import ssl
import sys
import types
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from structlog.testing import capture_logs

from tests.factories import SINK_JOB_ID, sink_envelope, sink_job
from watcher.abc import Envelope
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret
from watcher.render.templates import MessageTemplates
from watcher.sinks.email import EmailSink, default_subject, message_id, thread_root

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


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


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


@pytest.fixture
def no_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watcher.render.charts", None)  # import raises ImportError


@pytest.fixture
def fake_charts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    module = types.ModuleType("watcher.render.charts")

    def svg_chart(series: Any) -> str:
        calls.append(series)
        return '<svg xmlns="http://www.w3.org/2000/svg" id="loss"></svg>'

    def sparkline(values: Sequence[float]) -> str:
        return "\u2587\u2585\u2582"

    module.svg_chart = svg_chart  # type: ignore[attr-defined]
    module.sparkline = sparkline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "watcher.render.charts", module)
    return calls


async def test_starttls_auth_delivers_a_multipart_message(
    server_tls: ssl.SSLContext, ca_file: str, no_charts: None
) -> None:
    """Over STARTTLS with AUTH the server gets one multipart/alternative message, text and
    HTML, with the expected subject, threading headers and envelope."""
    handler = Recorder()
    with anyio.fail_after(10):
        async with smtp_server(handler, **starttls_options(server_tls)) as port:
            sink = make_sink(
                port,
                tls="starttls",
                ca_file=ca_file,
                username=USER,
                password=Secret(PASSWORD),
            )
            await sink.send([envelope()])

    [message] = handler.messages()
    assert [USER.encode()] == handler.logins
    assert SENDER == handler.envelopes[0].mail_from
    assert RECIPIENTS == handler.envelopes[0].rcpt_tos
    assert "multipart/alternative" == message.get_content_type()
    assert "[FAILED] open-mistral-7b (support-bot)" == message["Subject"]
    assert "<wt_0001@watcher>" == message["Message-ID"]
    root = f"<job.ft.{JOB_ID}@watcher>"
    assert (root, root) == (message["In-Reply-To"], message["References"])
    assert "wt_0001" == message["X-Watcher-Transition"]
    assert ", ".join(RECIPIENTS) == message["To"]
    assert message["Date"] is not None
    text, body = parts(message)
    assert "RUNNING \u2192 FAILED" in text and "4.1 EUR" in text
    assert "<table" in body and "RUNNING \u2192 FAILED" in body


async def test_messages_of_one_job_share_the_thread_root(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    """Two messages about one job carry different Message-IDs and the same References."""
    handler = Recorder()
    with anyio.fail_after(10):
        async with smtp_server(handler, **starttls_options(server_tls)) as port:
            sink = make_sink(
                port, tls="starttls", ca_file=ca_file, username=USER, password=Secret(PASSWORD)
            )
            queued = envelope("wt_q", type="fine_tuning.job.queued", status="QUEUED")
            await sink.send([queued])
            await sink.send([envelope("wt_f")])

    first, second = handler.messages()
    assert ["<wt_q@watcher>", "<wt_f@watcher>"] == [first["Message-ID"], second["Message-ID"]]
    assert first["References"] == second["References"] == second["In-Reply-To"]


async def test_header_injection_adds_no_header_and_no_recipient() -> None:
    """A suffix carrying CR/LF and a Bcc line stays in the subject's text: no Bcc header,
    and only the configured recipients reach RCPT TO."""
    handler = Recorder()
    hostile = envelope(job=job(suffix="bot\r\nBcc: attacker@example.com\r\n\r\n<b>x</b>"))
    with anyio.fail_after(10):
        async with smtp_server(handler) as port:
            await make_sink(port).send([hostile])

    [message] = handler.messages()
    assert message["Bcc"] is None
    assert RECIPIENTS == handler.envelopes[0].rcpt_tos
    expected = "[FAILED] open-mistral-7b (bot Bcc: attacker@example.com <b>x</b>)"
    assert expected == message["Subject"]
    raw = handler.envelopes[0].original_content
    assert isinstance(raw, bytes)
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in headers


async def test_server_without_starttls_gets_nothing() -> None:
    """``tls: starttls`` against a server that does not offer it fails for good, naming
    STARTTLS, and sends no MAIL command and no message in plaintext."""
    handler = Recorder()
    with anyio.fail_after(10):
        async with smtp_server(handler, auth_require_tls=False) as port:
            sink = make_sink(port, tls="starttls", username=USER, password=Secret(PASSWORD))
            with pytest.raises(DeliveryError) as caught:
                await sink.send([envelope()])

    assert not caught.value.retryable
    assert "STARTTLS" in str(caught.value)
    assert ([], []) == (handler.mails, handler.envelopes)


async def test_implicit_tls(server_tls: ssl.SSLContext, ca_file: str) -> None:
    """``tls: tls`` speaks TLS from the first byte and trusts the private CA of ca_file."""
    handler = Recorder()
    with anyio.fail_after(10):
        async with smtp_server(handler, ssl_context=server_tls) as port:
            await make_sink(port, tls="tls", ca_file=ca_file).send([envelope()])

    assert 1 == len(handler.messages())


@pytest.mark.parametrize("tls", ["tls", "starttls"])
async def test_untrusted_certificate_is_not_accepted(server_tls: ssl.SSLContext, tls: str) -> None:
    """Without the private CA the server's certificate is refused (a retryable TLS error:
    certificates get fixed on the server) and nothing is sent."""
    handler = Recorder()
    options: dict[str, Any] = (
        {"ssl_context": server_tls} if tls == "tls" else {"tls_context": server_tls}
    )
    with anyio.fail_after(10):
        async with smtp_server(handler, **options) as port:
            with pytest.raises(DeliveryError) as caught:
                await make_sink(port, tls=tls).send([envelope()])

    assert caught.value.retryable
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert ([], []) == (handler.mails, handler.envelopes)


async def test_plaintext_when_configured() -> None:
    """``tls: none`` delivers in plaintext to a server without TLS."""
    handler = Recorder()
    with anyio.fail_after(10):
        async with smtp_server(handler) as port:
            await make_sink(port, tls="none").send([envelope()])

    assert 1 == len(handler.messages())


async def test_wrong_password_is_final_and_leaks_nothing(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    """A rejected login is a final error with the code; neither the error nor any log line
    shows the password in any form."""
    wrong = "Wrong-Pa55word-abc"
    handler = Recorder()
    with anyio.fail_after(10), capture_logs() as logs:
        async with smtp_server(handler, **starttls_options(server_tls)) as port:
            sink = make_sink(
                port, tls="starttls", ca_file=ca_file, username=USER, password=Secret(wrong)
            )
            with pytest.raises(DeliveryError) as caught:
                await sink.send([envelope()])

    assert not caught.value.retryable
    assert "authentication failed (535" in str(caught.value)
    forms = [wrong, base64.b64encode(wrong.encode()).decode()]
    forms.append(base64.b64encode(f"\0{USER}\0{wrong}".encode()).decode())
    shown = repr(caught.value) + str(caught.value) + repr(logs) + repr(sink.__dict__)
    assert [] == [form for form in forms if form in shown]
    assert [] == handler.envelopes


async def test_server_down_is_retryable() -> None:
    """Nobody listening: a retryable error."""
    with anyio.fail_after(10), pytest.raises(DeliveryError) as caught:
        await make_sink(free_port()).send([envelope()])

    assert caught.value.retryable


async def test_silent_server_times_out_retryably() -> None:
    """A server that accepts the connection but never greets is a retryable timeout."""

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(5)

    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, silent)
            with pytest.raises(DeliveryError) as caught:
                await make_sink(port, timeout=0.2).send([envelope()])
            tg.cancel_scope.cancel()
        await listener.aclose()

    assert caught.value.retryable
    assert "timed out" in str(caught.value)


@pytest.mark.parametrize(
    ("handler", "retryable", "needle"),
    [
        pytest.param(Recorder(data_reply="451 4.3.0 Try again later"), True, "451", id="4xx"),
        pytest.param(Recorder(data_reply="554 5.6.0 Rejected"), False, "554", id="5xx"),
        pytest.param(
            Recorder(rcpt_reply="550 5.1.1 Mailbox unavailable"),
            False,
            "all 2 recipient(s) refused (550",
            id="recipients refused",
        ),
    ],
)
async def test_smtp_replies_decide_the_verdict(
    handler: Recorder, retryable: bool, needle: str
) -> None:
    """4xx replies are retryable; 5xx replies and refused recipients are final with the code."""
    with anyio.fail_after(10):
        async with smtp_server(handler) as port:
            with pytest.raises(DeliveryError) as caught:
                await make_sink(port).send([envelope()])

    assert retryable == caught.value.retryable
    assert needle in str(caught.value)


async def test_some_recipients_refused_is_delivered() -> None:
    """When the server takes the message for some recipients only, the delivery stands (a
    retry would send it twice to the others) and a warning counts the refusals."""
    handler = Recorder(refuse=frozenset({RECIPIENTS[1]}))
    with anyio.fail_after(10), capture_logs() as logs:
        async with smtp_server(handler) as port:
            await make_sink(port).send([envelope()])

    assert [RECIPIENTS[0]] == handler.envelopes[0].rcpt_tos
    warnings = [e for e in logs if e["event"] == "email_recipients_refused"]
    expected = [{"refused": 1, "recipients": 2, "codes": [550]}]
    assert expected == [{k: e[k] for k in ("refused", "recipients", "codes")} for e in warnings]


def test_hostile_values_are_escaped_in_html(no_charts: None) -> None:
    """Every API value is HTML-escaped: a script tag never appears raw in the HTML part."""
    hostile = "<script>alert(1)</script>"
    batch = [
        envelope(
            job=job(suffix=hostile, model=f'm"{hostile}', metadata={"cost": hostile}),
            details={"reason": hostile, "alert": {hostile: hostile}},
        )
    ]
    message = make_sink(25).build(batch, now=DETECTED)

    text, body = parts(message)
    assert "<script" not in body.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert hostile in text  # plain text shows it as the characters it is


def test_group_subject_counts_statuses() -> None:
    """A group's subject counts each status, most frequent first, and the jobs."""
    batch = [envelope(f"wt_{i}", job_id=f"job-{i}") for i in range(3)]
    batch.append(
        envelope("wt_c", job_id="job-c", status="CANCELLED", type="fine_tuning.job.cancelled")
    )

    assert "[3 FAILED, 1 CANCELLED] 4 jobs" == default_subject(batch)


def test_group_threading() -> None:
    """A group about one job joins its thread; a group spanning several jobs starts its own,
    and every id is listed in X-Watcher-Transition."""
    sink = make_sink(25)
    one_job = sink.build([envelope("wt_a"), envelope("wt_b")], now=DETECTED)
    two_jobs = sink.build([envelope("wt_a"), envelope("wt_c", job_id="other")], now=DETECTED)

    assert f"<job.ft.{JOB_ID}@watcher>" == one_job["References"]
    assert (None, None) == (two_jobs["References"], two_jobs["In-Reply-To"])
    assert "wt_a wt_c" == two_jobs["X-Watcher-Transition"]
    assert two_jobs["Message-ID"].startswith("<wt_a.2.")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"job": job(fine_tuned_model="ft:open-mistral-7b:abc:20250627:3b9c1e7a")},
            "[FAILED] ft:open-mistral-7b:abc:20250627:3b9c1e7a (support-bot)",
            id="fine-tuned model first",
        ),
        pytest.param(
            {"type": "fine_tuning.job.stalled", "status": None, "previous_status": None},
            "[STALLED] open-mistral-7b (support-bot)",
            id="alert",
        ),
        pytest.param(
            {"type": "fine_tuning.job.checkpoint", "status": None, "previous_status": None},
            "[CHECKPOINT] open-mistral-7b (support-bot)",
            id="checkpoint",
        ),
        pytest.param(
            {"type": "watcher.source.retired", "status": None, "job_id": None, "job": {}},
            "[SOURCE RETIRED] ft",
            id="source",
        ),
    ],
)
def test_single_subject(overrides: dict[str, Any], expected: str) -> None:
    """A single transition's subject names its status or kind, the model and the suffix."""
    assert expected == default_subject([envelope(**overrides)])


def test_message_ids_are_sanitized() -> None:
    """Ids from elsewhere cannot break out of the Message-ID or thread root."""
    hostile = envelope("wt_1>\r\nBcc: x@y <", job_id="a b>c", source="f\nt")

    assert "<wt_1-Bcc-x-y@watcher>" == message_id([hostile])
    assert thread_root(hostile.transition).startswith("<job.f-t.a-b-c.")


def test_loss_curve_chart_and_sparkline(fake_charts: list[Any]) -> None:
    """A job with a loss curve gets an inline SVG chart in HTML and a sparkline in text."""
    curve = [[10, 2.5, None], [20, 1.9, 2.1], [30, None, 1.7], ["bad"], [40, float("nan"), 1.5]]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)

    text, body = parts(message)
    expected = [
        {"train_loss": [(10, 2.5), (20, 1.9)], "valid_loss": [(20, 2.1), (30, 1.7), (40, 1.5)]}
    ]
    assert expected == fake_charts
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="loss"></svg>' in body
    assert "Train loss:" in text and "\u2587\u2585\u2582 2.5 \u2192 1.9" in text


def test_no_chart_module_no_chart(no_charts: None) -> None:
    """Without watcher.charts the message goes out without a chart or sparkline."""
    curve = [[10, 2.5, 2.6], [20, 1.9, 2.1]]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)

    text, body = parts(message)
    assert "<svg" not in body and "Train loss" not in text


def test_templates_override_parts() -> None:
    """User templates replace subject and text; the subject is still one clean line."""
    templates = MessageTemplates(
        "oncall",
        {"subject": "{{ count }}: {{ t.job.suffix }}", "text": "job {{ t.job.id }}", "html": None},
    )
    batch = [envelope(job=job(suffix="a\x00b\r\nBcc: x@example.com"))]
    message = make_sink(25, templates=templates).build(batch, now=DETECTED)

    text, body = parts(message)
    assert "1: a b Bcc: x@example.com" == message["Subject"]
    assert f"job {JOB_ID}\n" == text
    assert "<table" in body


async def test_failing_template_is_final() -> None:
    """A template that fails to render is a final delivery error naming the part."""
    templates = MessageTemplates("oncall", {"subject": "{{ t.nope }}"})
    with pytest.raises(DeliveryError) as caught:
        await make_sink(25, templates=templates).send([envelope()])

    assert not caught.value.retryable
    assert "subject template" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        pytest.param({"sender": "not an address"}, "from", id="sender"),
        pytest.param({"recipients": []}, "at least one", id="no recipients"),
        pytest.param({"recipients": ["a@b.c\r\nBcc: x@y.z"]}, "one line", id="recipient CRLF"),
        pytest.param({"username": USER}, "together", id="username alone"),
        pytest.param(
            {"host": "smtp.example.com", "username": USER, "password": Secret(PASSWORD)},
            "plaintext",
            id="password in plaintext",
        ),
        pytest.param({"tls": "tls", "ca_file": "/nonexistent/ca.pem"}, "ca_file", id="ca_file"),
        pytest.param({"job_url_template": "javascript:x"}, "job_url_template", id="url"),
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any], needle: str) -> None:
    """Settings that cannot work, or would leak, are refused when the sink is built."""
    with pytest.raises(ValueError, match=needle) as caught:
        make_sink(25, **overrides)

    assert PASSWORD not in str(caught.value)


def test_job_link_is_encoded() -> None:
    """The job link percent-encodes the job id and is an escaped anchor in HTML."""
    sink = make_sink(25, job_url_template="https://console.example.com/jobs/{job_id}?s={source}")
    message = sink.build([envelope(job_id='a"<b>')], now=DETECTED)

    text, body = parts(message)
    url = "https://console.example.com/jobs/a%22%3Cb%3E?s=ft"
    assert f'<a href="{url}">{url}</a>' in body
    assert url in text


def test_real_chart_is_valid_svg_in_the_html_part() -> None:
    """With the real charts module, the HTML part holds an SVG that the stdlib XML parser
    reads, with one curve per series; the text part's sparkline falls with the loss."""
    import re
    import xml.etree.ElementTree as ET

    curve = [[s, 2.0 / s, 2.2 / s if s % 2 == 0 else 0.0] for s in range(1, 21)]
    message = make_sink(25).build([envelope(job=job(loss_curve=curve))], now=DETECTED)
    text, body = parts(message)
    found = re.search(r"<svg.*?</svg>", body, re.DOTALL)
    assert found is not None
    root = ET.fromstring(found.group(0))  # noqa: S314 (our own output, the point of the test)
    assert root.tag.endswith("svg")
    assert 2 == len([e for e in root.iter() if e.tag.endswith("polyline")])
    line = next(row for row in text.splitlines() if row.startswith("Train loss:"))
    spark = line.split(":", 1)[1].split()[0]
    assert spark[0] > spark[-1]  # block characters rise in code point with the value
