"""BIND and UDP ASSOCIATE through the real `twistd dante`, with real clients.

PySocks UDP, Dante's socksify (``nc -u`` for UDP, ``ftp -A`` against the
pyftpdlib origin for BIND), and hand-written SOCKS bytes (RFC 1928 §4, §6,
§7; SOCKS 4 CD=2) for both BIND replies and the UDP header.  The proxy's log
proves socksified traffic went through it.  An association dies with its
control connection; a stranger's datagram is dropped.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import socks  # PySocks

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.origins import FTP_BODY, Origins
from tests.integration.raw_socks import recv_exact

pytestmark = pytest.mark.integration

Program = Callable[[str, str], str]
TIMEOUT = 10

#: Loopback clients may use every command; replies back to loopback pass.
RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0/0
  log: error connect disconnect
}
socks pass {
  from: 0/0 to: 0/0
  command: bind connect udpassociate
  log: error connect disconnect iooperation
}
socks pass {
  from: 0/0 to: 0/0
  command: bindreply udpreply
  log: error connect disconnect iooperation
}
"""


def v5_control(server: DantexServer) -> socket.socket:
    """A negotiated SOCKS5 control connection (no authentication)."""
    c = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    c.sendall(b"\x05\x01\x00")
    assert recv_exact(c, 2) == b"\x05\x00"
    return c


def v5_reply(c: socket.socket) -> tuple[int, str, int]:
    """RFC 1928 §6 reply with ATYP=1."""
    head = recv_exact(c, 4)
    assert head[0] == 5 and head[3] == 1, head
    rest = recv_exact(c, 6)
    return head[1], socket.inet_ntoa(rest[:4]), struct.unpack("!H", rest[4:])[0]


def bind_both_ways(server: DantexServer) -> None:
    """A hand-written BIND (RFC 1928 §4 CMD=2, DST 127.0.0.1:0): reply 1 is
    where to connect, reply 2 who connected; then 13 bytes from the peer,
    15 from the client, and the peer's half-close passed on."""
    with v5_control(server) as c:
        c.sendall(b"\x05\x02\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
        code, ip, port = v5_reply(c)
        assert (code, ip) == (0, "127.0.0.1") and port != 0
        with socket.create_connection((ip, port), timeout=TIMEOUT) as peer:
            assert v5_reply(c) == (0, *peer.getsockname())
            peer.sendall(b"from the peer")
            assert recv_exact(c, 13) == b"from the peer"
            c.sendall(b"from the client")
            assert recv_exact(peer, 15) == b"from the client"
            peer.shutdown(socket.SHUT_WR)
            assert c.recv(10) == b""


def udp_header(ip: str, port: int) -> bytes:
    """RFC 1928 §7: RSV RSV FRAG=0 ATYP=1 DST.ADDR DST.PORT."""
    return b"\x00\x00\x00\x01" + socket.inet_aton(ip) + struct.pack("!H", port)


def associate(c: socket.socket) -> tuple[str, int]:
    """UDP ASSOCIATE with DST 0.0.0.0:0; the relay address from the reply."""
    c.sendall(b"\x05\x03\x00\x01" + b"\x00" * 6)
    code, ip, port = v5_reply(c)
    assert code == 0
    return ip, port


def silent(sock: socket.socket, seconds: float = 1.0) -> bool:
    """Nothing arrives on ``sock`` within ``seconds``."""
    return not select.select([sock], [], [], seconds)[0]


def socks_conf(tmp_path: Path, server: DantexServer) -> dict[str, str]:
    """Environment for socksify through ``server`` (loopback not bypassed)."""
    conf = tmp_path / "socks.conf"
    conf.write_text(
        f"logoutput: {tmp_path}/socksify.log\n"
        "route {\n"
        f"  from: 0.0.0.0/0 to: 0.0.0.0/0 via: {server.host} port = {server.port}\n"
        "  proxyprotocol: socks_v5\n"
        "  command: connect bind udpassociate\n"
        "  method: none\n"
        "}\n"
    )
    return {**os.environ, "SOCKS_CONF": str(conf), "SOCKS_AUTOADD_LANROUTES": "no"}


def test_pysocks_udp_echo(dantex: RunDantex, origins: Origins) -> None:
    """PySocks' UDP socket reaches the UDP echo; dantex logs the association."""
    server = dantex(RULES)
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, server.host, server.port)
        s.settimeout(TIMEOUT)
        for n in range(3):
            s.sendto(b"udp-%d" % n, (origins.host, origins.udp_echo_port))
            data, peer = s.recvfrom(2048)
            assert data == b"udp-%d" % n
            assert peer == (origins.host, origins.udp_echo_port)
    echo = rf"127\.0\.0\.1\.{origins.udp_echo_port}"
    server.wait_for_log(rf"pass\(1\): udp/udpassociate -: .* {echo} \(5\)$")
    server.wait_for_log(rf"pass\(2\): udp/udpreply -: {echo} ")
    server.wait_for_log(
        rf"pass\(1\): udp/udpassociate \]: 45/3 -> .* -> 45/3, 15/3 -> "
        rf"127\.0\.0\.1\.\d+ {echo} -> 15/3: local client closed\."
    )


