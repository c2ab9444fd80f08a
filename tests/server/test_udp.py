"""UDP ASSOCIATE in memory: the reply, the header both ways, who may send.

The session runs on a ``MemoryReactorClock``; the association's sockets are
real UDP sockets on 127.0.0.1, as are the test's client and target.  The test
waits (``select``, bounded) until the association's socket is readable and
then calls its ``doRead``, as the reactor would.  Datagram headers are written
by hand from RFC 1928 §7: RSV(2)=0 FRAG ATYP DST.ADDR DST.PORT DATA.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterator

import pytest

from dantex.server._udprelay import UdpAssociation
from dantex.server._udpsock import UdpEndpoint
from dantex.testing import MemorySession, memory_session

CONF = """
internal: 127.0.0.1 port = 1080
external: 127.0.0.1
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
socks pass { from: 0/0 to: 0/0
  command: bind connect udpassociate
  log: connect disconnect error iooperation }
socks pass { from: 0/0 to: 127.0.0.0/8
  command: bindreply udpreply
  log: connect disconnect error iooperation }
"""


def header(ip: str, port: int, frag: int = 0) -> bytes:
    """RFC 1928 §7 for an IPv4 destination."""
    return (
        b"\x00\x00"
        + bytes((frag,))
        + b"\x01"
        + socket.inet_aton(ip)
        + struct.pack("!H", port)
    )


def associate(m: MemorySession, ip: str = "0.0.0.0", port: int = 0) -> tuple[str, int]:
    """Negotiate and send UDP ASSOCIATE (RFC 1928 §4, CMD=3); the relay address."""
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"
    reply = m.send(b"\x05\x03\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port))
    assert reply[:4] == b"\x05\x00\x00\x01", reply
    return socket.inet_ntoa(reply[4:8]), struct.unpack("!H", reply[8:10])[0]


def association(m: MemorySession) -> UdpAssociation:
    relay = m.session.relay
    assert isinstance(relay, UdpAssociation)
    return relay


def pump(endpoint: UdpEndpoint) -> None:
    """Wait (bounded) until ``endpoint`` is readable, then let it read."""
    ready, _, _ = select.select([endpoint.sock], [], [], 5)
    assert ready, "no datagram arrived"
    endpoint.doRead()


def nothing_for(sock: socket.socket, seconds: float = 0.2) -> bool:
    """True if no datagram arrives on ``sock`` within ``seconds``."""
    ready, _, _ = select.select([sock], [], [], seconds)
    return not ready


@pytest.fixture
def udp() -> Iterator[list[socket.socket]]:
    """Make UDP sockets on 127.0.0.x; all closed after the test."""
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def udp_socket(made: list[socket.socket], ip: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.bind((ip, 0))
    made.append(s)
    return s


def round_trip(
    m: MemorySession,
    client: socket.socket,
    target: socket.socket,
    relay: tuple[str, int],
    data: bytes = b"ping",
) -> bytes:
    """Client -> relay -> target, target answers, -> client; the client's datagram."""
    assoc = association(m)
    tip, tport = target.getsockname()
    client.sendto(header(tip, tport) + data, relay)
    pump(assoc.inside)
    got, source = target.recvfrom(100)
    assert got == data
    target.sendto(b"re:" + got, source)
    pump(next(iter(assoc.externals.values())))
    return client.recv(100)


def test_reply_names_the_internal_address_and_a_udp_port() -> None:
    """BND is the address the client connected to, with the relay's UDP port
    (never 0.0.0.0), and that port is bound there."""
    m = memory_session(CONF)
    relay = associate(m)
    assert relay[0] == "127.0.0.1" and relay[1] != 0
    assert association(m).inside.sock.getsockname() == relay
    assert (
        f"pass(1): udp/udpassociate [: 0.0.0.0.0 127.0.0.1.{relay[1]}"
        in m.log.messages()
    )


