"""BIND in memory: both replies, the expected peer, bindreply rules, the ends.

The session runs on a ``MemoryReactorClock`` with the BIND socket real (on
127.0.0.1): the test connects a real peer to it and hands the reactor's
readiness to the session by calling the registered reader's ``doRead``.
Request and reply bytes are written by hand from RFC 1928 §4/§6 and the
SOCKS 4 text (CD=2 BIND, VN=0 CD=90 twice).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from dantex.server.lean import Conn
from dantex.server.relay import EndReason
from dantex.testing import MemorySession, memory_session

CONF = """
internal: 127.0.0.1 port = 1080
external: 127.0.0.1
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
socks pass { from: 0/0 to: 0/0
  command: bind connect udpassociate
  log: connect disconnect error }
socks pass { from: 0/0 to: 127.0.0.0/8
  command: bindreply udpreply
  log: connect disconnect error }
"""

GREETING = b"\x05\x01\x00"


def v5_bind(ip: str, port: int) -> bytes:
    """RFC 1928 §4: VER=5 CMD=2 (BIND) RSV ATYP=1 DST.ADDR DST.PORT."""
    return b"\x05\x02\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port)


def v5_reply(data: bytes) -> tuple[int, str, int]:
    """RFC 1928 §6 with ATYP=1: REP, BND.ADDR, BND.PORT."""
    assert data[0] == 5 and data[2] == 0 and data[3] == 1, data
    return data[1], socket.inet_ntoa(data[4:8]), struct.unpack("!H", data[8:10])[0]


def negotiated(config: str = CONF, **kw: object) -> MemorySession:
    m = memory_session(config, **kw)  # type: ignore[arg-type]
    assert m.send(GREETING) == b"\x05\x00"
    return m


def the_reader(m: MemorySession) -> object:
    """The one descriptor the session registered (the BIND socket)."""
    (reader,) = m.clock.readers
    return reader


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def connect_peer(
    peers: list[socket.socket], port: int, source: str = "127.0.0.1"
) -> socket.socket:
    """A real peer connected to the BIND socket (done by the kernel on loopback)."""
    s = socket.socket()
    peers.append(s)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_replies_then_the_relay(peers: list[socket.socket]) -> None:
    """First reply: the bound address; second: the peer's; then the relay gets
    the peer's socket and the bytes the client sent while waiting."""
    m = negotiated()
    code, ip, port = v5_reply(m.send(v5_bind("0.0.0.0", 0) + b"early"))
    assert (code, ip) == (0, "127.0.0.1")
    reader = the_reader(m)
    assert m.send(b" and later") == b""
    peer = connect_peer(peers, port)
    reader.doRead()  # type: ignore[attr-defined]
    code, pip, pport = v5_reply(m.transport.value())
    assert (code, pip, pport) == (0, "127.0.0.1", peer.getsockname()[1])
    (relay,) = m.relays
    assert relay.leftover == b"early and later"
    target = relay.target.sock if isinstance(relay.target, Conn) else relay.target
    assert target.getpeername() == peer.getsockname()
    assert not m.clock.readers  # one connection only: the BIND socket is closed
    lines = m.log.messages()
    assert any(
        line.startswith(
            f"pass(1): tcp/bind [: 127.0.0.1.40000 127.0.0.1.1080 -> "
            f"127.0.0.1.{port} 0.0.0.0.0"
        )
        for line in lines
    ), lines
    assert (
        f"pass(2): tcp/bindreply [: 127.0.0.1.{pport} 127.0.0.1.{port} -> "
        "127.0.0.1.1080 127.0.0.1.40000" in lines
    )


