"""Email sink: one multipart/alternative message (plain text + HTML) per batch, over SMTP.

Every value shown comes from a foreign API and is treated as hostile: headers only ever carry
one line of printable text (control, format and separator characters become spaces, lengths
are capped), so that a suffix such as ``"bot\\r\\nBcc: x@example.com"`` cannot add a header;
the HTML part escapes every value. The envelope recipients are the configured ones only,
never read back from the message.

Threading: ``Message-ID`` derives from the transition id (stable across re-sends), and
``In-Reply-To``/``References`` name a per-job root (``<job.{source}.{job_id}@watcher>``) that
is never sent itself, so that mail clients gather one job's messages under one thread.

Transport security is what the config says, never less: ``starttls`` refuses to send when
the server does not offer STARTTLS (no plaintext fallback), ``tls`` is implicit TLS, and
``none`` (explicit only) sends in plaintext. The password never appears in a log or an
error: server replies are scrubbed of it before they are quoted.

The package: ``facts`` (what one transition says: tag, label, fact rows, loss charts),
``compose`` (subject, thread headers, text and HTML parts: the message), ``transport``
(:class:`SmtpTransport`: one SMTP exchange, the meaning of the replies), ``sink``
(:class:`EmailSink`: its config checked, compose then transport). It may import
:mod:`watcher.deliver`, :mod:`watcher.render` and below; never another sink.
"""

from __future__ import annotations

from watcher.sinks.email.compose import compose, default_subject, message_id, thread_root
from watcher.sinks.email.facts import facts, label, tag
from watcher.sinks.email.sink import EmailSink
from watcher.sinks.email.transport import SmtpTransport, TlsMode

__all__ = [
    "EmailSink",
    "SmtpTransport",
    "TlsMode",
    "compose",
    "default_subject",
    "facts",
    "label",
    "message_id",
    "tag",
    "thread_root",
]
