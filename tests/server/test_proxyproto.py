"""PROXY protocol v1/v2 in front of a session: parsing, trust, hand-over.

Header bytes are written by hand from HAProxy's proxy-protocol.txt (§2.1 the
v1 line, §2.2 the v2 binary form: 12-byte signature, version/command,
family/protocol, length, addresses).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)

from dantex.config import parse
from dantex.protocol.address import Address
from dantex.server.context import Policy, Runtime
from dantex.server.factory import SocksFactory
from dantex.server.proxyproto import (
    HeaderError,
    ProxyHeaderGate,
    parse_header,
    unknown_version,
)
from dantex.server.session import SocksSession, State
from dantex.testing import FakeConnector, MemoryLog, StaticResolver

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
# v2 PROXY, TCP over IPv4, 12 address bytes: 198.51.100.7:40748 -> 127.0.0.1:1080
V2_TCP4 = (
    SIG + b"\x21\x11\x00\x0c" + b"\xc6\x33\x64\x07" + b"\x7f\x00\x00\x01"
    b"\x9f\x2c\x04\x38"
)
# v2 PROXY, TCP over IPv6, 36 bytes: 2001:db8::7 port 1234 -> ::1 port 1080
V2_TCP6 = (
    SIG
    + b"\x21\x21\x00\x24"
    + b"\x20\x01\x0d\xb8"
    + b"\x00" * 11
    + b"\x07"
    + b"\x00" * 15
    + b"\x01"
    + b"\x04\xd2\x04\x38"
)
# v2 LOCAL (HAProxy health checks): command 0, family UNSPEC, no address
V2_LOCAL = SIG + b"\x20\x00\x00\x00"
# v2 PROXY with a 4-byte TLV after the addresses (type 0x04 NOOP, length 1)
V2_TLV = (
    SIG + b"\x21\x11\x00\x10" + b"\xc6\x33\x64\x07" + b"\x7f\x00\x00\x01"
    b"\x9f\x2c\x04\x38" + b"\x04\x00\x01\x00"
)
V1_TCP4 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40748 1080\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 ::1 1234 1080\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
BOTH = frozenset({"v1", "v2"})

CLIENT4 = (
    Address.from_host("198.51.100.7", 40748),
    Address.from_host("127.0.0.1", 1080),
)
CLIENT6 = (Address.from_host("2001:db8::7", 1234), Address.from_host("::1", 1080))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (V2_TCP4, CLIENT4),
        (V2_TCP6, CLIENT6),
        (V2_TLV, CLIENT4),
        (V2_LOCAL, None),
        (V1_TCP4, CLIENT4),
        (V1_TCP6, CLIENT6),
        (V1_UNKNOWN, None),
        (b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", None),
    ],
)
@pytest.mark.parametrize("how", ["whole", "bytewise", "trailing"])
def test_headers_parse(header: bytes, expected: object, how: str) -> None:
    """Each header gives its addresses (None: the real peer) and the rest."""
    trailing = b"\x05\x01\x00" if how == "trailing" else b""
    data = header + trailing
    if how == "bytewise":
        for n in range(len(data)):
            assert parse_header(data[:n], BOTH) is None
    assert parse_header(data, BOTH) == (expected, trailing)


@pytest.mark.parametrize(
    ("data", "versions", "message"),
    [
        (b"\x05\x01\x00", BOTH, "no PROXY protocol header"),
        (b"GET / HTTP/1.1\r\n", BOTH, "no PROXY protocol header"),
        (V1_TCP4, frozenset({"v2"}), "only v2 is accepted"),
        (V2_TCP4, frozenset({"v1"}), "only v1 is accepted"),
        (b"PROXY TCP4 1.2.3.4\r\n", BOTH, "malformed PROXY protocol v1"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", BOTH, "malformed PROXY protocol v1"),
        (b"PROXY TCP4 1.2.3.x 1.2.3.4 1 2\r\n", BOTH, "bad address"),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", BOTH, "family mismatch"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", BOTH, "bad port"),
        (b"PROXY TCP4 " + b"1" * 120, BOTH, "longer than 107 bytes"),
        # version nibble 3 is not v2
        (SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12, BOTH, "malformed PROXY protocol v2"),
        # TCP4 with only 4 address bytes
        (SIG + b"\x21\x11\x00\x04" + b"\x00" * 4, BOTH, "malformed PROXY protocol v2"),
    ],
)
def test_bad_headers_are_refused(
    data: bytes, versions: frozenset[str], message: str
) -> None:
    """Anything but an acceptable header raises HeaderError saying why."""
    with pytest.raises(HeaderError, match=message):
        parse_header(data, versions)


def test_unknown_version_names_a_proxy_header() -> None:
    """An untrusted client's PROXY header is logged as such, not as version 80."""
    assert "not in internal.proxyprotocol.from" in unknown_version(V1_TCP4)
    assert "not in internal.proxyprotocol.from" in unknown_version(V2_TCP4[:3])
    assert unknown_version(b"\x07") == "unknown SOCKS version 7 in client request"