def test_datagram_round_trip_with_headers(udp: list[socket.socket]) -> None:
    """The payload goes out without the header; the reply comes back with a
    header carrying the target's address (RFC 1928 §7)."""
    m = memory_session(CONF)
    relay = associate(m)
    client, target = udp_socket(udp), udp_socket(udp)
    answer = round_trip(m, client, target, relay)
    tip, tport = target.getsockname()
    assert answer == header(tip, tport) + b"re:ping"
    lines = m.log.messages()
    cport = client.getsockname()[1]
    assert any(
        line.startswith(f"pass(1): udp/udpassociate -: 127.0.0.1.{cport} ")
        and line.endswith(f" 127.0.0.1.{tport} (4)")
        for line in lines
    ), lines
    assert any(
        line.startswith(f"pass(2): udp/udpreply -: 127.0.0.1.{tport} ")
        and line.endswith(f"127.0.0.1.{cport} (7)")
        for line in lines
    ), lines


def test_end_with_the_control_connection_and_counts(udp: list[socket.socket]) -> None:
    """Closing the TCP control connection ends the association: its sockets
    are closed and the end line carries bytes/datagrams like danted's."""
    m = memory_session(CONF)
    relay = associate(m)
    client, target = udp_socket(udp), udp_socket(udp)
    round_trip(m, client, target, relay)
    assoc = association(m)
    sockets = [assoc.inside.sock, *(e.sock for e in assoc.externals.values())]
    m.session.readConnectionLost()
    assert all(s.fileno() == -1 for s in sockets)
    assert not m.clock.readers
    assert not m.transport.connected
    cport, tport = client.getsockname()[1], target.getsockname()[1]
    line = next(x for x in m.log.messages() if "udp/udpassociate ]" in x)
    assert line.startswith(
        f"pass(1): udp/udpassociate ]: 17/1 -> 127.0.0.1.{cport} "
        f"127.0.0.1.{relay[1]} -> 14/1, 4/1 -> 127.0.0.1."
    ), line
    assert line.endswith(
        f" 127.0.0.1.{tport} -> 7/1: local client closed.  Session duration: 0s"
    ), line
    assert (
        "pass(1): tcp/accept ]: 17 -> 127.0.0.1.40000 127.0.0.1.1080 -> 4: "
        "local client closed.  Session duration: 0s" in m.log.messages()
    )


def test_first_sender_must_be_from_the_control_connections_ip(
    udp: list[socket.socket],
) -> None:
    """With 0.0.0.0:0 declared, a stranger sending first is dropped (danted
    would lock onto it); the client's own datagram then goes through."""
    m = memory_session(CONF)
    relay = associate(m)
    stranger, client, target = (
        udp_socket(udp, "127.0.0.2"),
        udp_socket(udp),
        udp_socket(udp),
    )
    tip, tport = target.getsockname()
    stranger.sendto(header(tip, tport) + b"evil", relay)
    assoc = association(m)
    pump(assoc.inside)
    assert nothing_for(target)
    assert assoc.dropped == 1 and assoc.client is None
    assert round_trip(m, client, target, relay).endswith(b"re:ping")
    assert any(
        "127.0.0.2." in line and "other than the client's" in line
        for line in m.log.messages()
    )


def test_declared_port_is_required(udp: list[socket.socket]) -> None:
    """A declared port: only that port of the client's IP may send."""
    client, other, target = udp_socket(udp), udp_socket(udp), udp_socket(udp)
    m = memory_session(CONF)
    relay = associate(m, "0.0.0.0", client.getsockname()[1])
    tip, tport = target.getsockname()
    other.sendto(header(tip, tport) + b"no", relay)
    client.sendto(header(tip, tport) + b"yes", relay)
    pump(association(m).inside)
    assert target.recv(10) == b"yes"
    assert nothing_for(target)


def test_only_destinations_may_answer(udp: list[socket.socket]) -> None:
    """A datagram to the external socket from anyone the client has not sent
    to is dropped: no reflection, no open relay (udp.connectdst: no, so the
    kernel does not filter for us)."""
    m = memory_session(
        CONF.replace("socksmethod: none", "socksmethod: none\nudp.connectdst: no")
    )
    relay = associate(m)
    client, target, stranger = udp_socket(udp), udp_socket(udp), udp_socket(udp)
    round_trip(m, client, target, relay)
    assoc = association(m)
    (external,) = assoc.externals.values()
    stranger.sendto(b"unsolicited", external.sock.getsockname())
    pump(external)
    assert nothing_for(client)
    assert assoc.dropped == 1
    # the target itself still may
    target.sendto(b"again", external.sock.getsockname())
    pump(external)
    assert client.recv(100).endswith(b"again")


