"""EmailSink over real SMTP on loopback: STARTTLS, TLS and plaintext as configured, the retry
verdict of every reply, refused recipients, and no password leak."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from tests.unit.sinks.email.support import (
    JOB_ID,
    PASSWORD,
    RECIPIENTS,
    SENDER,
    USER,
    Recorder,
    envelope,
    free_port,
    job,
    make_sink,
    parts,
    smtp_server,
    starttls_options,
)
from watcher.exceptions import DeliveryError
from watcher.model.secrets import Secret


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
