"""Socket options (read back with ss(8)) and compatibility: sameport on the
real server.

Linux reports a buffer set with SO_RCVBUF/SO_SNDBUF doubled (``rb``/``tb``
of ``ss -m``), and a socket whose size was set keeps it (no autotuning).
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading

import pytest
from python_socks.sync import Proxy

from tests.integration.conftest import RunDantex
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration

RULES = """\
client pass { from: 127.0.0.0/8 to: 0/0
  internal.socket.so_sndbuf: 24576 }
socks pass { from: 0/0 to: 0/0
  external.socket.so_rcvbuf: 20480 }
"""


def skmem(*selector: str) -> list[dict[str, int]]:
    """``skmem`` of the established TCP sockets ``selector`` picks."""
    out = subprocess.run(
        ["ss", "-tmnH", "state", "established", *selector],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return [
        {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", m)}
        for m in re.findall(r"skmem:\(([^)]*)\)", out)
    ]


def test_global_and_rule_socket_options_reach_both_connections(
    dantex: RunDantex, origins: Origins
) -> None:
    """internal.socket.so_rcvbuf (global) is inherited by the client's
    connection, the client-rule's so_sndbuf is set on it once it passed; the
    connection to the target gets the global external so_sndbuf and the
    socks-rule's so_rcvbuf."""
    server = dantex(
        RULES,
        settings="internal.socket.so_rcvbuf: 16384\nexternal.socket.so_sndbuf: 12288",
    )
    proxy = Proxy.from_url(f"socks5://{server.host}:{server.port}")
    sock = proxy.connect(dest_host="127.0.0.1", dest_port=origins.echo_port, timeout=10)
    with sock:
        sock.settimeout(10)
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        (client_side,) = skmem(f"( sport = :{server.port} )")
        (target_side,) = skmem(f"( dport = :{origins.echo_port} )")
    assert (client_side["rb"], client_side["tb"]) == (32768, 49152)
    assert (target_side["rb"], target_side["tb"]) == (40960, 24576)


def test_sameport_connects_from_the_clients_port(dantex: RunDantex) -> None:
    """compatibility: sameport -- curl connects from a port it chose; the
    target sees that port on dantex's external address (127.0.0.2)."""
    server = dantex(settings="external: 127.0.0.2\ncompatibility: sameport")
    with socket.create_server(("127.0.0.1", 0)) as target:
        target.settimeout(10)
        peers: list[tuple[str, int]] = []

        def serve() -> None:
            conn, peer = target.accept()
            with conn:
                peers.append(peer)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.socket() as probe:  # a port free on both addresses
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--local-port", str(port),
             "--socks5", f"{server.host}:{server.port}",
             f"http://127.0.0.1:{target.getsockname()[1]}/"],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        thread.join(15)
    assert out.returncode == 0 and out.stdout == b"ok", out.stderr
    assert peers == [("127.0.0.2", port)]