CONF = """
internal: 127.0.0.1 port = 1080
internal.proxyprotocol: {versions}
internal.proxyprotocol.from: 10.0.0.1/32 fd00::/64
socksmethod: none
client pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}
socks block {{ from: 198.51.100.0/24 to: 0/0 log: connect error }}
socks pass {{ from: 0/0 to: 0/0 log: connect disconnect error }}
"""


class Wired:
    """A factory, a transport and the protocol it built, in memory."""

    def __init__(self, peer: tuple[str, int], versions: str = "v1 v2") -> None:
        self.clock = MemoryReactorClock()
        self.log = MemoryLog()
        runtime = Runtime(
            self.clock,  # type: ignore[arg-type]
            relay_mode="copy",
            resolver=StaticResolver(self.clock, {}, {}),
            connector=FakeConnector(),  # type: ignore[arg-type]
        )
        config = parse(CONF.format(versions=versions), "test.conf")
        policy = Policy(config, self.log, clock=self.clock)
        factory = SocksFactory(policy, runtime)
        kind = IPv6Address if ":" in peer[0] else IPv4Address
        addr = kind("TCP", *peer)
        self.protocol: Any = factory.buildProtocol(addr)
        local = (
            IPv6Address("TCP", "::1", 1080)
            if ":" in peer[0]
            else IPv4Address("TCP", "127.0.0.1", 1080)
        )
        self.transport = StringTransportWithDisconnection(
            hostAddress=local, peerAddress=addr
        )
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        self.transport.clear()
        self.transport.protocol.dataReceived(data)
        return bytes(self.transport.value())

    @property
    def session(self) -> SocksSession:
        protocol = self.transport.protocol
        assert isinstance(protocol, SocksSession)
        return protocol


def test_trusted_v2_header_makes_the_client_address() -> None:
    """After a v2 header the session's client is the header's source; the
    SOCKS bytes in the same packet are negotiated."""
    w = Wired(("10.0.0.1", 5555))
    assert isinstance(w.protocol, ProxyHeaderGate)
    assert w.send(V2_TCP4 + b"\x05\x01\x00") == b"\x05\x00"
    session = w.session
    assert session.client == CLIENT4[0]
    assert session.server == Address.from_host("127.0.0.1", 1080)
    assert any("198.51.100.7.40748 127.0.0.1.1080" in m for m in w.log.messages())


def test_rules_see_the_proxied_client() -> None:
    """A socks-rule blocking the header's source network blocks the request."""
    w = Wired(("10.0.0.1", 5555))
    w.send(V1_TCP4)
    assert w.send(b"\x05\x01\x00") == b"\x05\x00"
    reply = w.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50")
    assert reply[:2] == b"\x05\x02"  # connection not allowed by ruleset
    assert any(
        "block(1): tcp/connect" in m and "198.51.100.7.40748" in m
        for m in w.log.messages()
    )


def test_local_is_served_as_the_real_peer() -> None:
    """v2 LOCAL (HAProxy's check) gives a session whose client is the peer."""
    w = Wired(("10.0.0.1", 5555))
    assert w.send(V2_LOCAL) == b""
    assert w.session.client == Address.from_host("10.0.0.1", 5555)
    assert w.session.state is State.NEGOTIATING


