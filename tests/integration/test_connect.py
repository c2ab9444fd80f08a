"""CONNECT through the real `twistd dante`, driven by real clients.

curl (all four SOCKS modes), python-socks and PySocks against local origins;
IPv4, IPv6 and host name targets; 1 GiB each way with a checksum; half-close,
resets and backpressure; the RFC 1928 reply codes provoked for real.  Both
relays (splice and copy) run the byte-moving tests.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import socks  # PySocks
from python_socks.sync import Proxy

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.origins import INDEX_BODY, TRAILER, Origins, pattern
from tests.integration.raw_socks import exchange

pytestmark = pytest.mark.integration

GIB = 1 << 30
RELAYS = ["splice", "copy"]


def curl(
    mode: str, server: DantexServer, url: str, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            f"--{mode}",
            f"{server.host}:{server.port}",
            *extra,
            url,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def socks5_tunnel(
    server: DantexServer, host: str, port: int, timeout: float = 20
) -> socket.socket:
    """A blocking socket tunnelled through dantex with python-socks."""
    proxy = Proxy.from_url(f"socks5://{server.host}:{server.port}")
    sock: socket.socket = proxy.connect(dest_host=host, dest_port=port, timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("mode", ["socks4", "socks4a", "socks5", "socks5-hostname"])
def test_curl_every_socks_mode_fetches_the_same_page(
    dantex: RunDantex, origins: Origins, mode: str
) -> None:
    """curl's four SOCKS modes get what a direct fetch gets, and it is logged."""
    server = dantex()
    direct = subprocess.run(
        ["curl", "-sS", origins.http_url()], capture_output=True, check=True
    )
    proxied = curl(mode, server, origins.http_url())
    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout == direct.stdout == INDEX_BODY
    server.wait_for_log(
        rf"pass\(1\): tcp/connect \]: .* 127\.0\.0\.1\.{origins.http_port} -> "
    )