def test_fragments_are_dropped(udp: list[socket.socket]) -> None:
    """FRAG != 0 is dropped and logged with danted's text."""
    m = memory_session(CONF)
    relay = associate(m)
    client, target = udp_socket(udp), udp_socket(udp)
    tip, tport = target.getsockname()
    client.sendto(header(tip, tport, frag=1) + b"part", relay)
    pump(association(m).inside)
    assert nothing_for(target)
    assert any(
        line.endswith(
            f"-> 0.0.0.0.0 127.0.0.1.{tport}: fragmented socks udp packets are "
            "not supported"
        )
        and line.startswith("block(1): udp/udpassociate -:")
        for line in m.log.messages()
    ), m.log.messages()


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x00\x00",  # shorter than RSV FRAG ATYP
        b"\x00\x01\x00\x01\x7f\x00\x00\x01\x00\x07x",  # RSV != 0
        b"\x00\x00\x00\x09\x7f\x00\x00\x01\x00\x07x",  # ATYP 9
        b"\x00\x00\x00\x01\x7f\x00",  # address cut short
    ],
)
def test_malformed_headers_are_dropped(
    udp: list[socket.socket], datagram: bytes
) -> None:
    """A datagram whose header does not parse goes nowhere; it is logged."""
    m = memory_session(CONF)
    relay = associate(m)
    client = udp_socket(udp)
    client.sendto(datagram, relay)
    assoc = association(m)
    pump(assoc.inside)
    assert assoc.externals == {}
    assert any("block(1): udp/udpassociate -:" in x for x in m.log.messages())


def test_domain_destination_is_resolved(udp: list[socket.socket]) -> None:
    """ATYP 3: the name is resolved (cache, no blocking) and the datagram sent
    to its address; the reply's header carries that address."""
    target, client = udp_socket(udp), udp_socket(udp)
    tport = target.getsockname()[1]
    m = memory_session(CONF, forward={"echo.test": ("127.0.0.1",)})
    relay = associate(m)
    name = b"echo.test"
    client.sendto(
        b"\x00\x00\x00\x03"
        + bytes((len(name),))
        + name
        + struct.pack("!H", tport)
        + b"hi",
        relay,
    )
    pump(association(m).inside)
    data, source = target.recvfrom(10)
    assert data == b"hi"
    assert ("forward", "echo.test") in m.resolver.asked
    target.sendto(b"yo", source)
    pump(next(iter(association(m).externals.values())))
    assert client.recv(100) == header("127.0.0.1", tport) + b"yo"


def test_rules_are_checked_per_destination_and_per_sender(
    udp: list[socket.socket],
) -> None:
    """udpassociate rules see (client, destination); udpreply rules see
    (sender, client): a blocked destination gets nothing, a blocked sender's
    answer is dropped."""
    blocked_dst, blocked_src, client = (
        udp_socket(udp, "127.0.0.9"),
        udp_socket(udp, "127.0.0.3"),
        udp_socket(udp),
    )
    config = CONF.replace(
        "socks pass { from: 0/0 to: 0/0\n  command: bind",
        "socks block { from: 0/0 to: 127.0.0.9/32\n  command: udpassociate\n"
        "  log: connect }\nsocks block { from: 127.0.0.3/32 to: 0/0\n"
        "  command: udpreply\n  log: connect }\n"
        "socks pass { from: 0/0 to: 0/0\n  command: bind",
    )
    m = memory_session(config)
    relay = associate(m)
    assoc = association(m)
    ip9, port9 = blocked_dst.getsockname()
    client.sendto(header(ip9, port9) + b"x", relay)
    pump(assoc.inside)
    assert nothing_for(blocked_dst)
    ip3, port3 = blocked_src.getsockname()
    client.sendto(header(ip3, port3) + b"y", relay)
    pump(assoc.inside)
    data, source = blocked_src.recvfrom(10)
    assert data == b"y"
    blocked_src.sendto(b"answer", source)
    pump(assoc.externals[socket.AF_INET])
    assert nothing_for(client)
    lines = m.log.messages()
    assert any(x.startswith("block(1): udp/udpassociate -:") for x in lines), lines
    assert any(x.startswith(f"block(2): udp/udpreply -: {ip3}.{port3} ") for x in lines)


