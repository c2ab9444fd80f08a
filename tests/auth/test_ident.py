"""The ident checker on a memory reactor: where it connects, what it sends,
how each answer and the timeout end (RFC 1413)."""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dantex.auth import ConnectionCredentials, IdentChecker

CREDS = ConnectionCredentials("192.0.2.10", 40000, "192.0.2.1", 1080)


def start(reactor: MemoryReactorClock) -> tuple[list[object], StringTransport, Any]:
    checker = IdentChecker(reactor, port=1113, timeout=5)
    out: list[object] = []
    checker.requestAvatarId(CREDS).addBoth(out.append)
    host, port, factory, _timeout, bind = reactor.tcpClients[0]
    assert (host, port) == ("192.0.2.10", 1113)
    # from the address the client connected to
    assert bind == ("192.0.2.1", 0)  # type: ignore[comparison-overlap]
    proto: Any = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport()
    proto.makeConnection(transport)
    return out, transport, proto


def test_query_names_both_ports_and_userid_is_the_avatar() -> None:
    """Query '<client port>, <our port>'; a USERID reply gives the user."""
    reactor = MemoryReactorClock()
    out, transport, proto = start(reactor)
    assert transport.value() == b"40000, 1080\r\n"
    proto.dataReceived(b"40000 , 1080 : USERID : UNIX : alice\r\n")
    assert out == [b"alice"]


def test_error_reply_is_a_refusal_naming_it() -> None:
    """ERROR : NO-USER refuses with the error name."""
    reactor = MemoryReactorClock()
    out, _, proto = start(reactor)
    proto.dataReceived(b"40000,1080:ERROR:NO-USER\r\n")
    (failure,) = out
    assert failure.check(UnauthorizedLogin)  # type: ignore[attr-defined]
    assert "NO-USER" in failure.getErrorMessage()  # type: ignore[attr-defined]


def test_reply_for_another_port_pair_is_refused() -> None:
    """A reply echoing other ports is not believed."""
    reactor = MemoryReactorClock()
    out, _, proto = start(reactor)
    proto.dataReceived(b"1,2:USERID:UNIX:root\r\n")
    assert out[0].check(UnauthorizedLogin)  # type: ignore[attr-defined]


def test_silence_times_out() -> None:
    """No answer within the timeout refuses (no hang)."""
    reactor = MemoryReactorClock()
    out, _, _ = start(reactor)
    reactor.advance(5)
    (failure,) = out
    assert "no answer within 5s" in failure.getErrorMessage()  # type: ignore[attr-defined]


def test_close_without_reply_is_a_refusal() -> None:
    """identd closing without a line means UNKNOWN-ERROR (RFC 1413 §5)."""
    reactor = MemoryReactorClock()
    out, _, proto = start(reactor)
    proto.connectionLost(None)
    assert out[0].check(UnauthorizedLogin)  # type: ignore[attr-defined]
