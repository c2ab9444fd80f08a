"""UDP ASSOCIATE and BIND through a SOCKS 5 parent (danted), for real.

PySocks and hand-written RFC 1928 bytes talk to dantex; dantex relays the
client's association through its own with danted, and a BIND through
danted's listening socket.  danted's log proves the traffic went through it
(its ``udp/udpassociate`` and ``tcp/bind`` lines name our addresses).
"""

from __future__ import annotations

import socket
import time

import pytest
import socks  # PySocks

from tests.integration.conftest import RunDantex, StartPeer
from tests.integration.peers import Danted, run_danted
from tests.integration.peers.origins import Origins
from tests.integration.test_bind_udp import (
    RULES,
    associate,
    bind_both_ways,
    silent,
    udp_header,
    v5_control,
)

pytestmark = pytest.mark.integration

TIMEOUT = 10


def parent_route(parent: Danted, commands: str, extra: str = "") -> str:
    return (
        f"route {{\n  from: 0/0 to: 0/0\n  via: {parent.host} port = {parent.port}\n"
        f"  proxyprotocol: socks_v5\n  command: {commands}\n{extra}}}\n"
    )


def wait_for(predicate: object, what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` every 50 ms, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_pysocks_udp_through_danted(
    dantex: RunDantex, danted: Danted, origins: Origins
) -> None:
    """PySocks' datagrams reach the UDP echo through danted's relay and come
    back naming the echo server; danted logs the association and the
    datagrams, dantex the route taken."""
    server = dantex(RULES + parent_route(danted, "udpassociate"))
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, server.host, server.port)
        s.settimeout(TIMEOUT)
        for n in range(3):
            s.sendto(b"udp-%d" % n, (origins.host, origins.udp_echo_port))
            data, peer = s.recvfrom(2048)
            assert data == b"udp-%d" % n
            assert peer == (origins.host, origins.udp_echo_port)
    echo = f"127.0.0.1.{origins.udp_echo_port}"
    server.wait_for_log(r"udp/udpassociate -: .*serverchain: route #1 \(socks_v5 ")
    wait_for(
        lambda: (
            "udp/udpassociate -: " in danted.log_text() and echo in danted.log_text()
        ),
        "danted's udpassociate lines naming the echo server",
    )
    wait_for(lambda: "udp/udpreply" in danted.log_text(), "danted's udpreply lines")


def test_raw_datagrams_outside_the_route_are_dropped(
    dantex: RunDantex, danted: Danted, origins: Origins
) -> None:
    """The route's to: filters each destination: the echo port passes, another
    port is dropped with a log line; the client's control connection ending
    ends danted's association too."""
    route = (
        "route {\n  from: 0/0 to: 127.0.0.1/32 port = "
        f"{origins.udp_echo_port}\n  via: {danted.host} port = {danted.port}\n"
        "  proxyprotocol: socks_v5\n  command: udpassociate\n}\n"
    )
    server = dantex(RULES + route)
    with v5_control(server) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        relay = associate(c)
        u.settimeout(TIMEOUT)
        head = udp_header(origins.host, origins.udp_echo_port)
        u.sendto(head + b"inside", relay)
        data, source = u.recvfrom(2048)
        assert (data, source) == (head + b"inside", relay)
        u.sendto(udp_header(origins.host, origins.udp_echo_port + 1) + b"out", relay)
        assert silent(u, 0.5)
        server.wait_for_log(r"not covered by the to: of route #1")
    server.wait_for_log(r"udp/udpassociate \]: .*local client closed")
    wait_for(
        lambda: "udp/udpassociate ]" in danted.log_text(),
        "danted's end of its association",
    )


def test_udp_fails_over_to_the_second_parent(
    dantex: RunDantex, start_peer: StartPeer, origins: Origins
) -> None:
    """A dead first parent: the association is set up through the second."""
    dead = start_peer(run_danted)
    live = start_peer(run_danted)
    dead.stop()
    server = dantex(
        RULES + parent_route(dead, "udpassociate") + parent_route(live, "udpassociate")
    )
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.set_proxy(socks.SOCKS5, server.host, server.port)
        s.settimeout(TIMEOUT)
        s.sendto(b"again", (origins.host, origins.udp_echo_port))
        assert s.recvfrom(2048)[0] == b"again"
    server.wait_for_log(r"blacklisting route #1")
    wait_for(lambda: "udp/udpassociate" in live.log_text(), "the live parent's log")


def test_raw_bind_through_danted(dantex: RunDantex, danted: Danted) -> None:
    """BIND through danted: the first reply is danted's listening address,
    the second the peer that connected there; then bytes both ways."""
    server = dantex(RULES + parent_route(danted, "bind connect"))
    bind_both_ways(server)
    wait_for(lambda: "tcp/bindreply [" in danted.log_text(), "danted's bindreply")
    server.wait_for_log(r"tcp/bind -: .*serverchain: route #1")
    server.wait_for_log(r"tcp/bindreply \]: 15 -> .* -> 13, 13 -> ")
