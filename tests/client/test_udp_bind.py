"""UDP ASSOCIATE and BIND client APIs in memory: RFC 1928 §4/§6/§7 bytes by hand."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorUDP
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from dantex.client import (
    ProxyClosedError,
    ProxyTimeoutError,
    Socks5RefusedError,
    bind,
    udp_associate,
)
from dantex.protocol.address import Address
from tests.client._memory import accept, recorder_factory, result_of, tcp


class FakeUdpPort:
    def __init__(self, protocol: Any, interface: str) -> None:
        self.protocol = protocol
        self.interface = interface
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface, 40000)

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((datagram, addr))

    def stopListening(self) -> None:
        self.listening = False


@implementer(IReactorUDP)
class UdpReactor(MemoryReactorClock):
    """A MemoryReactorClock with listenUDP (port 40000 every time)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.udp_ports: list[FakeUdpPort] = []

    def listenUDP(  # type: ignore[override]
        self,
        port: int,
        protocol: Any,
        interface: str = "",
        maxPacketSize: int = 8192,  # noqa: N803 (Twisted's name)
    ) -> FakeUdpPort:
        p = FakeUdpPort(protocol, interface)
        self.udp_ports.append(p)
        return p


# §4: VER=5 CMD=3 RSV ATYP=1 0.0.0.0 port 40000 (0x9c40): where we send from
ASSOCIATE = b"\x05\x03\x00\x01\x00\x00\x00\x00\x9c\x40"


