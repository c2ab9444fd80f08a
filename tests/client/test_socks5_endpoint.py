"""Socks5ClientEndpoint in memory: RFC 1928/1929 bytes written by hand, every
failure typed, timeouts on a Clock, cancellation at each stage."""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from dantex.client import (
    NoAcceptableMethodError,
    ProxyAuthenticationError,
    ProxyClosedError,
    ProxyConnectError,
    ProxyProtocolError,
    ProxyTimeoutError,
    Socks5ClientEndpoint,
    Socks5RefusedError,
    Tunnel,
    UserPass,
)
from dantex.protocol.address import Address
from tests.client._memory import (
    Recorder,
    accept,
    fail_connect,
    recorder_factory,
    result_of,
    tcp,
)

# RFC 1928 §3: VER=5 NMETHODS=1 METHOD=00 (no authentication)
GREETING_NONE = b"\x05\x01\x00"
# VER=5 NMETHODS=2 METHODS=00 02 (none, username/password)
GREETING_BOTH = b"\x05\x02\x00\x02"
# §4: VER=5 CMD=1 RSV ATYP=3 LEN=11 "example.com" PORT=443
REQUEST_NAME = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
# §6: VER=5 REP=0 RSV ATYP=1 BND=10.0.0.9:8080
REPLY_OK = b"\x05\x00\x00\x01\x0a\x00\x00\x09\x1f\x90"


def endpoint(clock: MemoryReactorClock, **kw: object) -> Socks5ClientEndpoint:
    return Socks5ClientEndpoint(tcp(clock), "example.com", 443, **kw)  # type: ignore[arg-type]


def test_connect_with_a_host_name_sends_it_to_the_proxy() -> None:
    """No auth: greeting, method 00, a domain request, then the app gets the tunnel."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect_tunnel(recorder_factory())
    assert reactor.tcpClients[0][:2] == ("10.0.0.1", 1080)
    t = accept(reactor)
    assert t.value() == GREETING_NONE
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    assert t.value() == REQUEST_NAME
    t.protocol.dataReceived(REPLY_OK + b"early bytes")
    tunnel = result_of(d)
    assert isinstance(tunnel, Tunnel)
    assert tunnel.bound == Address.from_host("10.0.0.9", 8080)
    assert tunnel.leftover == b"early bytes"
    app = tunnel.protocol
    assert isinstance(app, Recorder) and app.made
    assert app.transport is tunnel.transport
    assert bytes(app.received) == b"early bytes"
    t.protocol.dataReceived(b"more")
    assert bytes(app.received) == b"early bytesmore"


def test_replies_fed_one_byte_at_a_time() -> None:
    """A proxy that answers one byte per segment is understood the same."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    for b in b"\x05\x00":
        t.protocol.dataReceived(bytes((b,)))
    for b in REPLY_OK:
        assert not d.called
        t.protocol.dataReceived(bytes((b,)))
    assert isinstance(result_of(d), Recorder)


@pytest.mark.parametrize(
    ("host", "request_bytes"),
    [
        ("192.0.2.7", b"\x05\x01\x00\x01\xc0\x00\x02\x07\x01\xbb"),
        (
            "[2001:db8::1]",
            b"\x05\x01\x00\x04"
            + bytes.fromhex("20010db8" + "00" * 11 + "01")
            + b"\x01\xbb",
        ),
    ],
)
def test_ip_targets_use_their_address_types(host: str, request_bytes: bytes) -> None:
    """IPv4 goes as ATYP 1, IPv6 (brackets accepted) as ATYP 4 (RFC 1928 §5)."""
    reactor = MemoryReactorClock()
    Socks5ClientEndpoint(tcp(reactor), host, 443).connect(recorder_factory())
    t = accept(reactor)
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    assert t.value() == request_bytes


def test_username_password_subnegotiation() -> None:
    """RFC 1929: offered with 00, selected 02, then ``01 ULEN UNAME PLEN PASSWD``."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, credentials=UserPass("alice", "s3cret")).connect(
        recorder_factory()
    )
    t = accept(reactor)
    assert t.value() == GREETING_BOTH
    t.clear()
    t.protocol.dataReceived(b"\x05\x02")
    assert t.value() == b"\x01\x05alice\x06s3cret"
    t.clear()
    t.protocol.dataReceived(b"\x01\x00")
    assert t.value() == REQUEST_NAME
    t.protocol.dataReceived(REPLY_OK)
    assert isinstance(result_of(d), Recorder)


def test_rejected_password_is_an_authentication_error() -> None:
    """RFC 1929 status 01 fails the connect and closes; the password is not shown."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, credentials=("alice", "s3cret")).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x02\x01\x01")
    f = result_of(d)
    assert f.check(ProxyAuthenticationError)
    assert "s3cret" not in str(f.value) and "s3cret" not in repr(
        endpoint(reactor, credentials=("alice", "s3cret"))
    )
    assert t.disconnected


def test_no_acceptable_method() -> None:
    """Method FF (RFC 1928 §3) is NoAcceptableMethodError, an authentication error."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\xff")
    f = result_of(d)
    assert f.check(NoAcceptableMethodError, ProxyAuthenticationError)
    assert f.value.proxy == "socks5 10.0.0.1:1080"


def test_a_method_we_did_not_offer_is_a_protocol_error() -> None:
    """Selecting 02 when we offered only 00 is malformed."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    accept(reactor).protocol.dataReceived(b"\x05\x02")
    assert result_of(d).check(ProxyProtocolError)


