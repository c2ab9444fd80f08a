"""Socket options on the real server's sockets, read back with ss(8).

Linux reports a buffer set with SO_RCVBUF/SO_SNDBUF doubled (``rb``/``tb``
of ``ss -m``), and a socket whose size was set keeps it (no autotuning).
"""

from __future__ import annotations

import re
import subprocess

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