def test_udp_associate_sends_and_receives_with_the_header() -> None:
    """The relay from the reply gets §7 datagrams; its answers are unwrapped."""
    reactor = UdpReactor()
    d = udp_associate(reactor, tcp(reactor))
    t = accept(reactor)
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    assert t.value() == ASSOCIATE
    # §6 reply: relay at 10.0.0.1:5353 (0x14e9)
    t.protocol.dataReceived(b"\x05\x00\x00\x01\x0a\x00\x00\x01\x14\xe9")
    assoc = result_of(d)
    assert assoc.relay == Address.from_host("10.0.0.1", 5353)
    assoc.sendto(b"ping", "192.0.2.1", 7)
    udp = reactor.udp_ports[0]
    assert udp.sent == [
        (b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x07ping", ("10.0.0.1", 5353))
    ]
    got = assoc.receive()
    udp.protocol.datagramReceived(
        b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x07pong", ("10.0.0.1", 5353)
    )
    assert result_of(got) == (b"pong", Address.from_host("192.0.2.1", 7))


def test_udp_drops_strangers_fragments_and_garbage() -> None:
    """Datagrams not from the relay, with FRAG != 0, or malformed are dropped."""
    reactor = UdpReactor()
    seen: list[tuple[bytes, Address]] = []
    d = udp_associate(reactor, tcp(reactor), receiver=lambda *a: seen.append(a))
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x00\x00\x01\x0a\x00\x00\x01\x14\xe9")
    assoc = result_of(d)
    udp = reactor.udp_ports[0]
    ok = b"\x00\x00\x00\x01\xc0\x00\x02\x01\x00\x07ok"
    udp.protocol.datagramReceived(ok, ("10.9.9.9", 5353))
    udp.protocol.datagramReceived(b"\x00\x00\x01" + ok[3:], ("10.0.0.1", 5353))
    udp.protocol.datagramReceived(b"\x00\x01", ("10.0.0.1", 5353))
    udp.protocol.datagramReceived(ok, ("10.0.0.1", 5353))
    assert seen == [(b"ok", Address.from_host("192.0.2.1", 7))]
    assert assoc.dropped == 3


def test_wildcard_relay_means_the_proxy_address() -> None:
    """BND 0.0.0.0 sends datagrams to the control connection's peer."""
    reactor = UdpReactor()
    d = udp_associate(reactor, tcp(reactor))
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x00\x00\x01\x00\x00\x00\x00\x14\xe9")
    assert result_of(d).relay == Address.from_host("10.0.0.1", 5353)


def test_association_ends_with_the_control_connection() -> None:
    """Closing the TCP control connection ends the association and the UDP port."""
    reactor = UdpReactor()
    d = udp_associate(reactor, tcp(reactor))
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x00\x00\x01\x0a\x00\x00\x01\x14\xe9")
    assoc = result_of(d)
    pending = assoc.receive()
    t.loseConnection()
    assert result_of(pending).check(ProxyClosedError)
    assert result_of(assoc.closed) is None
    assert not reactor.udp_ports[0].listening


def test_udp_refused_closes_the_port() -> None:
    """A refused ASSOCIATE (REP 7) fails and stops listening."""
    reactor = UdpReactor()
    d = udp_associate(reactor, tcp(reactor))
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
    f = result_of(d)
    assert f.check(Socks5RefusedError) and f.value.reply == 7
    assert not reactor.udp_ports[0].listening


def test_bind_yields_the_bound_address_then_the_connection() -> None:
    """BIND: the first reply gives where the peer connects, the second who came."""
    reactor = MemoryReactorClock()
    d = bind(tcp(reactor), "192.0.2.5", 0, recorder_factory())
    t = accept(reactor)
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    # §4: VER=5 CMD=2 RSV ATYP=1 192.0.2.5 port 0
    assert t.value() == b"\x05\x02\x00\x01\xc0\x00\x02\x05\x00\x00"
    t.protocol.dataReceived(b"\x05\x00\x00\x01\x0a\x00\x00\x01\x9c\x41")
    pending = result_of(d)
    assert pending.bound == Address.from_host("10.0.0.1", 40001)
    assert not pending.connected.called
    t.protocol.dataReceived(b"\x05\x00\x00\x01\xc0\x00\x02\x05\xd4\x31hello")
    tunnel = result_of(pending.connected)
    assert tunnel.bound == Address.from_host("192.0.2.5", 54321)
    assert bytes(tunnel.protocol.received) == b"hello"


def test_socks4_bind_two_replies_in_one_segment() -> None:
    """SOCKS 4 BIND (CD 2) with both replies arriving together."""
    reactor = MemoryReactorClock()
    d = bind(tcp(reactor), "192.0.2.5", 21, recorder_factory(), version=4)
    t = accept(reactor)
    assert t.value() == b"\x04\x02\x00\x15\xc0\x00\x02\x05\x00"
    t.protocol.dataReceived(
        b"\x00\x5a\x9c\x41\x0a\x00\x00\x01" + b"\x00\x5a\xd4\x31\xc0\x00\x02\x05"
    )
    pending = result_of(d)
    assert pending.bound == Address.from_host("10.0.0.1", 40001)
    assert result_of(pending.connected).bound == Address.from_host("192.0.2.5", 54321)


def test_bind_accept_timeout_and_cancel() -> None:
    """accept_timeout starts at the first reply; cancelling before it aborts."""
    reactor = MemoryReactorClock()
    d = bind(
        tcp(reactor),
        "0.0.0.0",
        0,
        recorder_factory(),
        reactor=reactor,
        negotiate_timeout=5,
        accept_timeout=60,
    )
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x00\x00\x01\x0a\x00\x00\x01\x9c\x41")
    pending = result_of(d)
    reactor.advance(30)
    assert not pending.connected.called
    reactor.advance(31)
    f = result_of(pending.connected)
    assert f.check(ProxyTimeoutError) and f.value.phase == "accept"
    assert t.disconnected

    d2 = bind(tcp(reactor), "0.0.0.0", 0, recorder_factory())
    t2 = accept(reactor)
    d2.cancel()
    assert result_of(d2).check(CancelledError)
    assert t2.disconnected


def test_bind_refused_before_the_first_reply() -> None:
    """A refusal of the BIND request fails the first Deferred."""
    reactor = MemoryReactorClock()
    d = bind(tcp(reactor), "0.0.0.0", 0, recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
    f = result_of(d)
    assert f.check(Socks5RefusedError) and f.value.reply == 2