def test_end_lines_use_dantes_words(peers: list[socket.socket]) -> None:
    """At the end: bindreply ] with counts, bind ] without, accept ]; the peer
    closing is "local client closed" as in danted's bindreply session."""
    m = negotiated()
    _, _, port = v5_reply(m.send(v5_bind("0.0.0.0", 0) + b"abc"))
    reader = the_reader(m)
    peer = connect_peer(peers, port)
    reader.doRead()  # type: ignore[attr-defined]
    (relay,) = m.relays
    relay.end(EndReason("target"))
    pport = peer.getsockname()[1]
    lines = m.log.messages()
    assert (
        f"pass(2): tcp/bindreply ]: 3 -> 127.0.0.1.{pport} 127.0.0.1.{port} -> 0, "
        "0 -> 127.0.0.1.1080 127.0.0.1.40000 -> 3: local client closed.  "
        "Session duration: 0s" in lines
    ), lines
    assert (
        f"pass(1): tcp/bind ]: 127.0.0.1.40000 127.0.0.1.1080 -> 127.0.0.1.{port} "
        "0.0.0.0.0" in lines
    )
    assert (
        "pass(1): tcp/accept ]: 0 -> 127.0.0.1.40000 127.0.0.1.1080 -> 3: "
        "local client closed.  Session duration: 0s" in lines
    )
    assert m.session not in m.session.runtime.sessions


def test_client_closing_is_remote_peer_closed(peers: list[socket.socket]) -> None:
    """The SOCKS client closing first reads "remote peer closed" (danted)."""
    m = negotiated()
    _, _, port = v5_reply(m.send(v5_bind("0.0.0.0", 0)))
    reader = the_reader(m)
    connect_peer(peers, port)
    reader.doRead()  # type: ignore[attr-defined]
    m.relays[0].end(EndReason("client"))
    assert any(
        "tcp/bindreply ]" in line and "remote peer closed" in line
        for line in m.log.messages()
    )


def test_unexpected_peer_gets_02_with_its_address(peers: list[socket.socket]) -> None:
    """A peer other than the one the request named: reply 0x02 carrying the
    peer's address, the session ends, and the lines say why (danted's text)."""
    m = negotiated()
    _, _, port = v5_reply(m.send(v5_bind("127.0.0.2", 21)))
    reader = the_reader(m)
    peer = connect_peer(peers, port, source="127.0.0.1")
    m.transport.clear()
    reader.doRead()  # type: ignore[attr-defined]
    code, pip, pport = v5_reply(m.transport.value())
    assert (code, pip, pport) == (2, "127.0.0.1", peer.getsockname()[1])
    assert not m.transport.connected
    assert m.relays == []
    assert peer.recv(10) == b""  # the proxy closed the peer's connection
    lines = m.log.messages()
    assert (
        f"block(0): tcp/bindreply ]: 127.0.0.1.{pport} 127.0.0.1.{port} -> "
        "127.0.0.1.1080 127.0.0.1.40000: expected bindreply from 127.0.0.2.0, "
        f"but got it from 127.0.0.1.{pport}" in lines
    ), lines
    assert (
        f"block(1): tcp/bind ]: 127.0.0.1.40000 127.0.0.1.1080 -> 127.0.0.1.{port} "
        f"127.0.0.2.21: bind-reply from 127.0.0.1.{pport} blocked by socks-rule #0"
        in lines
    )


def test_expected_peer_ignores_the_port(peers: list[socket.socket]) -> None:
    """The peer named in the request may connect from any port (Dante)."""
    m = negotiated()
    _, _, port = v5_reply(m.send(v5_bind("127.0.0.1", 21)))
    reader = the_reader(m)
    connect_peer(peers, port)
    m.transport.clear()
    reader.doRead()  # type: ignore[attr-defined]
    assert v5_reply(m.transport.value())[0] == 0
    assert len(m.relays) == 1


