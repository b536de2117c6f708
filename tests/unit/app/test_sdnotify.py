"""sd_notify without libsystemd: datagrams on a real AF_UNIX socket owned by the test."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from watcher.app.sdnotify import Notifier, monotonic_usec


class Listener:
    """Plays systemd's side: receives what the notifier sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> list[str]:
        return self.sock.recv(65536).decode().split("\n")

    def nothing_more(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536)
        except BlockingIOError:
            return True
        return False


@pytest.fixture
def path_socket() -> Iterator[tuple[str, Listener]]:
    # A short directory: socket paths are limited to about 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = str(Path(directory) / "notify")
        listener = Listener(path)
        yield path, listener
        listener.sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, Listener]]:
    name = f"watcher-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    yield "@" + name, listener
    listener.sock.close()


def test_without_notify_socket_everything_is_a_silent_no_op() -> None:
    """With no $NOTIFY_SOCKET, the notifier is off and sending is a no-op."""
    with capture_logs() as logs:
        notifier = Notifier(env={})
        sent = [notifier.ready(), notifier.status("x"), notifier.watchdog(), notifier.stopping()]
    assert (False, [False] * 4, None, []) == (
        notifier.enabled,
        sent,
        notifier.watchdog_interval,
        logs,
    )


def test_filesystem_path_receives_ready_and_status(path_socket: tuple[str, Listener]) -> None:
    """A path in $NOTIFY_SOCKET receives each message as one datagram of lines."""
    address, listener = path_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": address})
    assert notifier.ready("polling 1 source")
    assert notifier.status("two\nlines")
    assert ["READY=1", "STATUS=polling 1 source"] == listener.receive()
    assert ["STATUS=two lines"] == listener.receive()  # a newline cannot split a message
    notifier.close()


def test_abstract_namespace_receives_watchdog_and_stopping(
    abstract_socket: tuple[str, Listener],
) -> None:
    """An @name in $NOTIFY_SOCKET is a Linux abstract socket."""
    address, listener = abstract_socket
    notifier = Notifier(env={"NOTIFY_SOCKET": address})
    notifier.watchdog()
    notifier.stopping("bye")
    assert [["WATCHDOG=1"], ["STOPPING=1", "STATUS=bye"]] == [
        listener.receive(),
        listener.receive(),
    ]
    assert listener.nothing_more()
    notifier.close()


def test_reloading_carries_the_monotonic_clock(abstract_socket: tuple[str, Listener]) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC (Type=notify-reload wants both in one message)."""
    address, listener = abstract_socket
    with closing(Notifier(env={"NOTIFY_SOCKET": address})) as notifier:
        before = monotonic_usec()
        notifier.reloading()
        after = monotonic_usec()
    reloading, stamp = listener.receive()
    key, _, value = stamp.partition("=")
    assert ("RELOADING=1", "MONOTONIC_USEC") == (reloading, key)
    assert before <= int(value) <= after


def test_an_absent_peer_is_logged_once_and_never_raises(tmp_path: Path) -> None:
    """A socket nobody listens on: sends fail quietly, one warning in the log."""
    notifier = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    with closing(notifier), capture_logs() as logs:
        results = [notifier.watchdog() for _ in range(3)]
    assert [False, False, False] == results
    assert ["sd_notify_failed"] == [entry["event"] for entry in logs]


def test_an_unsupported_address_is_off() -> None:
    """An address that is neither a path nor @abstract (e.g. vsock) turns the notifier off."""
    with capture_logs() as logs:
        notifier = Notifier(env={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert (False, False) == (notifier.enabled, notifier.ready())
    assert ["notify_socket_unsupported"] == [entry["event"] for entry in logs]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"WATCHDOG_USEC": "2000000"}, 1.0, id="half of WATCHDOG_USEC"),
        pytest.param({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"}, 1.0, id="our pid"),
        pytest.param({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None, id="other pid"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, None, id="not a number"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """The watchdog is petted every half WATCHDOG_USEC, only when meant for this process."""
    if env.get("WATCHDOG_PID") == "self":
        env = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert expected == Notifier(env={"NOTIFY_SOCKET": "@x", **env}).watchdog_interval
