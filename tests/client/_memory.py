"""In-memory proxies for the client tests: TCP endpoints on a MemoryReactorClock
whose connections the test completes with a StringTransport."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.python.failure import Failure

__all__ = ["Recorder", "accept", "fail_connect", "result_of", "tcp"]


def tcp(reactor: MemoryReactorClock, port: int = 1080) -> TCP4ClientEndpoint:
    """The way to the proxy: a TCP endpoint to 10.0.0.1:``port``."""
    return TCP4ClientEndpoint(reactor, "10.0.0.1", port)


def accept(
    reactor: MemoryReactorClock, index: int = -1
) -> StringTransportWithDisconnection:
    """Complete the stored TCP connect: the proxy answered the SYN."""
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    assert proto is not None
    transport = StringTransportWithDisconnection(
        peerAddress=IPv4Address("TCP", host, port)
    )
    transport.protocol = proto
    proto.makeConnection(transport)
    return transport


def fail_connect(reactor: MemoryReactorClock, reason: Exception) -> None:
    """Fail the stored TCP connect with ``reason``."""
    _host, _port, factory, _timeout, _bind = reactor.tcpClients[-1]
    factory.clientConnectionFailed(reactor.connectors[-1], Failure(reason))


class Recorder(Protocol):
    """An application protocol that records what it sees."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.made = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = reason


def recorder_factory() -> Factory:
    """A factory of :class:`Recorder`."""
    return Factory.forProtocol(Recorder)


def result_of(d: Deferred[Any]) -> Any:
    """The Deferred's result now: a value, or the Failure (consumed)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]
