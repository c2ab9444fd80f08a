"""Socks4ClientEndpoint and HTTPConnectEndpoint in memory, and nesting them into
chains: request bytes written by hand from the SOCKS 4/4A texts and RFC 9110."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from dantex.client import (
    HTTPConnectEndpoint,
    HTTPProxyAuthenticationError,
    HTTPProxyRefusedError,
    ProxyConnectError,
    ProxyProtocolError,
    Socks4ClientEndpoint,
    Socks4RefusedError,
    Socks5ClientEndpoint,
    Socks5RefusedError,
)
from dantex.protocol.address import Address
from tests.client._memory import Recorder, accept, recorder_factory, result_of, tcp

# SOCKS 4: VN=0 CD=90 DSTPORT DSTIP (ignored by the client)
GRANTED = b"\x00\x5a\x00\x00\x00\x00\x00\x00"


def test_socks4_connect_to_an_ipv4_address() -> None:
    """``04 01 PORT IP USERID 00``, reply 90 opens the tunnel."""
    reactor = MemoryReactorClock()
    ep = Socks4ClientEndpoint(tcp(reactor), "10.1.2.3", 80, "bob")
    d = ep.connect_tunnel(recorder_factory())
    t = accept(reactor)
    assert t.value() == b"\x04\x01\x00\x50\x0a\x01\x02\x03bob\x00"
    t.protocol.dataReceived(b"\x00\x5a\x12\x34\x0a\x00\x00\x01hi")
    tunnel = result_of(d)
    assert tunnel.bound == Address.from_host("10.0.0.1", 0x1234)
    assert bytes(tunnel.protocol.received) == b"hi"


def test_socks4a_sends_the_name_after_the_userid() -> None:
    """SOCKS 4A: DSTIP 0.0.0.1, then the host name and a NUL after USERID."""
    reactor = MemoryReactorClock()
    Socks4ClientEndpoint(tcp(reactor), "example.com", 80).connect(recorder_factory())
    t = accept(reactor)
    assert t.value() == b"\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00"


def test_socks4_local_resolution_sends_plain_socks4() -> None:
    """resolve="local" turns a name into an IPv4 address (no 4A)."""
    reactor = MemoryReactorClock()  # its resolver answers 127.0.0.1
    Socks4ClientEndpoint(
        tcp(reactor), "example.com", 80, resolve="local", reactor=reactor
    ).connect(recorder_factory())
    t = accept(reactor)
    assert t.value() == b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00"


@pytest.mark.parametrize("cd", [91, 92, 93])
def test_socks4_refusals_carry_the_code(cd: int) -> None:
    """CD 91-93 are Socks4RefusedError with ``reply`` = CD."""
    reactor = MemoryReactorClock()
    d = Socks4ClientEndpoint(tcp(reactor), "10.1.2.3", 80).connect(recorder_factory())
    accept(reactor).protocol.dataReceived(bytes((0, cd)) + b"\x00" * 6)
    f = result_of(d)
    assert f.check(Socks4RefusedError) and f.value.reply == cd


def test_socks4_reply_version_must_be_zero() -> None:
    """A reply with VN 4 is malformed."""
    reactor = MemoryReactorClock()
    d = Socks4ClientEndpoint(tcp(reactor), "10.1.2.3", 80).connect(recorder_factory())
    accept(reactor).protocol.dataReceived(b"\x04\x5a" + b"\x00" * 6)
    assert result_of(d).check(ProxyProtocolError)


def test_socks4_cannot_carry_ipv6() -> None:
    """An IPv6 target is refused when the endpoint is built."""
    with pytest.raises(ValueError, match="IPv6"):
        Socks4ClientEndpoint(tcp(MemoryReactorClock()), "::1", 80)


def test_http_connect_request_and_tunnel() -> None:
    """CONNECT with an authority-form target and Host; bytes after the 200 stay."""
    reactor = MemoryReactorClock()
    ep = HTTPConnectEndpoint(tcp(reactor, 3128), "example.com", 443)
    d = ep.connect_tunnel(recorder_factory())
    t = accept(reactor)
    assert t.value() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    t.protocol.dataReceived(
        b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n\x16\x03\x01"
    )
    tunnel = result_of(d)
    assert tunnel.response.status == 200
    assert tunnel.bound is None
    assert bytes(tunnel.protocol.received) == b"\x16\x03\x01"


def test_http_basic_auth_ipv6_and_extra_headers() -> None:
    """IPv6 targets are bracketed; Basic credentials are base64("u:p")."""
    reactor = MemoryReactorClock()
    HTTPConnectEndpoint(
        tcp(reactor, 3128),
        "2001:db8::1",
        443,
        ("u", "p"),
        headers=[("User-Agent", "dantex-test")],
    ).connect(recorder_factory())
    t = accept(reactor)
    assert t.value() == (
        b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n"
        b"Host: [2001:db8::1]:443\r\n"
        b"Proxy-Authorization: Basic dTpw\r\n"
        b"User-Agent: dantex-test\r\n\r\n"
    )


def test_http_interim_response_is_skipped() -> None:
    """A 100 Continue before the 200 does not open the tunnel early."""
    reactor = MemoryReactorClock()
    d = HTTPConnectEndpoint(tcp(reactor), "example.com", 443).connect(
        recorder_factory()
    )
    t = accept(reactor)
    t.protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not d.called
    t.protocol.dataReceived(b"HTTP/1.0 200 OK\r\n\r\n")
    assert isinstance(result_of(d), Recorder)


@pytest.mark.parametrize("status", [401, 407])
def test_http_auth_required(status: int) -> None:
    """407 (and tinyproxy's 401) are HTTPProxyAuthenticationError with the headers."""
    reactor = MemoryReactorClock()
    d = HTTPConnectEndpoint(tcp(reactor), "example.com", 443).connect(
        recorder_factory()
    )
    t = accept(reactor)
    t.protocol.dataReceived(
        b"HTTP/1.1 %d Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 3\r\n\r\nno!' % status
    )
    f = result_of(d)
    assert f.check(HTTPProxyAuthenticationError, HTTPProxyRefusedError)
    assert f.value.status == f.value.reply == status
    assert ("Proxy-Authenticate", 'Basic realm="x"') in f.value.headers
    assert t.disconnected


def test_http_other_refusal() -> None:
    """A 503 is HTTPProxyRefusedError carrying status and reason."""
    reactor = MemoryReactorClock()
    d = HTTPConnectEndpoint(tcp(reactor), "example.com", 443).connect(
        recorder_factory()
    )
    accept(reactor).protocol.dataReceived(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    f = result_of(d)
    assert f.check(HTTPProxyRefusedError)
    assert (f.value.status, f.value.reason) == (503, "Service Unavailable")
    assert "HTTP 503 Service Unavailable" in str(f.value)


def test_http_garbage_is_a_protocol_error() -> None:
    """A non-HTTP answer is ProxyProtocolError."""
    reactor = MemoryReactorClock()
    d = HTTPConnectEndpoint(tcp(reactor), "example.com", 443).connect(
        recorder_factory()
    )
    accept(reactor).protocol.dataReceived(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert result_of(d).check(ProxyProtocolError)


def chain(reactor: MemoryReactorClock) -> Socks5ClientEndpoint:
    """10.0.0.1:1080 (SOCKS 4) -> h2:3128 (HTTP) -> h3:1080 (SOCKS 5) -> target."""
    hop1 = Socks4ClientEndpoint(tcp(reactor), "h2", 3128)
    hop2 = HTTPConnectEndpoint(hop1, "h3", 1080)
    return Socks5ClientEndpoint(hop2, "target.example", 22)


def test_three_hop_chain_negotiates_in_order_on_one_connection() -> None:
    """Each hop speaks only after the previous one granted, on the same transport."""
    reactor = MemoryReactorClock()
    d = chain(reactor).connect(recorder_factory())
    assert len(reactor.tcpClients) == 1
    t = accept(reactor)
    assert t.value() == b"\x04\x01\x0c\x38\x00\x00\x00\x01\x00h2\x00"
    t.clear()
    t.protocol.dataReceived(GRANTED)
    assert t.value() == b"CONNECT h3:1080 HTTP/1.1\r\nHost: h3:1080\r\n\r\n"
    t.clear()
    t.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n\x05\x00")  # hop 3 answers early
    assert t.value() == b"\x05\x01\x00" + b"\x05\x01\x00\x03\x0etarget.example\x00\x16"
    t.protocol.dataReceived(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00SSH-2.0")
    app = result_of(d)
    assert bytes(app.received) == b"SSH-2.0"
    t.loseConnection()
    assert app.lost is not None


def test_chain_errors_name_the_hop_that_failed() -> None:
    """A refusal by the middle hop keeps that hop's name and the target it was asked."""
    reactor = MemoryReactorClock()
    d = chain(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(GRANTED)
    t.protocol.dataReceived(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
    f = result_of(d)
    assert f.check(HTTPProxyRefusedError)
    assert f.value.proxy == "http h2:3128"
    assert f.value.target == Address.from_host("h3", 1080)


def test_chain_first_hop_unreachable() -> None:
    """The first hop's connect failure surfaces as that hop's ProxyConnectError."""
    from twisted.internet.error import ConnectionRefusedError

    from tests.client._memory import fail_connect

    reactor = MemoryReactorClock()
    d = chain(reactor).connect(recorder_factory())
    fail_connect(reactor, ConnectionRefusedError())
    f = result_of(d)
    assert f.check(ProxyConnectError) and f.value.proxy == "socks4 10.0.0.1:1080"


def test_chain_last_hop_refusal() -> None:
    """A refusal by the last hop names the last hop."""
    reactor = MemoryReactorClock()
    d = chain(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(GRANTED + b"HTTP/1.1 200 OK\r\n\r\n")
    t.protocol.dataReceived(b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    f = result_of(d)
    assert f.check(Socks5RefusedError) and f.value.proxy == "socks5 h3:1080"
    assert f.value.reply == 5


def test_cancel_in_the_middle_of_a_chain() -> None:
    """Cancelling while hop 2 negotiates aborts the one connection."""
    from twisted.internet.defer import CancelledError

    reactor = MemoryReactorClock()
    d = chain(reactor).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(GRANTED)
    d.cancel()
    assert result_of(d).check(CancelledError)
    assert t.disconnected