def test_bindreply_rule_blocks_the_peer(peers: list[socket.socket]) -> None:
    """The peer is checked as bindreply (from: the peer, to: the client)."""
    config = CONF.replace(
        "socks pass { from: 0/0 to: 127.0.0.0/8\n  command: bindreply",
        "socks block { from: 127.0.0.3/32 to: 0/0\n  command: bindreply\n"
        "  log: connect }\nsocks pass { from: 0/0 to: 127.0.0.0/8\n"
        "  command: bindreply",
    )
    m = negotiated(config)
    _, _, port = v5_reply(m.send(v5_bind("0.0.0.0", 0)))
    reader = the_reader(m)
    peer = connect_peer(peers, port, source="127.0.0.3")
    m.transport.clear()
    reader.doRead()  # type: ignore[attr-defined]
    assert v5_reply(m.transport.value())[:2] == (2, "127.0.0.3")
    pport = peer.getsockname()[1]
    lines = m.log.messages()
    assert (
        f"block(2): tcp/bindreply ]: 127.0.0.3.{pport} 127.0.0.1.{port} -> "
        "127.0.0.1.1080 127.0.0.1.40000" in lines
    ), lines
    assert any("blocked by socks-rule #2" in line for line in lines)


def test_bind_rules_see_the_bound_address() -> None:
    """socks-rules check BIND with to: = the address bound, not the request's
    address (Dante): a rule for the requested peer's network does not apply,
    a rule for the external address does."""
    block_peer_net = CONF.replace(
        "socks pass { from: 0/0 to: 0/0\n  command: bind",
        "socks block { from: 0/0 to: 10.0.0.0/8\n  command: bind\n  log: connect }\n"
        "socks pass { from: 0/0 to: 0/0\n  command: bind",
    )
    m = negotiated(block_peer_net)
    assert v5_reply(m.send(v5_bind("10.1.2.3", 0)))[0] == 0
    block_external = block_peer_net.replace("to: 10.0.0.0/8", "to: 127.0.0.1/32")
    m = negotiated(block_external)
    assert v5_reply(m.send(v5_bind("10.1.2.3", 0)))[:2] == (2, "10.1.2.3")
    assert not m.clock.readers
    assert any(line.startswith("block(1): tcp/bind ]:") for line in m.log.messages())


def test_requested_port_is_bound_when_no_peer_is_named() -> None:
    """With DST.ADDR 0.0.0.0 the DST.PORT is the port to bind (Dante)."""
    want = free_port()
    m = negotiated()
    assert v5_reply(m.send(v5_bind("0.0.0.0", want)))[2] == want


@pytest.mark.parametrize(("ip", "port"), [("127.0.0.1", 0), ("0.0.0.0", 80)])
def test_other_requests_get_an_ephemeral_port(ip: str, port: int) -> None:
    """A named peer's port is not bound, nor a privileged port (Dante needs
    compatibility: sameport for that)."""
    m = negotiated()
    bound = v5_reply(m.send(v5_bind(ip, 80 if port == 0 else port)))[2]
    assert bound >= 1024


def test_sameport_binds_a_requested_privileged_port() -> None:
    """compatibility: sameport -- DST.PORT 1000 with DST.ADDR 0.0.0.0 is bound
    as asked (the tests run as root, which may bind it)."""
    m = negotiated("compatibility: sameport\n" + CONF)
    port = next(p for p in range(1000, 1020) if _free(p))  # nobody uses it here
    assert v5_reply(m.send(v5_bind("0.0.0.0", port)))[2] == port


def _free(port: int) -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_client_leaving_while_waiting_closes_the_bind_socket() -> None:
    """EOF from the client before a peer came: the BIND socket is closed and
    the end logged as danted does ("eof from client")."""
    m = negotiated()
    _, _, port = v5_reply(m.send(v5_bind("0.0.0.0", 0)))
    reader = the_reader(m)
    m.session.readConnectionLost()
    assert not m.clock.readers
    assert reader.sock.fileno() == -1  # type: ignore[attr-defined]
    assert not m.transport.connected
    lines = m.log.messages()
    assert (
        f"pass(1): tcp/bind ]: 127.0.0.1.40000 127.0.0.1.1080 -> 127.0.0.1.{port} "
        "0.0.0.0.0: eof from client" in lines
    ), lines
    assert "pass(1): tcp/accept ]: 127.0.0.1.40000 127.0.0.1.1080: eof from client" in (
        lines
    )


