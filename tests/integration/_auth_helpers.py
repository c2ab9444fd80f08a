"""Shared pieces of the authentication integration tests."""

from __future__ import annotations

import subprocess

from python_socks import ProxyError
from python_socks.sync import Proxy

from tests.integration.dantex_server import DantexServer

#: Client-rule and socks-rule logging everything, for the auth tests.
LOGGED_RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0/0
  log: error connect disconnect
}
socks pass {
  from: 0/0 to: 0/0
  log: error connect disconnect
}
"""


def curl_user(
    server: DantexServer, url: str, user: str, password: str, mode: str = "socks5"
) -> subprocess.CompletedProcess[bytes]:
    """curl through ``server`` with ``--proxy-user``."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", f"--{mode}",
         f"{server.host}:{server.port}", "--proxy-user", f"{user}:{password}", url],
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip


def python_socks_ok(
    server: DantexServer, host: str, port: int, user: str, password: str
) -> bool:
    """Whether python-socks gets a tunnel with these credentials (echo checked)."""
    proxy = Proxy.from_url(f"socks5://{user}:{password}@{server.host}:{server.port}")
    try:
        sock = proxy.connect(dest_host=host, dest_port=port, timeout=20)
    except ProxyError:
        return False
    with sock:
        sock.settimeout(20)
        sock.sendall(b"ping")
        return sock.recv(4) == b"ping"
