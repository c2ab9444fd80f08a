"""BIND and UDP ASSOCIATE: the same Dante config under danted and dantex.

Each scenario runs against both servers with one rule text and checks the
replies and the log lines (danted 1.4.2's exact forms).  Where dantex differs
on purpose (a stranger's datagram before the client's, a new sender's
udpreply decision) it is tested in ``test_bind_udp.py`` and the unit tests.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from typing import Protocol

import pytest
import socks  # PySocks

from tests.integration.conftest import RunDantex, StartPeer
from tests.integration.peers.danted import run_danted
from tests.integration.peers.origins import Origins
from tests.integration.raw_socks import recv_exact

pytestmark = pytest.mark.integration

TIMEOUT = 10

#: Rules in the common subset of both parsers; udpassociate to 127.0.0.2 is
#: blocked (rule #1), bind/udpassociate pass (#2), replies to loopback (#3).
RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error connect disconnect
}
socks block {
  from: 0.0.0.0/0 to: 127.0.0.2/32
  command: udpassociate
  log: error connect disconnect iooperation
}
socks pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: bind connect udpassociate
  log: error connect disconnect iooperation
}
socks pass {
  from: 0.0.0.0/0 to: 127.0.0.0/8
  command: bindreply udpreply
  log: error connect disconnect iooperation
}
"""

LO = r"127\.0\.0\.1\.\d+"