def test_waiting_is_bounded_by_timeout_io() -> None:
    """timeout.io bounds the wait for the peer (0, the default, waits on)."""
    m = negotiated(
        CONF.replace("socksmethod: none", "socksmethod: none\ntimeout.io: 5")
    )
    m.send(v5_bind("0.0.0.0", 0))
    m.clock.advance(4.5)
    assert m.transport.connected
    m.clock.advance(1)
    assert not m.transport.connected
    assert not m.clock.readers
    assert any("i/o timeout" in line for line in m.log.messages())


def test_socks4_bind_two_granted_replies(peers: list[socket.socket]) -> None:
    """SOCKS 4 BIND: VN=0 CD=90 with DSTPORT/DSTIP bound, then CD=90 with the
    peer's address."""
    m = memory_session(CONF)
    want = free_port()
    # VN=4 CD=2 DSTPORT DSTIP=0.0.0.0 USERID="" NUL: the port to bind
    first = m.send(b"\x04\x02" + struct.pack("!H", want) + b"\x00\x00\x00\x00\x00")
    assert first == b"\x00\x5a" + struct.pack("!H", want) + b"\x7f\x00\x00\x01"
    reader = the_reader(m)
    peer = connect_peer(peers, want)
    m.transport.clear()
    reader.doRead()  # type: ignore[attr-defined]
    second = m.transport.value()
    assert second == (
        b"\x00\x5a" + struct.pack("!H", peer.getsockname()[1]) + b"\x7f\x00\x00\x01"
    )


def test_advertised_address_replaces_the_bound_one() -> None:
    """external.advertise puts a fixed address (with the real port) in the
    first reply, for a server behind NAT."""
    m = negotiated(
        CONF.replace(
            "socksmethod: none", "socksmethod: none\nexternal.advertise: 203.0.113.9"
        )
    )
    code, ip, port = v5_reply(m.send(v5_bind("0.0.0.0", 0)))
    assert (code, ip) == (0, "203.0.113.9")
    reader = the_reader(m)
    assert reader.sock.getsockname() == ("127.0.0.1", port)  # type: ignore[attr-defined]


def test_without_external_the_reply_is_a_reachable_address() -> None:
    """No external: configured: the reply still names a concrete address of
    this host (never 0.0.0.0), one a peer can connect to."""
    m = negotiated(CONF.replace("external: 127.0.0.1\n", ""))
    code, ip, port = v5_reply(m.send(v5_bind("127.0.0.1", 0)))
    assert code == 0 and ip != "0.0.0.0"
    with socket.create_connection((ip, port), timeout=5):
        pass


def test_peer_given_as_a_name_is_resolved(peers: list[socket.socket]) -> None:
    """A BIND for a host name expects the peer from the name's addresses."""
    m = negotiated(forward={"peer.test": ("127.0.0.5",)})
    name = b"peer.test"
    reply = m.send(b"\x05\x02\x00\x03" + bytes((len(name),)) + name + b"\x00\x15")
    _, _, port = v5_reply(reply)
    reader = the_reader(m)
    connect_peer(peers, port, source="127.0.0.1")
    m.transport.clear()
    reader.doRead()  # type: ignore[attr-defined]
    assert v5_reply(m.transport.value())[0] == 2  # 127.0.0.1 is not peer.test
    assert any(
        "expected bindreply from peer.test.0" in line for line in m.log.messages()
    )


def test_bind_extension_is_refused_when_off() -> None:
    """BIND for 255.255.255.255 without extension: bind: 0x02 echoing the
    request, and danted's accept line."""
    m = negotiated()
    reply = m.send(v5_bind("255.255.255.255", 0))
    assert reply == b"\x05\x02\x00\x01\xff\xff\xff\xff\x00\x00"
    assert (
        "block(1): tcp/accept ]: 127.0.0.1.40000 127.0.0.1.1080: blocked by "
        "higher-level socks-rule #0: client requested disabled Dante extension: "
        "bind" in m.log.messages()
    )
