"""Helpers for the client's integration tests on the real reactor."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

__all__ = ["TIMEOUT", "Collect", "echo_through", "live", "reactor"]

P = ParamSpec("P")

reactor: Any = _reactor
#: Bound on every wait in these tests, seconds.
TIMEOUT = 15.0


def live(
    test: Callable[P, Coroutine[Any, Any, None]],
) -> Callable[P, Deferred[None]]:
    """``pytest_twisted.ensureDeferred`` with types: the test runs on the real
    reactor."""
    wrapped: Callable[P, Deferred[None]] = pytest_twisted.ensureDeferred(test)
    return wrapped


class Collect(Protocol):
    """Sends ``payload`` on connect; ``done`` fires with what came back once
    ``expect`` bytes arrived or the connection closed."""

    def __init__(self, payload: bytes, expect: int) -> None:
        self.payload = payload
        self.expect = expect
        self.buf = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        if self.payload:
            assert self.transport is not None
            self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.expect and not self.done.called:
            self.done.callback(bytes(self.buf))
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.buf))


async def echo_through(endpoint: IStreamClientEndpoint, payload: bytes) -> bytes:
    """Connect, send ``payload`` to an echo server, return what it echoed."""
    proto = Collect(payload, len(payload))
    factory = Factory.forProtocol(lambda: proto)
    await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    return await proto.done.addTimeout(TIMEOUT, reactor)