class Server(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...

    def log_text(self) -> str: ...


@pytest.fixture(params=["danted", "dantex"])
def server(
    request: pytest.FixtureRequest, start_peer: StartPeer, dantex: RunDantex
) -> Iterator[Server]:
    """The same rules served by danted or by dantex (external 127.0.0.1)."""
    if request.param == "danted":
        yield start_peer(run_danted, rules=RULES)
    else:
        yield dantex(RULES, settings="external: 127.0.0.1")


def wait_log(server: Server, pattern: str) -> None:
    deadline = time.monotonic() + 5
    while not re.search(pattern, server.log_text(), re.M):
        assert time.monotonic() < deadline, (
            f"{pattern!r} not in log:\n{server.log_text()[-3000:]}"
        )
        time.sleep(0.05)


def control(server: Server) -> socket.socket:
    c = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    c.sendall(b"\x05\x01\x00")
    assert recv_exact(c, 2) == b"\x05\x00"
    return c


def reply(c: socket.socket) -> tuple[int, str, int]:
    """RFC 1928 §6 with ATYP=1: REP, BND.ADDR, BND.PORT."""
    data = recv_exact(c, 10)
    assert data[0] == 5 and data[3] == 1, data
    return data[1], socket.inet_ntoa(data[4:8]), struct.unpack("!H", data[8:])[0]


def bind_request(ip: str, port: int = 0) -> bytes:
    return b"\x05\x02\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port)


def test_bind_relays_and_logs(server: Server) -> None:
    """BIND: both replies, data both ways, and danted's bind/bindreply lines."""
    with control(server) as c:
        c.sendall(bind_request("0.0.0.0"))
        code, ip, port = reply(c)
        assert (code, ip) == (0, "127.0.0.1")
        with socket.create_connection((ip, port), timeout=TIMEOUT) as peer:
            assert reply(c) == (0, *peer.getsockname())
            peer.sendall(b"hello")
            assert recv_exact(c, 5) == b"hello"
            c.sendall(b"abcdef")
            assert recv_exact(peer, 6) == b"abcdef"
        assert c.recv(10) == b""  # the peer closed first: the "local client"
    p = rf"127\.0\.0\.1\.{port}"
    wait_log(server, rf"pass\(2\): tcp/bind \[: {LO} {LO} -> {p} 0\.0\.0\.0\.0$")
    wait_log(server, rf"pass\(3\): tcp/bindreply \[: {LO} {p} -> {LO} {LO}$")
    wait_log(
        server,
        rf"pass\(3\): tcp/bindreply \]: 6 -> {LO} {p} -> 5, 5 -> {LO} {LO} -> 6: "
        r"local client closed\.  Session duration: \d+s$",
    )
    wait_log(server, rf"pass\(2\): tcp/bind \]: {LO} {LO} -> {p} 0\.0\.0\.0\.0$")


def test_bind_from_the_wrong_peer(server: Server) -> None:
    """A peer other than the one named: 0x02 with its address, danted's text."""
    with control(server) as c:
        c.sendall(bind_request("127.0.0.2", 21))
        _, ip, port = reply(c)
        with socket.create_connection((ip, port), timeout=TIMEOUT) as peer:
            assert reply(c) == (2, *peer.getsockname())
    wait_log(
        server,
        r"block\(0\): tcp/bindreply \]: .*: expected bindreply from 127\.0\.0\.2\.0, "
        rf"but got it from {LO}$",
    )
    wait_log(server, r"block\(1\): tcp/accept \]: .*blocked by socks-rule #0$")


def test_socks4_bind(server: Server) -> None:
    """SOCKS 4 BIND: CD=90 twice, the second with the peer's address."""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as c:
        c.sendall(b"\x04\x02\x00\x00\x00\x00\x00\x00\x00")
        first = recv_exact(c, 8)
        assert first[:2] == b"\x00\x5a"
        port = struct.unpack("!H", first[2:4])[0]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as peer:
            second = recv_exact(c, 8)
            assert second[:2] == b"\x00\x5a"
            assert struct.unpack("!H", second[2:4])[0] == peer.getsockname()[1]


def test_bind_extension_refused(server: Server) -> None:
    """255.255.255.255 without extension: bind gets 0x02 and danted's text."""
    with control(server) as c:
        c.sendall(bind_request("255.255.255.255"))
        assert reply(c)[0] == 2
    wait_log(server, r"client requested disabled Dante extension: bind$")


def test_pysocks_udp_and_log_lines(server: Server, origins: Origins) -> None:
    """PySocks UDP echo, with the udpassociate [ - ] and udpreply - lines."""
    echo = rf"127\.0\.0\.1\.{origins.udp_echo_port}"
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, server.host, server.port)
        s.settimeout(TIMEOUT)
        s.sendto(b"ping", (origins.host, origins.udp_echo_port))
        assert s.recvfrom(100) == (b"ping", (origins.host, origins.udp_echo_port))
    # PySocks declares its address as the host name "0" and its UDP port.
    wait_log(server, r"pass\(2\): udp/udpassociate \[: 0\.\d+ 127\.0\.0\.1\.\d+$")
    wait_log(server, rf"pass\(2\): udp/udpassociate -: {LO} {LO} -> {LO} {echo} \(4\)$")
    wait_log(server, rf"pass\(3\): udp/udpreply -: {echo} {LO} -> {LO} {LO} \(4\)$")
    wait_log(
        server,
        rf"pass\(2\): udp/udpassociate \]: 14/1 -> {LO} {LO} -> 14/1, "
        rf"4/1 -> {LO} {echo} -> 4/1: local client closed\.  Session duration: \d+s$",
    )


def test_udp_blocked_destination_and_fragment(server: Server, origins: Origins) -> None:
    """A datagram to a blocked destination and one with FRAG=1 are dropped and
    logged the same way; the next good one passes."""
    with control(server) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        u.settimeout(TIMEOUT)
        c.sendall(b"\x05\x03\x00\x01" + b"\x00" * 6)
        code, ip, port = reply(c)
        assert code == 0
        echo = struct.pack("!H", origins.udp_echo_port)
        u.sendto(b"\x00\x00\x00\x01\x7f\x00\x00\x02" + echo + b"no", (ip, port))
        u.sendto(b"\x00\x00\x01\x01\x7f\x00\x00\x01" + echo + b"frag", (ip, port))
        good = b"\x00\x00\x00\x01\x7f\x00\x00\x01" + echo
        u.sendto(good + b"yes", (ip, port))
        assert u.recv(100) == good + b"yes"
    wait_log(server, r"block\(1\): udp/udpassociate -: .* 127\.0\.0\.2\.\d+$")
    wait_log(
        server,
        r"block\(2\): udp/udpassociate -: .* -> 0\.0\.0\.0\.0 127\.0\.0\.1\.\d+: "
        r"fragmented socks udp packets are not supported$",
    )