@pytest.mark.parametrize("rep", [1, 2, 3, 4, 5, 6, 7, 8, 0x42])
def test_refusals_carry_the_reply_code(rep: int) -> None:
    """Every REP other than 0 is Socks5RefusedError with that code and the target."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00")
    t.protocol.dataReceived(bytes((5, rep, 0, 1, 0, 0, 0, 0, 0, 0)))
    f = result_of(d)
    assert f.check(Socks5RefusedError)
    assert f.value.reply == rep
    assert f.value.target == Address.from_host("example.com", 443)
    assert t.disconnected


def test_reply_with_wrong_version_is_malformed() -> None:
    """A reply whose VER is not 5 fails with ProxyProtocolError."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00")
    t.protocol.dataReceived(b"\x04\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    assert result_of(d).check(ProxyProtocolError)


def test_proxy_closing_before_the_reply() -> None:
    """EOF during the negotiation is ProxyClosedError."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00")
    t.loseConnection()
    assert result_of(d).check(ProxyClosedError)


def test_unreachable_proxy_is_a_connect_error_with_the_reason() -> None:
    """A refused TCP connect to the proxy is ProxyConnectError(reason=...)."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    fail_connect(reactor, ConnectionRefusedError())
    f = result_of(d)
    assert f.check(ProxyConnectError)
    assert isinstance(f.value.reason, ConnectionRefusedError)


def test_negotiate_timeout_aborts() -> None:
    """A proxy that never answers trips negotiate_timeout; the connection is aborted."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, reactor=reactor, negotiate_timeout=5).connect(
        recorder_factory()
    )
    t = accept(reactor)
    reactor.advance(4.9)
    assert not d.called
    reactor.advance(0.2)
    f = result_of(d)
    assert f.check(ProxyTimeoutError) and f.value.phase == "negotiate"
    assert t.disconnected
    assert not reactor.getDelayedCalls()


def test_connect_timeout_stops_connecting() -> None:
    """connect_timeout cancels the pending TCP connect to the proxy."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, reactor=reactor, connect_timeout=3).connect(
        recorder_factory()
    )
    reactor.advance(3)
    f = result_of(d)
    assert f.check(ProxyTimeoutError) and f.value.phase == "connect"
    assert reactor.connectors[-1].stoppedConnecting


def test_connect_timeout_is_cancelled_once_connected() -> None:
    """After the TCP connect only the negotiate timer runs."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, reactor=reactor, connect_timeout=3).connect(
        recorder_factory()
    )
    t = accept(reactor)
    reactor.advance(10)
    assert not d.called
    t.protocol.dataReceived(b"\x05\x00" + REPLY_OK)
    assert isinstance(result_of(d), Recorder)


def test_cancel_while_connecting() -> None:
    """Cancelling before the proxy answered the SYN stops the connect."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor, reactor=reactor, connect_timeout=3).connect(
        recorder_factory()
    )
    d.cancel()
    assert result_of(d).check(CancelledError)
    assert reactor.connectors[-1].stoppedConnecting
    assert not reactor.getDelayedCalls()


def test_cancel_while_negotiating() -> None:
    """Cancelling mid-handshake aborts the connection; no app protocol is built."""
    reactor = MemoryReactorClock()
    factory = recorder_factory()
    d = endpoint(reactor).connect(factory)
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00")
    d.cancel()
    assert result_of(d).check(CancelledError)
    assert t.disconnected
    t.protocol.dataReceived(REPLY_OK)  # late reply: ignored


def test_app_sees_connection_lost() -> None:
    """After the tunnel is up, the app gets connectionLost."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00" + REPLY_OK)
    app = result_of(d)
    t.loseConnection()
    assert app.lost is not None


@implementer(IHalfCloseableProtocol)
class HalfCloser(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.read_closed = False

    def readConnectionLost(self) -> None:
        self.read_closed = True

    def writeConnectionLost(self) -> None:
        pass


def test_half_close_reaches_a_half_closeable_app() -> None:
    """A read EOF after the tunnel is up is readConnectionLost for such apps."""
    from twisted.internet.protocol import Factory

    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(Factory.forProtocol(HalfCloser))
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00" + REPLY_OK)
    app = result_of(d)
    IHalfCloseableProtocol(t.protocol).readConnectionLost()
    assert app.read_closed and app.lost is None and t.connected


def test_half_close_closes_for_other_apps() -> None:
    """Apps that are not half-closeable see the connection closed at EOF."""
    reactor = MemoryReactorClock()
    d = endpoint(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00" + REPLY_OK)
    app = result_of(d)
    IHalfCloseableProtocol(t.protocol).readConnectionLost()
    assert app.lost is not None


def test_bad_arguments_fail_at_construction() -> None:
    """Over-long credentials, bad ports and timeouts without a clock are ValueErrors."""
    reactor = MemoryReactorClock()
    with pytest.raises(ValueError):
        endpoint(reactor, credentials=("u" * 256, "p"))
    with pytest.raises(ValueError):
        Socks5ClientEndpoint(tcp(reactor), "example.com", 70000)
    with pytest.raises(ValueError):
        endpoint(reactor, negotiate_timeout=5)
    with pytest.raises(ValueError):
        endpoint(reactor, resolve="sideways")
    with pytest.raises(ValueError):
        endpoint(reactor, resolve="local")  # no reactor to resolve with


def test_local_resolution_sends_the_address() -> None:
    """resolve="local" resolves through the reactor and sends ATYP 1."""
    reactor = MemoryReactorClock()  # its resolver answers 127.0.0.1
    endpoint(reactor, resolve="local", reactor=reactor).connect(recorder_factory())
    t = accept(reactor)
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    assert t.value() == b"\x05\x01\x00\x01\x7f\x00\x00\x01\x01\xbb"
