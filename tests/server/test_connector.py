"""TcpConnector failures arrive as failed Deferreds, never as exceptions."""

from __future__ import annotations

import errno
import socket

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from dantex.protocol.socks5 import Reply
from dantex.server import connector
from dantex.server.errors import describe_failure
from dantex.server.lean import Conn


def test_out_of_descriptors_fails_the_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """socket() failing with EMFILE fails the Deferred: general failure, a reason."""

    def no_fds(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socket", no_fds)
    d = connector.TcpConnector(MemoryReactorClock()).connect(
        socket.AF_INET, ("127.0.0.1", 9)
    )
    failures: list[Failure] = []
    d.addErrback(failures.append)
    [failure] = failures
    exc = failure.value
    assert exc is not None
    why = describe_failure(exc)
    assert why.reply == Reply.GENERAL_FAILURE
    assert why.reason == "Too many open files"


def test_a_connect_the_kernel_completes_at_once_fires_without_an_event() -> None:
    """To a local listener the handshake is done before connect() returns:
    the Deferred has fired already, nothing waits for writability, no timer."""
    listener = socket.create_server(("127.0.0.1", 0))
    reactor = MemoryReactorClock()
    try:
        d = connector.TcpConnector(reactor).connect(
            socket.AF_INET, listener.getsockname(), timeout=30.0
        )
        conns: list[Conn] = []
        d.addCallback(conns.append)
        [conn] = conns
        assert conn.sock.getpeername() == listener.getsockname()
        assert reactor.getWriters() == []
        assert reactor.getDelayedCalls() == []
        conn.close()
    finally:
        listener.close()


def test_a_connect_still_in_progress_waits_for_writability() -> None:
    """A listener whose accept queue is full drops the SYN: the connect is in
    progress, so the socket is watched for writability under the timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    queued = socket.create_connection(listener.getsockname())  # fills the queue
    reactor = MemoryReactorClock()
    try:
        d = connector.TcpConnector(reactor).connect(
            socket.AF_INET, listener.getsockname(), timeout=30.0
        )
        assert not d.called
        assert len(reactor.getWriters()) == 1
        assert [c.getTime() for c in reactor.getDelayedCalls()] == [30.0]
        d.addErrback(lambda f: None)
        d.cancel()
        assert reactor.getWriters() == []
    finally:
        queued.close()
        listener.close()


def test_a_preferred_source_port_is_used_when_free_else_any() -> None:
    """compatibility: sameport -- the port asked for when it is free; when it
    is taken (here by a listener on the same address) the kernel's choice."""
    listener = socket.create_server(("127.0.0.1", 0))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    taken = listener.getsockname()[1]
    seen = []
    try:
        for wanted in (free, taken):
            result = connector.TcpConnector(MemoryReactorClock()).try_connect(
                socket.AF_INET, listener.getsockname(), prefer_port=wanted
            )
            assert isinstance(result, Conn)
            seen.append(result.sock.getsockname()[1])
            result.close()
            listener.accept()[0].close()
    finally:
        listener.close()
    assert seen[0] == free
    assert seen[1] not in (taken, 0)
