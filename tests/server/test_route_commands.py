"""BIND and UDP ASSOCIATE through routes, in memory (bytes by hand from RFC 1928).

As in test_route_connect: the parent is the far end of a loopback TCP pair;
for UDP the parent's relay is a real UDP socket of the test, and the
association's sockets are read by calling their ``doRead``.
"""

from __future__ import annotations

import socket

from dantex.server._routeudp import ParentUdpAssociation
from dantex.server._udpsock import UdpEndpoint
from dantex.server.lean import Conn
from dantex.testing import MemorySession, memory_session
from tests.server.test_route_connect import GREETING, Parent

HEAD = """
internal: 127.0.0.1 port = 1080
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 log: connect disconnect error }
socks block { from: 0/0 to: 192.0.2.0/24
  command: bind
  log: connect error }
socks pass { from: 0/0 to: 0/0
  command: bind connect udpassociate
  log: connect disconnect error iooperation }
socks pass { from: 0/0 to: 0/0
  command: bindreply udpreply
  log: connect disconnect error iooperation }
"""


def route(port: int, commands: str) -> str:
    return (
        f"route {{ from: 0/0 to: 0/0 via: 127.0.0.1 port = {port}\n"
        f" proxyprotocol: socks_v5\n command: {commands}\n}}\n"
    )


# RFC 1928 §4: VER=5 CMD=2 (BIND) RSV ATYP=1 203.0.113.5 port 0
BIND = b"\x05\x02\x00\x01\xcb\x00\x71\x05\x00\x00"
# RFC 1928 §6 replies: 198.51.100.7:4242 (the parent listens), then the peer
# 203.0.113.5:5555
FIRST = b"\x05\x00\x00\x01\xc6\x33\x64\x07\x10\x92"
SECOND = b"\x05\x00\x00\x01\xcb\x00\x71\x05\x15\xb3"


def bind_session(routes: str) -> MemorySession:
    m = memory_session(HEAD + routes)
    assert m.send(GREETING) == b"\x05\x00"
    return m


def test_bind_through_a_parent_gives_both_of_its_replies() -> None:
    """The parent's first reply (where it listens) and second (the peer) reach
    the client; then the connection to the parent is relayed."""
    m = bind_session(route(1081, "bind"))
    m.send(BIND)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(BIND)
    m.transport.clear()
    parent.send(FIRST)
    assert m.transport.value() == FIRST
    assert any("tcp/bind [" in line for line in m.log.messages())
    assert any(
        "tcp/bind -:" in line and "serverchain" in line for line in m.log.messages()
    )
    parent.send(SECOND + b"hello")
    (relay,) = m.relays
    assert relay.reply == SECOND + b"hello"
    assert isinstance(relay.target, Conn) and relay.target.sock is parent.ours
    assert any("tcp/bindreply [" in line for line in m.log.messages())


def test_bind_fails_over_before_the_first_reply() -> None:
    """The first parent refuses the BIND: the second one is asked."""
    m = bind_session(route(1081, "bind") + route(1082, "bind"))
    m.send(BIND)
    first = Parent(m, 0)
    first.expect(b"\x05\x01\x00")
    first.send(b"\x05\x00")
    first.expect(BIND)
    first.send(b"\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00")
    assert m.connector.calls[1].sockaddr == ("127.0.0.1", 1082)


def test_bind_address_of_the_parent_is_checked_by_the_socks_rules() -> None:
    """A socks-rule blocking the parent's bound address: 0x02, parent dropped."""
    m = bind_session(route(1081, "bind"))
    m.send(BIND)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(BIND)
    m.transport.clear()
    # the parent listens on 192.0.2.9:4242, which socks-rule #1 blocks
    parent.send(b"\x05\x00\x00\x01\xc0\x00\x02\x09\x10\x92")
    assert m.transport.value()[:2] == b"\x05\x02"
    assert parent.closed()


def test_failure_after_the_first_reply_is_a_second_reply() -> None:
    """The parent gives up waiting for the peer: the client's second reply
    carries the failure; no other route is tried."""
    m = bind_session(route(1081, "bind") + route(1082, "bind"))
    m.send(BIND)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(BIND)
    parent.send(FIRST)
    m.transport.clear()
    parent.send(b"\x05\x06\x00\x01\x00\x00\x00\x00\x00\x00")
    assert m.transport.value()[:2] == b"\x05\x06"
    assert len(m.connector.calls) == 1
    assert not m.transport.connected


def test_bind_without_a_bind_route_is_served_here() -> None:
    """Routes for CONNECT only: BIND listens locally, no parent is asked."""
    m = bind_session(route(1081, "connect"))
    m.send(b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x00")
    assert m.connector.calls == []
    assert m.transport.value()[:2] == b"\x05\x00"


# RFC 1928 §4: UDP ASSOCIATE, DST 0.0.0.0:0
ASSOCIATE = b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"


def test_udp_through_a_parent_wraps_and_unwraps_datagrams() -> None:
    """The parent is asked for UDP ASSOCIATE from our outside socket; our
    client's datagram reaches the parent's relay with a §7 header; the
    relay's answer reaches the client; the parent's control connection
    closing ends the association."""
    m = bind_session(route(1081, "udpassociate"))
    m.send(ASSOCIATE)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    request = parent.sock.recv(64)
    # VER=5 CMD=3 RSV ATYP=1 <our outside address, a concrete one>
    assert request[:4] == b"\x05\x03\x00\x01" and request[4:8] == b"\x7f\x00\x00\x01"
    outside_port = int.from_bytes(request[8:10], "big")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as relay,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        relay.bind(("127.0.0.1", 0))
        relay.settimeout(5)
        client.settimeout(5)
        rport = relay.getsockname()[1]
        m.transport.clear()
        parent.send(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + rport.to_bytes(2, "big"))
        reply = m.transport.value()
        assert reply[:4] == b"\x05\x00\x00\x01"
        inside = ("127.0.0.1", int.from_bytes(reply[8:10], "big"))
        association = m.session.relay
        assert isinstance(association, ParentUdpAssociation)
        # the client sends to 127.0.0.1:7 (echo) through us
        header = b"\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x07"
        client.sendto(header + b"ping", inside)
        association.inside.doRead()
        data, source = relay.recvfrom(2048)
        assert (data, source[1]) == (header + b"ping", outside_port)
        relay.sendto(header + b"pong", source)
        endpoint = association.parent
        assert isinstance(endpoint, UdpEndpoint)
        endpoint.doRead()
        assert client.recvfrom(2048)[0] == header + b"pong"
        parent.sock.close()
        parent.pump()
    assert association.closed
    assert any("udp/udpassociate ]" in line and "remote peer closed" in line
               for line in m.log.messages())  # fmt: skip