def test_hostname_target_is_resolved_by_the_server(
    dantex: RunDantex, origins: Origins
) -> None:
    """socks5-hostname to `localhost` makes the server resolve and connect."""
    server = dantex()
    out = curl(
        "socks5-hostname", server, f"http://localhost:{origins.http_port}/index.html"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == INDEX_BODY
    server.wait_for_log(rf"tcp/connect \[: .* localhost\.{origins.http_port}$")


def test_srchost_refuses_a_client_without_a_dns_name(
    dantex: RunDantex, origins: Origins
) -> None:
    """srchost: nodnsunknown nodnsmismatch, real lookups: curl from 127.0.0.1
    (named localhost, which resolves back to it) fetches the page; curl from
    127.0.0.3 (no name here) is dropped after its client-rule, and the log
    says why."""
    server = dantex(settings="srchost: nodnsunknown nodnsmismatch")
    named = curl("socks5", server, origins.http_url())
    assert named.returncode == 0, named.stderr
    assert named.stdout == INDEX_BODY
    nameless = curl("socks5", server, origins.http_url(), "--interface", "127.0.0.3")
    assert nameless.returncode != 0 and nameless.stdout == b""
    server.wait_for_log(
        rf"block\(1\): tcp/accept \]: 127\.0\.0\.3\.\d+ 127\.0\.0\.1\.{server.port}: "
        r"srchost: 127\.0\.0\.3 has no DNS name \(nodnsunknown\)"
    )


def test_socks4a_hostname_with_curl(dantex: RunDantex, origins: Origins) -> None:
    """SOCKS 4A (which danted lacks) reaches a host name target."""
    server = dantex()
    out = curl("socks4a", server, f"http://localhost:{origins.http_port}/index.html")
    assert out.returncode == 0, out.stderr
    assert out.stdout == INDEX_BODY


@pytest.mark.parametrize("url_scheme", ["socks5", "socks4"])
def test_python_socks_echo(
    dantex: RunDantex, origins: Origins, url_scheme: str
) -> None:
    """python-socks over SOCKS5 and SOCKS4 gets its bytes echoed."""
    server = dantex()
    proxy = Proxy.from_url(f"{url_scheme}://{server.host}:{server.port}")
    with proxy.connect(
        dest_host="127.0.0.1", dest_port=origins.echo_port, timeout=10
    ) as s:
        s.settimeout(10)
        s.sendall(b"python-socks says hi")
        assert s.recv(100) == b"python-socks says hi"


@pytest.mark.parametrize("kind", [socks.SOCKS5, socks.SOCKS4])
def test_pysocks_echo(dantex: RunDantex, origins: Origins, kind: int) -> None:
    """PySocks over SOCKS5 and SOCKS4 gets its bytes echoed."""
    server = dantex()
    s = socks.socksocket()
    s.settimeout(10)
    s.set_proxy(kind, server.host, server.port)
    try:
        s.connect(("127.0.0.1", origins.echo_port))
        s.sendall(b"pysocks says hi")
        assert s.recv(100) == b"pysocks says hi"
    finally:
        s.close()


def test_ipv6_target(dantex: RunDantex, origins: Origins) -> None:
    """An IPv6 literal target (::1) is reached and logged in Dante's form."""
    assert origins.echo6_port is not None
    server = dantex()
    with socks5_tunnel(server, "::1", origins.echo6_port) as s:
        s.sendall(b"over six")
        assert s.recv(100) == b"over six"
    server.wait_for_log(rf"tcp/connect \[: .* ::1\.{origins.echo6_port}$")


def test_ipv6_client_and_listener(dantex: RunDantex, origins: Origins) -> None:
    """dantex listens on ::1 too and serves IPv6 clients."""
    server = dantex(internal="internal: ::1 port = 0")
    assert server.host == "::1"
    proxy = Proxy.from_url(f"socks5://[::1]:{server.port}")
    with proxy.connect(
        dest_host="127.0.0.1", dest_port=origins.echo_port, timeout=10
    ) as s:
        s.settimeout(10)
        s.sendall(b"v6 client")
        assert s.recv(100) == b"v6 client"


@pytest.mark.parametrize("relay", RELAYS)
def test_one_gib_upload_arrives_intact(
    dantex: RunDantex, origins: Origins, relay: str
) -> None:
    """1 GiB sent through the proxy reaches the sink with the same SHA-256."""
    server = dantex(relay=relay)
    block = pattern(1 << 20)
    digest = hashlib.sha256()
    with socks5_tunnel(server, "127.0.0.1", origins.sink_port, timeout=60) as s:
        for _ in range(GIB // len(block)):
            s.sendall(block)
            digest.update(block)
        s.shutdown(socket.SHUT_WR)
        answer = recv_all(s)
    assert answer == f"{GIB} {digest.hexdigest()}\n".encode()


@pytest.mark.parametrize("relay", RELAYS)
def test_one_gib_download_arrives_intact(
    dantex: RunDantex, origins: Origins, relay: str
) -> None:
    """1 GiB from the source arrives through the proxy byte for byte."""
    server = dantex(relay=relay)
    expected = hashlib.sha256()
    block = pattern(251 * 4096)  # a whole number of the pattern's 251-byte periods
    whole, tail = divmod(GIB, len(block))
    for _ in range(whole):
        expected.update(block)
    expected.update(block[:tail])
    got = hashlib.sha256()
    n = 0
    with socks5_tunnel(server, "127.0.0.1", origins.source_port, timeout=60) as s:
        s.sendall(f"{GIB}\n".encode())
        while data := s.recv(1 << 20):
            got.update(data)
            n += len(data)
    assert n == GIB
    assert got.hexdigest() == expected.hexdigest()


@pytest.mark.parametrize("relay", RELAYS)
def test_half_close_both_ways(dantex: RunDantex, origins: Origins, relay: str) -> None:
    """The client's shutdown(SHUT_WR) reaches the target as EOF while the other
    direction keeps flowing; the target's later close reaches the client."""
    server = dantex(relay=relay)
    with socks5_tunnel(server, "127.0.0.1", origins.halfclose_port) as s:
        s.sendall(b"before eof")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"before eof" + TRAILER


@pytest.fixture
def one_shot_target() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A listening socket in the test; accepted connections land in the list."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(15)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener, accepted
    finally:
        thread.join(1)
        listener.close()
        for c in accepted:
            c.close()


def _wait_accepted(accepted: list[socket.socket]) -> socket.socket:
    deadline = time.monotonic() + 10
    while not accepted:
        assert time.monotonic() < deadline, "the proxy never connected to the target"
        time.sleep(0.01)
    return accepted[0]


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("relay", RELAYS)
@pytest.mark.parametrize(
    ("resetting", "words"),
    [("target", "remote peer error"), ("client", "local client error")],
)
def test_a_reset_reaches_the_other_side_as_a_reset(
    dantex: RunDantex,
    one_shot_target: tuple[socket.socket, list[socket.socket]],
    relay: str,
    resetting: str,
    words: str,
) -> None:
    """A reset from the target reaches the client as a reset, and one from
    the client the target; the end line says whose error it was."""
    listener, accepted = one_shot_target
    server = dantex(relay=relay)
    client = socks5_tunnel(server, "127.0.0.1", listener.getsockname()[1])
    target = _wait_accepted(accepted)
    target.settimeout(10)
    client.sendall(b"x")
    assert target.recv(1) == b"x"
    gone, other = (target, client) if resetting == "target" else (client, target)
    _reset(gone)
    with other, pytest.raises(ConnectionResetError):
        other.recv(10)
    server.wait_for_log(rf"tcp/connect \]: .*{words} \(Connection reset by peer\)")


@pytest.mark.parametrize("relay", RELAYS)
def test_slow_reader_does_not_make_the_proxy_buffer(
    dantex: RunDantex,
    one_shot_target: tuple[socket.socket, list[socket.socket]],
    relay: str,
) -> None:
    """A client that reads nothing stops the target within the kernel buffers
    plus one relay buffer: the proxy never queues the stream up itself."""
    listener, accepted = one_shot_target
    server = dantex(relay=relay)
    with socks5_tunnel(server, "127.0.0.1", listener.getsockname()[1]) as s:
        target = _wait_accepted(accepted)
        target.setblocking(False)
        block = b"z" * 65536
        pushed = 0
        stuck_since = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pushed < 512 << 20:
            try:
                pushed += target.send(block)
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 1.0:
                    break
                time.sleep(0.01)
        # loopback socket buffers are a few MiB each; the proxy adds one buffer
        assert pushed < 64 << 20, f"target pushed {pushed} bytes into a stalled reader"
        # and nothing was lost: the client can read everything that was pushed
        s.settimeout(20)
        got = 0
        while got < pushed:
            got += len(s.recv(1 << 20))
        assert got == pushed


# -- reply codes (RFC 1928 §6), provoked for real --------------------------------

GREETING = b"\x05\x01\x00"


def v5_request(cmd: int, atyp_addr: bytes, port: int) -> bytes:
    return bytes((5, cmd, 0)) + atyp_addr + port.to_bytes(2, "big")


def ipv4(ip: str) -> bytes:
    return b"\x01" + socket.inet_aton(ip)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connect_is_05(dantex: RunDantex) -> None:
    """A closed port answers X'05' (connection refused) and is logged."""
    server = dantex()
    port = closed_port()
    replies = exchange(
        server.host, server.port, [GREETING, v5_request(1, ipv4("127.0.0.1"), port)]
    )
    assert replies[0] == b"\x05\x00"
    assert replies[1][:2] == b"\x05\x05"
    server.wait_for_log(
        rf"127\.0\.0\.1\.{port}: remote peer error \(Connection refused\)"
    )


def test_external_log_level_error_logs_curls_refused_connect_again(
    dantex: RunDantex,
) -> None:
    """external.log.error.error: econnrefused -- curl to a closed port: the
    failure is logged at info (log: error) and again at level error."""
    server = dantex(settings="external.log.error.error: econnrefused")
    port = closed_port()
    out = curl("socks5", server, f"http://127.0.0.1:{port}/")
    assert out.returncode != 0
    again = server.wait_for_log(
        rf"\]: error: pass\(1\): tcp/connect \]: .* 127\.0\.0\.1\.{port}: "
        r"remote peer error \(Connection refused\)"
    )
    assert again is not None
    assert re.search(
        rf"\]: info: pass\(1\): tcp/connect \]: .* 127\.0\.0\.1\.{port}: remote",
        server.log_text(),
    )


def test_tcp_option_log_levels_report_a_curl_session(
    dantex: RunDantex, origins: Origins
) -> None:
    """internal.log.notice.tcp.enabled: sack and external.log.warning
    .tcp.disabled: ecn -- loopback connections negotiate SACK and (with
    net.ipv4.tcp_ecn at its default) no ECN: both lines, at their levels."""
    ecn = Path("/proc/sys/net/ipv4/tcp_ecn").read_text().strip()
    assert ecn != "1", "this test expects connections to negotiate no ECN"
    server = dantex(
        settings="internal.log.notice.tcp.enabled: sack\n"
        "external.log.warning.tcp.disabled: ecn"
    )
    out = curl("socks5", server, origins.http_url())
    assert out.returncode == 0 and out.stdout == INDEX_BODY
    server.wait_for_log(
        r"\]: notice: pass\(1\): tcp/connect -: .*: TCP options negotiated on "
        r"the internal side: sack"
    )
    server.wait_for_log(
        r"\]: warning: pass\(1\): tcp/connect -: .*: TCP options not "
        r"negotiated on the external side: ecn"
    )


def test_rule_block_is_02(dantex: RunDantex, origins: Origins) -> None:
    """A socks block rule answers X'02' and logs which rule blocked."""
    rules = (
        "client pass { from: 127.0.0.0/8 to: 0/0\n log: error disconnect }\n"
        f"socks block {{ from: 0/0 to: 127.0.0.1/32 port = {origins.echo_port}\n"
        " log: connect }\n"
        "socks pass { from: 0/0 to: 0/0 }\n"
    )
    server = dantex(rules)
    replies = exchange(
        server.host,
        server.port,
        [GREETING, v5_request(1, ipv4("127.0.0.1"), origins.echo_port)],
    )
    assert replies[1][:2] == b"\x05\x02"
    server.wait_for_log(r"block\(1\): tcp/connect \]:")
    server.wait_for_log(r"blocked by higher-level socks-rule #1")


def test_unknown_command_is_07_and_unknown_atyp_is_08(dantex: RunDantex) -> None:
    """An unknown CMD gets X'07' and an unknown ATYP X'08' (danted just closes)."""
    server = dantex()
    r = exchange(
        server.host, server.port, [GREETING, v5_request(9, ipv4("127.0.0.1"), 80)]
    )
    assert r[1][:2] == b"\x05\x07"
    r = exchange(
        server.host, server.port, [GREETING, b"\x05\x01\x00\x07" + b"\x00" * 6]
    )
    assert r[1][:2] == b"\x05\x08"


def test_ipv6_target_without_ipv6_external_is_08(
    dantex: RunDantex, origins: Origins
) -> None:
    """With only an IPv4 external address, an IPv6 target gets X'08' (as danted)."""
    assert origins.echo6_port is not None
    server = dantex(settings="external: 127.0.0.1")
    v6 = b"\x04" + socket.inet_pton(socket.AF_INET6, "::1")
    r = exchange(
        server.host, server.port, [GREETING, v5_request(1, v6, origins.echo6_port)]
    )
    assert r[1][:2] == b"\x05\x08"
    server.wait_for_log(r"no IPv6 address configured for our usage")


def test_unresolvable_name_is_04(dantex: RunDantex) -> None:
    """A name that does not resolve gets X'04' (host unreachable)."""
    server = dantex()
    name = b"no-such-host.invalid"
    r = exchange(
        server.host,
        server.port,
        [GREETING, v5_request(1, b"\x03" + bytes((len(name),)) + name, 80)],
    )
    assert r[1][:2] == b"\x05\x04"


def test_connect_to_the_proxy_itself_is_02(dantex: RunDantex) -> None:
    """A CONNECT back to dantex's own listening address is refused with X'02'."""
    server = dantex()
    r = exchange(
        server.host,
        server.port,
        [GREETING, v5_request(1, ipv4("127.0.0.1"), server.port)],
    )
    assert r[1][:2] == b"\x05\x02"
    server.wait_for_log(r"same address we listen to")


def test_no_acceptable_method_is_ff(dantex: RunDantex) -> None:
    """Offering only username/password to a `socksmethod: none` server gets X'FF'."""
    server = dantex()
    r = exchange(server.host, server.port, [b"\x05\x01\x02"])
    assert r[0] == b"\x05\xff"


def test_socks4_failure_is_91(dantex: RunDantex) -> None:
    """SOCKS 4 gets CD=91 for a refused connect."""
    server = dantex()
    port = closed_port()
    r = exchange(
        server.host,
        server.port,
        [
            b"\x04\x01"
            + port.to_bytes(2, "big")
            + socket.inet_aton("127.0.0.1")
            + b"\x00"
        ],
    )
    assert r[0][:2] == b"\x00\x5b"


def test_silent_client_is_closed_after_negotiate_timeout(dantex: RunDantex) -> None:
    """A client that sends nothing is disconnected after timeout.negotiate."""
    server = dantex(settings="timeout.negotiate: 1")
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(10) == b""
        assert 0.5 < time.monotonic() - started < 8
    server.wait_for_log(r"negotiation timed out after 1s")


def test_idle_session_is_closed_after_io_timeout(
    dantex: RunDantex, origins: Origins
) -> None:
    """An established session idle for timeout.io is closed and the reason logged."""
    server = dantex(settings="timeout.io: 1")
    with socks5_tunnel(server, "127.0.0.1", origins.echo_port) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        started = time.monotonic()
        assert s.recv(10) in (b"",)
        assert 0.5 < time.monotonic() - started < 8
    server.wait_for_log(r"i/o timeout")
