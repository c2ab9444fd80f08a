"""PROXY protocol on a real dantex listener: trusted and untrusted peers,
v1 and v2 written by hand (proxy-protocol.txt §2.1, §2.2), and HAProxy's own
``send-proxy`` (v1)."""

from __future__ import annotations

import re
import socket
import time
from contextlib import ExitStack

import pytest

from tests.integration.conftest import RunDantex, under_policy
from tests.integration.dantex_server import DantexServer
from tests.integration.peers import Origins, run_haproxy

pytestmark = pytest.mark.integration

SETTINGS = """\
internal.proxyprotocol: v1 v2
internal.proxyprotocol.from: 127.0.0.1/32
"""
RULES = """\
client pass { from: 127.0.0.0/8 to: 0/0 log: error connect disconnect }
client pass { from: 198.51.100.0/24 to: 0/0 log: error connect disconnect }
socks pass { from: 0/0 to: 0/0 log: error connect disconnect }
"""
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def session(server: DantexServer, source: str, first: bytes, echo_port: int) -> bytes:
    """Send ``first`` then a SOCKS 5 CONNECT to the echo origin; return all
    the server sent back (b"" when it closed at once)."""
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect((server.host, server.port))
        request = b"\x05\x01\x00" + b"\x05\x01\x00\x01\x7f\x00\x00\x01"
        s.sendall(first + request + echo_port.to_bytes(2, "big") + b"hi\n")
        got = b""
        for _ in range(16):  # bounded: 2 + 10 + 3 bytes arrive in a few reads
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
            if got.endswith(b"hi\n"):
                break
        return got


def wait_log(server: DantexServer, pattern: str) -> None:
    server.wait_for_log(pattern, timeout=5)


def test_trusted_headers_give_the_client(dantex: RunDantex, origins: Origins) -> None:
    """v1 and v2 from a trusted peer: the session is the header's client,
    client-rules decide on it."""
    s = dantex(RULES, settings=SETTINGS)
    v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 1080\r\n"
    assert session(s, "127.0.0.1", v1, origins.echo_port).endswith(b"hi\n")
    wait_log(s, r"pass\(2\): tcp/accept \[: 198\.51\.100\.7\.40001 ")
    v2 = SIG + b"\x21\x11\x00\x0c" + bytes([198, 51, 100, 8, 127, 0, 0, 1])
    v2 += (40002).to_bytes(2, "big") + (1080).to_bytes(2, "big")
    assert session(s, "127.0.0.1", v2, origins.echo_port).endswith(b"hi\n")
    wait_log(s, r"pass\(1\): tcp/connect \[: 198\.51\.100\.8\.40002 ")
    # a source no client-rule passes: closed without a reply
    v2_blocked = SIG + b"\x21\x11\x00\x0c" + bytes([203, 0, 113, 9, 127, 0, 0, 1])
    v2_blocked += (40003).to_bytes(2, "big") + (1080).to_bytes(2, "big")
    assert session(s, "127.0.0.1", v2_blocked, origins.echo_port) == b""
    wait_log(s, r"block\(0\): tcp/accept \]: 203\.0\.113\.9\.40003 ")
    # LOCAL (a health check) is served as the peer itself
    local = SIG + b"\x20\x00\x00\x00"
    assert session(s, "127.0.0.1", local, origins.echo_port).endswith(b"hi\n")


def test_refusals_are_logged(dantex: RunDantex, origins: Origins) -> None:
    """Untrusted peer with a header, trusted peer without one, or closing
    early: closed and logged; an untrusted peer without a header is served."""
    s = dantex(RULES, settings=SETTINGS)
    v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 1080\r\n"
    assert session(s, "127.0.0.2", v1, origins.echo_port) == b""
    wait_log(
        s,
        r"127\.0\.0\.2\.\d+ 127\.0\.0\.1\.\d+: PROXY protocol header from a "
        r"source not in internal\.proxyprotocol\.from; connection refused",
    )
    assert session(s, "127.0.0.1", b"", origins.echo_port) == b""
    wait_log(
        s,
        r"127\.0\.0\.1\.\d+ 127\.0\.0\.1\.\d+: no PROXY protocol header from a "
        r"trusted source; connection refused",
    )
    assert session(s, "127.0.0.2", b"", origins.echo_port).endswith(b"hi\n")
    with socket.create_connection((s.host, s.port), timeout=5) as c:
        c.sendall(SIG[:6])
    wait_log(s, r"closed before sending a PROXY protocol header")
    assert "Traceback" not in s.log_text()


def test_haproxy_send_proxy_v1(dantex: RunDantex, origins: Origins) -> None:
    """HAProxy's ``send-proxy`` (v1) line: the node logs our address and port."""
    s = dantex(
        RULES,
        settings="internal.proxyprotocol: v1\ninternal.proxyprotocol.from: 127.0.0.1\n",
    )
    body = (
        "frontend fe\n  bind 127.0.0.1:$port\n  default_backend be\n"
        f"backend be\n  server n1 127.0.0.1:{s.port} send-proxy\n"
    )
    with ExitStack() as stack:
        ha = under_policy(lambda: stack.enter_context(run_haproxy(body)))
        with socket.socket() as c:
            c.settimeout(10)
            c.bind(("127.0.0.2", 0))
            c.connect(("127.0.0.1", ha.port))
            port = c.getsockname()[1]
            c.sendall(b"\x05\x01\x00")
            assert c.recv(2) == b"\x05\x00"
        deadline = time.monotonic() + 5
        while not re.search(rf"127\.0\.0\.2\.{port} ", s.log_text()):
            assert time.monotonic() < deadline, s.log_text()[-2000:]
            time.sleep(0.05)