def test_association_blocked_by_the_control_address() -> None:
    """The request itself is checked (from: the control connection, to:
    unknown) and refused with X'02' when no datagram could pass."""
    config = CONF.replace(
        "socks pass { from: 0/0 to: 0/0\n  command: bind",
        "socks block { from: 127.0.0.0/8 to: 0/0\n  command: udpassociate\n"
        "  log: connect }\nsocks pass { from: 0/0 to: 0/0\n  command: bind",
    )
    m = memory_session(config)
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"
    reply = m.send(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    assert reply[:2] == b"\x05\x02"
    assert any(x.startswith("block(1): udp/udpassociate ]:") for x in m.log.messages())


def test_udp_portrange_picks_the_port() -> None:
    """The rule's udp.portrange gives the client-facing port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
    config = CONF.replace(
        "command: bind connect udpassociate",
        f"command: bind connect udpassociate\n  udp.portrange: {low} - {low}",
    )
    m = memory_session(config)
    assert associate(m)[1] == low


def test_full_port_range_is_a_general_failure() -> None:
    """No free port in udp.portrange: X'01' and danted's reason."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = CONF.replace(
            "command: bind connect udpassociate",
            f"command: bind connect udpassociate\n  udp.portrange: {port}-{port}",
        )
        m = memory_session(config)
        assert m.send(b"\x05\x01\x00") == b"\x05\x00"
        reply = m.send(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
    assert reply[:2] == b"\x05\x01"
    assert any("no free ports in range to bind" in x for x in m.log.messages())


def test_bandwidth_stops_reading_while_the_bucket_is_in_debt(
    udp: list[socket.socket],
) -> None:
    """bandwidth: 1000 on the udpassociate rule (a burst of 100 bytes): a
    datagram is relayed, then charged; in debt the association reads none of
    its sockets, mid-batch included, and the kernel keeps what arrives."""
    m = memory_session(
        CONF.replace(
            "command: bind connect udpassociate\n",
            "command: bind connect udpassociate\n  bandwidth: 1000\n",
        )
    )
    relay = associate(m)
    assoc = association(m)
    client, target = udp_socket(udp), udp_socket(udp)
    tip, tport = target.getsockname()
    for fill in (b"A", b"B", b"C"):
        client.sendto(header(tip, tport) + fill * 500, relay)
    pump(assoc.inside)
    assert target.recv(1000) == b"A" * 500
    assert nothing_for(target, 0.1)  # B and C wait in the relay socket
    (external,) = assoc.externals.values()
    assert assoc.inside not in m.clock.readers
    assert external not in m.clock.readers  # made while in debt: held too
    # 100 - 510 bytes: 410 owed at 1000 bytes/s, 0.41 s
    m.clock.advance(0.3)
    assert assoc.inside not in m.clock.readers
    m.clock.advance(0.2)
    assert {assoc.inside, external} <= set(m.clock.readers)
    pump(assoc.inside)
    assert target.recv(1000) == b"B" * 500
    assert assoc.inside not in m.clock.readers  # in debt again: C still waits
    assert nothing_for(target, 0.1)


def test_idle_association_times_out() -> None:
    """timeout.io.udp without a datagram ends the association."""
    m = memory_session(
        CONF.replace("socksmethod: none", "socksmethod: none\ntimeout.io.udp: 10")
    )
    associate(m)
    m.clock.advance(9)
    assert m.transport.connected
    m.clock.advance(2)
    assert not m.transport.connected
    assert any(
        "udp/udpassociate ]" in x and "i/o timeout" in x for x in m.log.messages()
    )


def test_internal_advertise_replaces_the_reply_address() -> None:
    """internal.advertise is what the reply names (port stays the real one)."""
    m = memory_session(
        CONF.replace(
            "socksmethod: none", "socksmethod: none\ninternal.advertise: 198.51.100.7"
        )
    )
    ip, port = associate(m)
    assert ip == "198.51.100.7"
    assert association(m).inside.sock.getsockname() == ("127.0.0.1", port)


def test_connectdst_connects_then_disconnects_keeping_the_port(
    udp: list[socket.socket],
) -> None:
    """udp.connectdst: the external socket is connected to a sole destination;
    a second destination disconnects it, the source port stays the same, and
    both destinations' answers come back."""
    m = memory_session(CONF)
    relay = associate(m)
    client, first, second = udp_socket(udp), udp_socket(udp), udp_socket(udp)
    round_trip(m, client, first, relay)
    (external,) = association(m).externals.values()
    assert external.sock.getpeername() == first.getsockname()
    port = external.sock.getsockname()[1]
    answer = round_trip(m, client, second, relay)
    assert answer.endswith(b"re:ping")
    with pytest.raises(OSError):
        external.sock.getpeername()
    assert external.sock.getsockname()[1] == port
    first.sendto(b"late", ("127.0.0.1", port))
    pump(external)
    assert client.recv(100).endswith(b"late")


def test_rule_timeout_io_bounds_the_association() -> None:
    """A socks-rule's timeout.io (not only .udp) applies to its associations."""
    m = memory_session(
        CONF.replace(
            "log: connect disconnect error iooperation }\nsocks pass { from: 0/0 "
            "to: 127.0.0.0/8",
            "log: connect disconnect error iooperation\n  timeout.io: 3 }\n"
            "socks pass { from: 0/0 to: 127.0.0.0/8",
        )
    )
    associate(m)
    m.clock.advance(2.5)
    assert m.transport.connected
    m.clock.advance(1)
    assert not m.transport.connected


def test_ipv6_client_gets_an_ipv6_relay(udp: list[socket.socket]) -> None:
    """A client on ::1 declaring :: gets a relay socket on ::1 (its family)."""
    config = CONF.replace(
        "client pass {", "client pass { from: ::1/128 to: 0/0 }\nclient pass {", 1
    )
    m = memory_session(config, client=("::1", 40000), server=("::1", 1080))
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"
    # RFC 1928 §4: ATYP=4 DST.ADDR=:: DST.PORT=0
    reply = m.send(b"\x05\x03\x00\x04" + b"\x00" * 18)
    assert reply[:4] == b"\x05\x00\x00\x04"
    assert socket.inet_ntop(socket.AF_INET6, reply[4:20]) == "::1"
    port = struct.unpack("!H", reply[20:22])[0]
    assert association(m).inside.sock.getsockname()[:2] == ("::1", port)


def test_a_failing_socket_ends_the_association() -> None:
    """If the reactor drops a socket (an exception while reading), the
    association ends and says so, instead of lingering half-alive."""
    from twisted.python.failure import Failure

    m = memory_session(CONF)
    associate(m)
    assoc = association(m)
    assoc.inside.connectionLost(Failure(RuntimeError("boom")))
    assert not m.transport.connected
    assert assoc.inside.sock.fileno() == -1
    assert any("session error" in x for x in m.log.messages())


def test_monitor_watches_the_association_from_its_first_destination(
    udp: list[socket.socket],
) -> None:
    """A ``protocol: udp`` monitor takes the association at its first
    relayed datagram; closing the control connection ends the session as
    closed by the client, with the association's bytes kept in the monitor:
    14 read from the client (10-byte header + "ping"), 17 written back
    (header + "re:ping"), 7 read from and 4 written to the target."""
    monitor = (
        "monitor { from: 127.0.0.0/8 to: 127.0.0.0/8 protocol: udp\n"
        " internal.alarm.disconnect: 1/1 in 5\n}\n"
    )
    m = memory_session(CONF + monitor)
    monitors = m.session.runtime.monitors
    monitors.configure(m.session.policy.config.monitors, m.log.warning, {})
    try:
        relay = associate(m)
        assert m.session.monitored is None  # no destination yet
        client, target = udp_socket(udp), udp_socket(udp)
        round_trip(m, client, target, relay)
        member = m.session.monitored
        assert member is not None and member.relay is association(m)
        running = member._monitor
        m.session.readConnectionLost()
        assert m.session.monitored is None and not running.live
        assert running.ended_bytes == [14, 17, 7, 4]
        m.clock.advance(5)
        assert [x for x in m.log.messages() if "alarm/disconnect" in x] == [
            "monitor(1): alarm/disconnect ]: 127.0.0.0/8 -> 127.0.0.0/8 internal: "
            "1/1 disconnects during last 5s.  Session count: 0"
        ]
    finally:
        monitors.stop()
