"""CONNECT through routes, in memory: parents, paths, failover, replies, marks.

The session runs on a ``StringTransport`` and a ``MemoryReactorClock``; each
parent is the far end of a real loopback TCP pair, so the bytes dantex
writes to it are read back and checked, and the parent's answers (written
by hand from RFC 1928/1929, SOCKS 4 and RFC 9110) are fed through the same
lean socket the relay later takes.
"""

from __future__ import annotations

import base64
import errno
import select
import socket
from pathlib import Path

import pytest

from dantex.server.lean import Conn
from dantex.server.route import remember_credentials
from dantex.testing import MemorySession, memory_session

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=1 192.0.2.10 port 80
CONNECT = b"\x05\x01\x00\x01\xc0\x00\x02\x0a\x00\x50"
# the same request by name: ATYP=3 "www.example.org" port 80
CONNECT_NAME = b"\x05\x01\x00\x03\x0fwww.example.org\x00\x50"
# RFC 1928 §6: VER=5 REP=0 RSV ATYP=1 198.51.100.7 port 4242 (the parent's BND)
GRANTED = b"\x05\x00\x00\x01\xc6\x33\x64\x07\x10\x92"

HEAD = """
internal: 127.0.0.1 port = 1080
socksmethod: none
timeout.connect: 10
client pass { from: 127.0.0.0/8 to: 0/0 log: connect disconnect error }
socks pass { from: 127.0.0.0/8 to: 0/0 log: connect disconnect error }
"""
SOCKS5_A = """route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1081
  proxyprotocol: socks_v5 }
"""
SOCKS5_B = """route { from: 0/0 to: 0/0 via: 10.0.0.2 port = 1082
  proxyprotocol: socks_v5 }
"""


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(our end, the parent's end) of a connected loopback TCP pair."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs = server.accept()[0]
    ours.setblocking(False)
    theirs.settimeout(5)
    theirs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay
    return ours, theirs


class Parent:
    """The far end of the connection to a parent proxy."""

    def __init__(self, m: MemorySession, index: int) -> None:
        self.m = m
        ours, self.sock = tcp_pair()
        self.ours = ours
        m.connector.calls[index].deferred.callback(ours)

    def expect(self, data: bytes) -> None:
        got = b""
        while len(got) < len(data):
            chunk = self.sock.recv(len(data) - len(got))
            assert chunk, f"closed after {got!r}"
            got += chunk
        assert got == data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.pump()

    def pump(self) -> None:
        """Let the session read what the parent sent (one read per socket,
        once the bytes have crossed loopback, waiting at most 5 s)."""
        select.select([self.ours], [], [], 5)
        for reader in list(self.m.clock.getReaders()):
            if isinstance(reader, Conn) and reader.sock is self.ours:
                reader.doRead()

    def closed(self) -> bool:
        self.sock.settimeout(1)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def session(routes: str, **kw: object) -> MemorySession:
    m = memory_session(HEAD + routes, **kw)  # type: ignore[arg-type]
    assert m.send(GREETING) == b"\x05\x00"
    return m


def test_connect_through_a_socks5_parent() -> None:
    """The parent gets RFC 1928 greeting and request; the client gets the
    parent's BND; bytes after the parent's reply reach the client first."""
    m = session(SOCKS5_A)
    assert m.send(CONNECT + b"early") == b""
    (call,) = m.connector.calls
    assert call.sockaddr == ("10.0.0.1", 1081)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(CONNECT)
    m.transport.clear()
    parent.send(GRANTED + b"banner")
    (relay,) = m.relays
    assert relay.started
    assert isinstance(relay.target, Conn) and relay.target.sock is parent.ours
    assert relay.reply == GRANTED + b"banner"
    assert relay.leftover == b"early"
    assert m.transport.value() == GRANTED + b"banner"
    assert any(
        "serverchain: route #1 (socks_v5 10.0.0.1.1081)" in line
        for line in m.log.messages()
    )


def test_socks4_client_gets_a_v4_reply_through_a_v5_parent() -> None:
    """A SOCKS 4 client is answered in its own version (90, the parent's BND)."""
    m = memory_session(HEAD + SOCKS5_A)
    # SOCKS 4: VN=4 CD=1 DSTPORT=80 DSTIP=192.0.2.10 USERID="" NUL
    m.send(b"\x04\x01\x00\x50\xc0\x00\x02\x0a\x00")
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(CONNECT)
    parent.send(GRANTED)
    # VN=0 CD=90 DSTPORT=4242 DSTIP=198.51.100.7
    assert m.relays[0].reply == b"\x00\x5a\x10\x92\xc6\x33\x64\x07"


def test_a_routes_redirect_from_picks_where_the_parent_is_reached_from() -> None:
    """redirect from: 127.0.0.2/32 port = 30000 in the route: the connection to
    the parent comes from that address and port; without it, from the
    kernel's choice (no external: here)."""
    m = session(
        "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1081\n"
        "  redirect from: 127.0.0.2/32 port = 30000\n"
        "  proxyprotocol: socks_v5 }\n"
    )
    m.send(CONNECT)
    (call,) = m.connector.calls
    assert (call.source, call.source_ports) == ("127.0.0.2", (30000, 30000))
    plain = session(SOCKS5_A)
    plain.send(CONNECT)
    (call,) = plain.connector.calls
    assert (call.source, call.source_ports) == (None, None)


def test_unreachable_parent_fails_over_and_is_marked_bad() -> None:
    """A refused connect to parent A: route B is tried; A is logged as
    blacklisted and skipped by the next request until badexpire."""
    m = session(SOCKS5_A + SOCKS5_B)
    m.send(CONNECT)
    refused = OSError(errno.ECONNREFUSED, "Connection refused")
    m.connector.calls[0].deferred.errback(refused)
    assert m.connector.calls[1].sockaddr == ("10.0.0.2", 1082)
    assert any("blacklisting route #1 for 300s" in line for line in m.log.messages())
    parent = Parent(m, 1)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(CONNECT)
    parent.send(GRANTED)
    assert m.relays[0].started
    # a second client shares the runtime (same process): route #1 is skipped
    second = memory_session(HEAD + SOCKS5_A + SOCKS5_B)
    second.session.runtime = m.session.runtime
    second.send(GREETING)
    second.send(CONNECT)
    assert [c.sockaddr for c in m.connector.calls][2:] == [("10.0.0.2", 1082)]
    m.clock.advance(300)
    third = memory_session(HEAD + SOCKS5_A + SOCKS5_B)
    third.session.runtime = m.session.runtime
    third.send(GREETING)
    third.send(CONNECT)
    assert m.connector.calls[3].sockaddr == ("10.0.0.1", 1081)


def test_parent_refusal_fails_over_without_a_mark_and_best_reply_wins() -> None:
    """Parent A says 'connection refused' (0x05), parent B is unreachable:
    both tried, only B marked, and the client gets A's answer about the target."""
    m = session(SOCKS5_A + SOCKS5_B)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(CONNECT)
    m.transport.clear()
    parent.send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    m.connector.calls[1].deferred.errback(OSError(errno.EHOSTUNREACH, "No route"))
    assert m.transport.value()[:2] == b"\x05\x05"
    assert not m.transport.connected
    lines = m.log.messages()
    assert not any("blacklisting route #1" in line for line in lines)
    assert any("blacklisting route #2" in line for line in lines)
    assert any(
        "serverchain failed: route #1" in line and "route #2" in line for line in lines
    )


def test_no_usable_route_is_0x03() -> None:
    """Routes exist but none matches: reply 0x03, danted's words in the log."""
    m = session("route { from: 0/0 to: 10.0.0.0/8 via: direct }\n")
    assert m.send(CONNECT)[:2] == b"\x05\x03"
    assert m.connector.calls == []
    assert any(
        "no usable serverchain route to target found" in line
        for line in m.log.messages()
    )


def test_direct_route_connects_to_the_target() -> None:
    """via: direct is the plain CONNECT, after a failed parent."""
    m = session(SOCKS5_A + "route { from: 0/0 to: 0/0 via: direct }\n")
    m.send(CONNECT)
    m.connector.calls[0].deferred.errback(OSError(errno.ECONNREFUSED, "refused"))
    assert m.connector.calls[1].sockaddr == ("192.0.2.10", 80)


def test_silent_parent_times_out_and_is_marked() -> None:
    """A parent that accepts but never answers: timeout.connect, 0x06, mark;
    the next route is not left waiting for a dead one."""
    m = session(SOCKS5_A)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    m.clock.advance(10)
    assert m.transport.value()[-10:][:2] == b"\x05\x06"
    assert any("blacklisting route #1" in line for line in m.log.messages())
    assert parent.closed()


def test_slow_target_behind_a_live_parent_is_not_marked() -> None:
    """The parent answered the greeting but not the request in time: 0x06,
    no mark (the target, not the parent, is slow)."""
    m = session(SOCKS5_A)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    m.clock.advance(10)
    assert m.transport.value()[-10:][:2] == b"\x05\x06"
    assert not any("blacklisting" in line for line in m.log.messages())


def test_http_parent_with_fixed_basic_credentials() -> None:
    """An HTTP parent gets CONNECT with Host and Basic credentials (RFC 9110,
    RFC 7617); its 200 opens the tunnel, BND is our own address."""
    m = session(
        "route { from: 0/0 to: 0/0 via: 10.0.0.5 port = 3128\n"
        " proxyprotocol: http\n username: dx\n password: pw:1\n}\n"
    )
    m.send(CONNECT)
    parent = Parent(m, 0)
    token = base64.b64encode(b"dx:pw:1").decode()
    parent.expect(
        b"CONNECT 192.0.2.10:80 HTTP/1.1\r\nHost: 192.0.2.10:80\r\n"
        + f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
    )
    parent.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
    (relay,) = m.relays
    host, port = parent.ours.getsockname()[:2]
    assert relay.reply[:4] == b"\x05\x00\x00\x01"
    assert relay.reply[4:] == socket.inet_aton(host) + port.to_bytes(2, "big")


def test_http_503_maps_to_connection_refused() -> None:
    """squid's 503 for a closed port is told to the client as 0x05."""
    m = session(
        "route { from: 0/0 to: 0/0 via: 10.0.0.5 port = 3128\n proxyprotocol: http\n}\n"
    )
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.sock.recv(4096)
    m.transport.clear()
    parent.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert m.transport.value()[:2] == b"\x05\x05"


def test_two_parents_are_negotiated_in_turn_on_one_socket() -> None:
    """A path: SOCKS 5 to the first parent (asked for the second), then HTTP
    CONNECT to the second (asked for the target), all on one connection."""
    m = session(
        "route {\n from: 0/0 to: 0/0\n via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n via: 10.0.0.5 port = 3128\n"
        " proxyprotocol: http\n}\n"
    )
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    # CONNECT to 10.0.0.5:3128 (0x0c38)
    parent.expect(b"\x05\x01\x00\x01\x0a\x00\x00\x05\x0c\x38")
    parent.send(GRANTED)
    parent.expect(b"CONNECT 192.0.2.10:80 HTTP/1.1\r\nHost: 192.0.2.10:80\r\n\r\n")
    parent.send(b"HTTP/1.0 200 OK\r\n\r\nhello")
    (relay,) = m.relays
    assert relay.reply.endswith(b"hello")


def test_second_hop_refusal_marks_the_route() -> None:
    """The first parent cannot reach the second: the path is broken (mark)."""
    m = session(
        "route {\n from: 0/0 to: 0/0\n via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n via: 10.0.0.5 port = 3128\n"
        " proxyprotocol: http\n}\n"
    )
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.sock.recv(4096)
    m.transport.clear()
    parent.send(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    assert m.transport.value()[:2] == b"\x05\x03"
    assert any("blacklisting route #1" in line for line in m.log.messages())


def test_socks4_parent_gets_a_name_resolved_here() -> None:
    """SOCKS 4 parents get an IPv4 address (danted has no 4A): the name is
    resolved by the server first."""
    m = session(
        "route { from: 0/0 to: 0/0 via: 10.0.0.4 port = 1080\n"
        " proxyprotocol: socks_v4\n}\n",
        forward={"www.example.org": ("192.0.2.10",)},
    )
    m.send(CONNECT_NAME)
    parent = Parent(m, 0)
    # VN=4 CD=1 DSTPORT=80 DSTIP=192.0.2.10 USERID="" NUL
    parent.expect(b"\x04\x01\x00\x50\xc0\x00\x02\x0a\x00")
    parent.send(b"\x00\x5a\x00\x00\x00\x00\x00\x00")
    assert m.relays[0].started


def test_socks5_parent_gets_the_name() -> None:
    """A SOCKS 5 parent resolves names itself (ATYP 3 passed on)."""
    m = session(SOCKS5_A)
    m.send(CONNECT_NAME)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(b"\x05\x00")
    parent.expect(CONNECT_NAME)


def test_client_leaving_cancels_the_attempt() -> None:
    """The client closes while the parent is negotiated: the socket to the
    parent is closed and no relay starts."""
    m = session(SOCKS5_A)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    m.session.connectionLost()
    assert parent.closed()
    assert m.relays == []


def test_client_credentials_are_passed_on_and_a_refusal_is_not_marked(
    tmp_path: Path,
) -> None:
    """method: username forwards the client's own RFC 1929 credentials; the
    parent refusing them is the client's problem, not the route's."""
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:{PLAIN}alice pw!\n")
    m = memory_session(
        f"internal: 127.0.0.1 port = 1080\nusername.passwordfile: {passwd}\n"
        "socksmethod: username\n"
        "client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 0/0 }\n"
        "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n method: username\n}\n"
    )
    assert m.send(b"\x05\x01\x02") == b"\x05\x02"
    # RFC 1929: VER=1 ULEN=5 "alice" PLEN=8 "alice pw!"
    assert m.send(b"\x01\x05alice\x09alice pw!") == b"\x01\x00"
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x02\x00\x02")
    parent.send(b"\x05\x02")
    parent.expect(b"\x01\x05alice\x09alice pw!")
    m.transport.clear()
    parent.send(b"\x01\x01")
    assert m.transport.value()[:2] == b"\x05\x02"
    text = "\n".join(m.log.messages())
    assert "blacklisting" not in text and "alice pw" not in text


def test_client_credentials_that_are_not_utf8_are_passed_on_byte_for_byte() -> None:
    """RFC 1929 credentials are bytes: Latin-1 ones reach the parent as the
    client sent them (kept by remember_credentials, as authentication does)."""
    m = memory_session(
        HEAD.replace("socksmethod: none", "socksmethod: none username")
        + "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n method: username\n}\n"
    )
    remember_credentials(m.session, b"j\xf6rg", b"gr\xfc\xdf")
    m.send(GREETING)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x02\x00\x02")
    parent.send(b"\x05\x02")
    # RFC 1929: VER=1 ULEN=4 "j\xf6rg" PLEN=4 "gr\xfc\xdf"
    parent.expect(b"\x01\x04j\xf6rg\x04gr\xfc\xdf")


def test_client_without_credentials_finds_no_forwarding_route() -> None:
    """method: username alone and a client that gave none: no usable route."""
    m = memory_session(
        HEAD.replace("socksmethod: none", "socksmethod: none username")
        + "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1081\n"
        " proxyprotocol: socks_v5\n method: username\n}\n"
    )
    assert m.send(GREETING) == b"\x05\x00"  # method none: no credentials
    assert m.send(CONNECT)[:2] == b"\x05\x03"


@pytest.mark.parametrize("reply", [b"\x05\xff", b"\x04\x00"])
def test_broken_or_unwilling_parent_is_marked(reply: bytes) -> None:
    """No acceptable method (our fixed choice) or a malformed answer: mark."""
    m = session(SOCKS5_A)
    m.send(CONNECT)
    parent = Parent(m, 0)
    parent.expect(b"\x05\x01\x00")
    parent.send(reply)
    assert any("blacklisting route #1" in line for line in m.log.messages())