def test_socksify_nc_udp(
    dantex: RunDantex, origins: Origins, program: Program, tmp_path: Path
) -> None:
    """socksify nc -u gets its line echoed, and it went through dantex."""
    server = dantex(RULES)
    result = subprocess.run(
        [program("socksify", "dante-client"), program("nc", "netcat-openbsd"),
         "-u", "-w1", origins.host, str(origins.udp_echo_port)],
        input=b"hello over udp\n",
        env=socks_conf(tmp_path, server),
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert result.stdout == b"hello over udp\n", result.stderr
    server.wait_for_log(r"pass\(1\): udp/udpassociate \[: ")
    server.wait_for_log(rf"udp/udpreply -: 127\.0\.0\.1\.{origins.udp_echo_port} ")


def test_socksify_active_ftp_uses_bind(
    dantex: RunDantex, origins: Origins, program: Program, tmp_path: Path
) -> None:
    """socksify ftp -A gets the file; its data connection came through BIND."""
    server = dantex(RULES)
    out = tmp_path / "hello.txt"
    result = subprocess.run(
        [program("socksify", "dante-client"), program("ftp", "tnftp"), "-A", "-o",
         str(out), origins.ftp_url()],
        env=socks_conf(tmp_path, server),
        capture_output=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == FTP_BODY
    server.wait_for_log(r"pass\(1\): tcp/bind \[: ")
    server.wait_for_log(r"pass\(2\): tcp/bindreply \[: ")
    server.wait_for_log(rf"pass\(2\): tcp/bindreply \]: 0 -> .* -> {len(FTP_BODY)}, ")


def test_raw_socks5_bind_both_replies_and_data(dantex: RunDantex) -> None:
    """Hand-written BIND: reply 1 = where to connect, reply 2 = who connected,
    then bytes both ways and a half-close passed on."""
    server = dantex(RULES, settings="external: 127.0.0.1")
    bind_both_ways(server)
    server.wait_for_log(r"pass\(2\): tcp/bindreply \]: 15 -> .* -> 13, 13 -> ")


def test_raw_socks4_bind(dantex: RunDantex) -> None:
    """SOCKS 4 BIND: two CD=90 replies, then the relay."""
    server = dantex(RULES, settings="external: 127.0.0.1")
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as c:
        # VN=4 CD=2 DSTPORT=21 DSTIP=127.0.0.1 USERID="" NUL
        c.sendall(b"\x04\x02\x00\x15\x7f\x00\x00\x01\x00")
        first = recv_exact(c, 8)
        assert first[:2] == b"\x00\x5a" and first[4:] == b"\x7f\x00\x00\x01"
        port = struct.unpack("!H", first[2:4])[0]
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as peer:
            second = recv_exact(c, 8)
            pport = peer.getsockname()[1]
            assert second == b"\x00\x5a" + struct.pack("!H", pport) + first[4:]
            peer.sendall(b"v4")
            assert recv_exact(c, 2) == b"v4"


def test_raw_udp_header_both_ways(dantex: RunDantex, origins: Origins) -> None:
    """The §7 header: the echo gets the bare payload; the client gets it back
    behind a header naming the echo server."""
    server = dantex(RULES)
    with v5_control(server) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        relay = associate(c)
        assert relay[0] == "127.0.0.1"
        u.settimeout(TIMEOUT)
        head = udp_header(origins.host, origins.udp_echo_port)
        u.sendto(head + b"raw datagram", relay)
        data, source = u.recvfrom(2048)
        assert source == relay
        assert data == head + b"raw datagram"


def test_ipv6_destination(dantex: RunDantex, origins: Origins) -> None:
    """ATYP 4: an IPv6 destination gets its own external socket."""
    assert origins.udp_echo6_port is not None
    server = dantex(RULES)
    with v5_control(server) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        relay = associate(c)
        u.settimeout(TIMEOUT)
        head = (
            b"\x00\x00\x00\x04"
            + socket.inet_pton(socket.AF_INET6, "::1")
            + struct.pack("!H", origins.udp_echo6_port)
        )
        u.sendto(head + b"six", relay)
        assert u.recv(2048) == head + b"six"


def test_association_dies_with_its_control_connection(
    dantex: RunDantex, origins: Origins
) -> None:
    """Closing the TCP control connection ends the association: the relay's
    UDP port is released (we can bind it) and the end is logged."""
    server = dantex(RULES)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(TIMEOUT)
        with v5_control(server) as c:
            relay = associate(c)
            u.sendto(udp_header(origins.host, origins.udp_echo_port) + b"x", relay)
            assert u.recv(100).endswith(b"x")
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe,
                pytest.raises(OSError),
            ):
                probe.bind(relay)  # still in use while the control lives
        server.wait_for_log(r"udp/udpassociate \]: .*local client closed")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(relay)


def test_stranger_datagram_is_dropped(dantex: RunDantex, origins: Origins) -> None:
    """With DST 0.0.0.0:0 a datagram from another IP, even sent first, is not
    relayed (danted would adopt that sender as the client); the client's is."""
    server = dantex(RULES)
    head = udp_header(origins.host, origins.udp_echo_port)
    with (
        v5_control(server) as c,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        relay = associate(c)
        stranger.bind(("127.0.0.2", 0))
        stranger.sendto(head + b"reflect me", relay)
        assert silent(stranger)
        client.settimeout(TIMEOUT)
        client.sendto(head + b"mine", relay)
        assert client.recv(100) == head + b"mine"
        assert silent(stranger, 0.2)
    server.wait_for_log(r"127\.0\.0\.2\.\d+ .*other than the client's")


def test_wildcard_listener_replies_with_reachable_addresses(
    dantex: RunDantex, origins: Origins
) -> None:
    """Listening on 0.0.0.0 without external:, the UDP ASSOCIATE reply names
    the address the client connected to and BIND's a concrete one: never
    0.0.0.0, which a client cannot send to (a bug class of other servers)."""
    server = dantex(RULES, internal="internal: 0.0.0.0 port = 0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as c:
        c.sendall(b"\x05\x01\x00")
        assert recv_exact(c, 2) == b"\x05\x00"
        relay = associate(c)
        assert relay[0] == "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(TIMEOUT)
            head = udp_header(origins.host, origins.udp_echo_port)
            u.sendto(head + b"reachable", relay)
            assert u.recv(100) == head + b"reachable"
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as c:
        c.sendall(b"\x05\x01\x00")
        assert recv_exact(c, 2) == b"\x05\x00"
        c.sendall(b"\x05\x02\x00\x01" + socket.inet_aton("127.0.0.1") + b"\x00\x00")
        code, ip, port = v5_reply(c)
        assert code == 0 and ip != "0.0.0.0"
        with socket.create_connection((ip, port), timeout=TIMEOUT) as peer:
            assert v5_reply(c) == (0, *peer.getsockname())