def test_ipv6_peer_in_trusted_network() -> None:
    """An IPv6 peer inside a trusted /64 may send a v1 TCP6 header."""
    w = Wired(("fd00::5", 5555))
    assert isinstance(w.protocol, ProxyHeaderGate)
    w.send(V1_TCP6)
    assert w.session.client == CLIENT6[0]


def test_trusted_peer_without_header_is_refused() -> None:
    """SOCKS bytes straight from a trusted peer: refused, logged, closed."""
    w = Wired(("10.0.0.1", 5555))
    assert w.send(b"\x05\x01\x00") == b""
    assert not w.transport.connected
    assert any(
        "10.0.0.1.5555 127.0.0.1.1080: no PROXY protocol header from a trusted "
        "source; connection refused" in m
        for m in w.log.messages()
    )


def test_version_not_listed_is_refused() -> None:
    """With only v2 accepted, a v1 line is refused."""
    w = Wired(("10.0.0.1", 5555), versions="v2")
    w.send(V1_TCP4)
    assert not w.transport.connected
    assert any("only v2 is accepted" in m for m in w.log.messages())


def test_trusted_peer_silent_times_out() -> None:
    """No header within timeout.negotiate: refused with a log line."""
    w = Wired(("10.0.0.1", 5555))
    w.clock.advance(30)
    assert not w.transport.connected
    assert any("no PROXY protocol header within 30s" in m for m in w.log.messages())
    assert not w.clock.getDelayedCalls()


def test_trusted_peer_closing_early_is_logged() -> None:
    """A trusted peer closing before its header leaves a log line, no timer."""
    w = Wired(("10.0.0.1", 5555))
    w.send(V2_TCP4[:5])
    w.transport.loseConnection()
    assert any("closed before sending a PROXY" in m for m in w.log.messages())
    assert not w.clock.getDelayedCalls()


def test_untrusted_peer_is_a_direct_client() -> None:
    """A peer outside .from gets a session at once, served as itself."""
    w = Wired(("192.0.2.9", 4444))
    assert isinstance(w.protocol, SocksSession)
    assert w.send(b"\x05\x01\x00") == b"\x05\x00"
    assert w.session.client == Address.from_host("192.0.2.9", 4444)


@pytest.mark.parametrize("header", [V1_TCP4, V2_TCP4])
def test_untrusted_peer_cannot_claim_an_address(header: bytes) -> None:
    """A PROXY header from a peer outside .from is refused, with a log line."""
    w = Wired(("192.0.2.9", 4444))
    assert w.send(header) == b""
    assert not w.transport.connected
    assert any(
        "192.0.2.9.4444" in m and "not in internal.proxyprotocol.from" in m
        for m in w.log.messages()
    )


def test_reload_switches_the_gate() -> None:
    """A new policy without internal.proxyprotocol: trusted peers get a
    session at once (the factory asks the policy in force per connection)."""
    clock = MemoryReactorClock()
    runtime = Runtime(
        clock,  # type: ignore[arg-type]
        relay_mode="copy",
        resolver=StaticResolver(clock, {}, {}),
        connector=FakeConnector(),  # type: ignore[arg-type]
    )
    on = Policy(parse(CONF.format(versions="v2"), "t.conf"), MemoryLog(), clock=clock)
    plain = CONF.replace("internal.proxyprotocol: {versions}\n", "").replace(
        "internal.proxyprotocol.from: 10.0.0.1/32 fd00::/64\n", ""
    )
    off = Policy(parse(plain.format(), "t.conf"), MemoryLog(), clock=clock)
    factory = SocksFactory(on, runtime)
    peer = IPv4Address("TCP", "10.0.0.1", 5555)
    assert isinstance(factory.buildProtocol(peer), ProxyHeaderGate)
    factory.policy = off
    assert isinstance(factory.buildProtocol(peer), SocksSession)


def test_hostid_refusal_points_at_the_proxy_protocol() -> None:
    """hostid rules stay refused, with a hint naming the replacement."""
    from dantex.config import ConfigErrors

    text = (
        "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
        "hostid pass { from: 10.0.0.0/8 to: 0/0 }\n"
    )
    with pytest.raises(ConfigErrors) as info:
        parse(text, "t.conf")
    (error,) = info.value.errors
    assert "hostid is not supported" in str(error)
    assert "internal.proxyprotocol" in str(error)
