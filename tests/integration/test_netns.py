"""Behaviour only a network namespace of our own can show for real.

Routes inside the namespace make the kernel answer a connect with "network
unreachable", "no route to host", or silence (a timeout); the embedded
default config is served on 127.0.0.1:1080, which only a fresh namespace
guarantees to be free.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.dantex_server import start_dantex
from tests.integration.netns import netns

pytestmark = pytest.mark.integration

RAW = str(Path(__file__).with_name("raw_socks.py"))
CONFIG = """
internal: 127.0.0.1 port = 0
socksmethod: none
timeout.connect: 1
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 127.0.0.0/8 to: 0/0
  log: connect disconnect error }
"""
ROUTES = [
    ["ip", "route", "add", "unreachable", "192.0.2.0/24"],  # -> EHOSTUNREACH
    ["ip", "route", "add", "10.98.0.0/24", "dev", "lo"],  # -> nobody answers
]
GREETING = "050100"


def socks5_connect(
    ns_exec: list[str], port: int, ip: str, dport: int = 80
) -> list[str]:
    """CONNECT from inside the namespace; the replies as hex strings."""
    a, b, c, d = (int(x) for x in ip.split("."))
    request = bytes((5, 1, 0, 1, a, b, c, d)) + dport.to_bytes(2, "big")
    out = subprocess.run(
        [
            *ns_exec,
            sys.executable,
            RAW,
            "127.0.0.1",
            str(port),
            GREETING,
            request.hex(),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize(
    ("target", "code", "logged"),
    [
        ("203.0.113.1", "03", "Network is unreachable"),
        ("192.0.2.1", "04", "No route to host"),
        ("10.98.0.5", "06", "connect timed out"),
    ],
)
def test_routing_failures_get_their_rfc1928_reply(
    tmp_path: Path, target: str, code: str, logged: str
) -> None:
    """ENETUNREACH -> X'03', EHOSTUNREACH -> X'04', timeout.connect -> X'06'."""
    with netns(ROUTES) as ns, start_dantex(CONFIG, tmp_path, prefix=ns.exec) as server:
        replies = socks5_connect(ns.exec, server.port, target)
        assert replies[0] == "0500"
        assert replies[1][:4] == "05" + code
        server.wait_for_log(rf"tcp/connect \]: .* {target}\.80: .*{logged}")


def test_embedded_default_serves_127_0_0_1_port_1080(tmp_path: Path) -> None:
    """`twistd -n dante` with no -c serves SOCKS on 127.0.0.1:1080 for loopback."""
    with netns() as ns:
        origin = subprocess.Popen(
            [*ns.exec, sys.executable, "-m", "http.server", "-b", "127.0.0.1", "8080"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (tmp_path / "hello.txt").write_text("hello through the default\n")
        try:
            with start_dantex(None, tmp_path / "srv", prefix=ns.exec) as server:
                assert (server.host, server.port) == ("127.0.0.1", 1080)
                out = subprocess.run(
                    [
                        *ns.exec,
                        "curl",
                        "-sS",
                        "--retry",
                        "5",
                        "--retry-connrefused",
                        "--retry-delay",
                        "0",
                        "--socks5",
                        "127.0.0.1:1080",
                        "http://127.0.0.1:8080/hello.txt",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                )
                assert out.stdout == "hello through the default\n"
                server.wait_for_log(r"pass\(1\): tcp/connect \]: .*127\.0\.0\.1\.8080")
        finally:
            origin.terminate()
            origin.wait(10)
