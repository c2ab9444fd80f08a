"""dantex.client against dantex's own server (`twistd dante`): CONNECT with
SOCKS 5, SOCKS 4A and SOCKS 4, host names resolved by the server, and a chain
through two dantex servers."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import HostnameEndpoint

from dantex.client import (
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
    Socks5RefusedError,
    chain,
)
from tests.client._live import TIMEOUT, echo_through, live, reactor
from tests.integration.conftest import RunDantex
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration


@live
async def test_socks5_and_4a_names_reach_dantex(
    dantex: RunDantex, origins: Origins
) -> None:
    """Host names go to the server (remote resolution) over SOCKS 5 and 4A."""
    server = dantex()
    proxy = HostnameEndpoint(reactor, server.host, server.port, timeout=TIMEOUT)
    s5 = Socks5ClientEndpoint(proxy, "localhost", origins.echo_port)
    assert await echo_through(s5, b"five") == b"five"
    s4a = Socks4ClientEndpoint(proxy, "localhost", origins.echo_port)
    assert await echo_through(s4a, b"four-a") == b"four-a"
    server.wait_for_log(rf"tcp/connect \[: .* localhost\.{origins.echo_port}$")


@live
async def test_blocked_by_dantex_rules_is_reply_2(
    dantex: RunDantex, origins: Origins
) -> None:
    """A socks-rule block comes back as REP 2 (not allowed by ruleset)."""
    rules = """\
client pass { from: 127.0.0.0/8 to: 0/0 }
socks block { from: 0/0 to: 0/0 log: error }
"""
    server = dantex(rules)
    proxy = HostnameEndpoint(reactor, server.host, server.port, timeout=TIMEOUT)
    with pytest.raises(Socks5RefusedError) as e:
        await echo_through(
            Socks5ClientEndpoint(proxy, "127.0.0.1", origins.echo_port), b"x"
        )
    assert e.value.reply == 2


@live
async def test_chain_through_two_dantex_servers(
    dantex: RunDantex, origins: Origins
) -> None:
    """socks5 -> socks4a through two dantex servers, 1 MiB echoed intact."""
    first, second = dantex(), dantex()
    ep = chain(
        reactor,
        [
            f"socks5://{first.host}:{first.port}",
            f"socks4a://{second.host}:{second.port}",
        ],
        "127.0.0.1",
        origins.echo_port,
    )
    payload = bytes(range(256)) * 4096
    assert await echo_through(ep, payload) == payload
    first.wait_for_log(rf"tcp/connect \[: .* 127\.0\.0\.1\.{second.port}$")


@live
async def test_detached_socket_carries_the_tunnel(
    dantex: RunDantex, origins: Origins
) -> None:
    """detach_socket hands over the connected socket; the tunnel keeps working."""
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.threads import deferToThread

    from dantex.client import detach_socket

    server = dantex()
    proxy = HostnameEndpoint(reactor, server.host, server.port, timeout=TIMEOUT)
    ep = Socks5ClientEndpoint(proxy, "127.0.0.1", origins.echo_port)
    tunnel = await ep.connect_tunnel(Factory.forProtocol(Protocol))
    sock = detach_socket(tunnel)
    assert sock is not None

    def roundtrip() -> bytes:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
        with sock:
            sock.sendall(b"raw socket")
            sock.shutdown(1)
            chunks = []
            while data := sock.recv(100):
                chunks.append(data)
        return b"".join(chunks)

    assert await deferToThread(roundtrip) == b"raw socket"
