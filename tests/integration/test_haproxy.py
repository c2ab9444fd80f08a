"""HAProxy in front of two dantex nodes: PROXY v2, external checks by
``dantex probe``, fail-over and recovery.

The haproxy configuration is ``conf/haproxy.cfg`` itself (its addresses and
check command swapped for the test's), the check command ``conf/dantex-check``
(pointed at this checkout).  Every wait is bounded in count and time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import under_policy
from tests.integration.dantex_server import REPO, DantexServer, start_dantex
from tests.integration.peers import Haproxy, Origins, run_haproxy
from tests.integration.raw_socks import recv_upto

pytestmark = pytest.mark.integration

NODE = """\
internal: 127.0.0.1 port = {port}
internal.proxyprotocol: v2
internal.proxyprotocol.from: 127.0.0.1/32
socksmethod: none
client pass {{ from: 127.0.0.0/8 to: 0/0 log: error connect disconnect }}
socks block {{ from: 127.0.0.2/32 to: 0/0 log: connect error }}
socks pass {{ from: 0/0 to: 0/0 log: error connect disconnect }}
"""
#: one process per node, so SIGKILL takes the whole node down
ONE = ("--workers", "1")
#: lines of conf/haproxy.cfg the fixture replaces with its own
_FIXTURE_OWNS = re.compile(r"^\s*(log /dev/log|stats socket)\b.*$", re.M)


@contextmanager
def socks_connect(
    port: int, target: tuple[str, int], source: str = "127.0.0.1"
) -> Iterator[tuple[socket.socket, int, bytes]]:
    """A SOCKS 5 CONNECT through haproxy from ``source``: (socket, our port,
    the reply).  RFC 1928 bytes by hand: greeting 05 01 00, request IPv4."""
    sock = socket.socket()
    sock.settimeout(10)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"\x05\x01\x00")
        assert recv_upto(sock, 2) == b"\x05\x00"
        sock.sendall(
            b"\x05\x01\x00\x01"
            + socket.inet_aton(target[0])
            + target[1].to_bytes(2, "big")
        )
        yield sock, sock.getsockname()[1], recv_upto(sock, 10)
    finally:
        sock.close()


def echo_through(port: int, origins: Origins) -> int:
    """One session through haproxy to the echo origin; returns our port."""
    with socks_connect(port, ("127.0.0.1", origins.echo_port)) as (s, sport, reply):
        assert reply[:2] == b"\x05\x00", reply
        s.sendall(b"ping\n")
        assert recv_upto(s, 5) == b"ping\n"
        return sport


def served_by(
    nodes: dict[str, DantexServer], sport: int, timeout: float = 5.0
) -> str | None:
    """Which node logged the client port ``sport`` (the real client's); logs
    are written a moment later, so poll (every 50 ms, ``timeout`` at most)."""
    deadline = time.monotonic() + timeout
    while True:
        for name, node in nodes.items():
            if f"127.0.0.1.{sport} " in node.log_text():
                return name
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def haproxy_config(node_ports: tuple[int, int], check: Path) -> str:
    text = (REPO / "conf" / "haproxy.cfg").read_text().replace("$", "$$")
    text = _FIXTURE_OWNS.sub("", text)
    text = text.replace("127.0.0.1:1080", "127.0.0.1:$port")
    text = text.replace("127.0.0.1:1081", f"127.0.0.1:{node_ports[0]}")
    text = text.replace("127.0.0.1:1082", f"127.0.0.1:{node_ports[1]}")
    return text.replace("/usr/local/bin/dantex-check", str(check))


def check_script(directory: Path) -> Path:
    """conf/dantex-check, running the probe from this checkout."""
    text = (REPO / "conf" / "dantex-check").read_text()
    assert "exec dantex-probe " in text
    text = text.replace(
        "exec dantex-probe ",
        f"PYTHONPATH={REPO} exec {sys.executable} -m dantex probe ",
    )
    path = directory / "dantex-check"
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_haproxy_two_nodes(tmp_path: Path, origins: Origins) -> None:
    """Rules and logs see the real client through PROXY v2; a killed node is
    taken out by the probe's checks with no failed connection after; a
    restarted node takes traffic again."""
    with ExitStack() as stack:
        node_stacks = {name: stack.enter_context(ExitStack()) for name in ("1", "2")}
        nodes: dict[str, DantexServer] = {}
        for name, ns in node_stacks.items():
            nodes[name] = ns.enter_context(
                start_dantex(
                    NODE.format(port=0), tmp_path / f"node{name}", extra_args=ONE
                )
            )
        ports = (nodes["1"].port, nodes["2"].port)
        config = haproxy_config(ports, check_script(tmp_path))
        ha: Haproxy = under_policy(lambda: stack.enter_context(run_haproxy(config)))
        for name in ("node1", "node2"):
            ha.wait_server_state("dantex", name, "UP", timeout=20)

        # the real client's address and port, in rules and logs
        target = ("127.0.0.1", origins.echo_port)
        with ExitStack() as held:  # leastconn: the second goes to the idle node
            sports = []
            for _ in range(2):
                s, sport, reply = held.enter_context(socks_connect(ha.port, target))
                assert reply[:2] == b"\x05\x00", reply
                s.sendall(b"ping\n")
                assert recv_upto(s, 5) == b"ping\n"
                sports.append(sport)
            owners = {served_by(nodes, sport) for sport in sports}
        assert owners == {"1", "2"}, (owners, ha.log_text()[-2000:])
        with socks_connect(ha.port, target, source="127.0.0.2") as (_s, sport, reply):
            assert reply[:2] == b"\x05\x02", reply  # not allowed by ruleset
        blocked = rf"block\(1\): tcp/connect \]: 127\.0\.0\.2\.{sport} "
        deadline = time.monotonic() + 5
        while not any(re.search(blocked, n.log_text()) for n in nodes.values()):
            assert time.monotonic() < deadline, "the block was not logged"
            time.sleep(0.05)

        # node 2 dies: once haproxy marks it down, no connection fails
        os.kill(nodes["2"].pid, signal.SIGKILL)
        ha.wait_server_state("dantex", "node2", "DOWN", timeout=20)
        node_stacks["2"].close()
        for _ in range(15):
            assert served_by(nodes, echo_through(ha.port, origins)) == "1"

        # node 2 back on its port: it takes traffic again
        nodes["2"] = node_stacks["2"].enter_context(
            start_dantex(
                NODE.format(port=ports[1]), tmp_path / "node2-again", extra_args=ONE
            )
        )
        ha.wait_server_state("dantex", "node2", "UP", timeout=20)
        deadline = time.monotonic() + 20
        with ExitStack() as held:  # leastconn: held sessions push new ones over
            for _ in range(10):
                _s, sport, reply = held.enter_context(socks_connect(ha.port, target))
                assert reply[:2] == b"\x05\x00"
                if served_by({"2": nodes["2"]}, sport, timeout=1) == "2":
                    break
                assert time.monotonic() < deadline
            else:
                pytest.fail("the restarted node took no connection")
        assert "PROXY" not in nodes["1"].log_text()  # no refused header anywhere
