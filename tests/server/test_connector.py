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
