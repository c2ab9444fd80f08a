"""UDP ASSOCIATE and BIND through the real danted, with dantex's client API."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from dantex.client import Socks5ClientEndpoint, bind, udp_associate
from dantex.protocol.address import Address
from tests.client._live import TIMEOUT, Collect, live, reactor
from tests.integration.peers import Danted, Microsocks
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration


def proxy(danted: Danted) -> HostnameEndpoint:
    return HostnameEndpoint(reactor, danted.host, danted.port, timeout=TIMEOUT)


@live
async def test_udp_echo_through_danted(danted: Danted, origins: Origins) -> None:
    """Datagrams to the UDP echo come back unwrapped, from the echo's address."""
    assoc = await udp_associate(reactor, proxy(danted)).addTimeout(TIMEOUT, reactor)
    try:
        for i in range(3):  # several datagrams on one association
            got = assoc.receive().addTimeout(TIMEOUT, reactor)
            assoc.sendto(b"ping %d" % i, "127.0.0.1", origins.udp_echo_port)
            data, source = await got
            assert data == b"ping %d" % i
            assert source == Address.from_host("127.0.0.1", origins.udp_echo_port)
    finally:
        assoc.close()
    await assoc.closed
    assert "udp/udpassociate" in danted.log_text()


@live
async def test_udp_with_username_password(
    danted_userpass: Danted, origins: Origins
) -> None:
    """UDP ASSOCIATE after RFC 1929 authentication."""
    d = danted_userpass
    assert d.username is not None and d.password is not None
    assoc = await udp_associate(
        reactor, proxy(d), credentials=(d.username, d.password)
    ).addTimeout(TIMEOUT, reactor)
    got = assoc.receive().addTimeout(TIMEOUT, reactor)
    assoc.sendto(b"authed datagram", "localhost", origins.udp_echo_port)
    assert (await got)[0] == b"authed datagram"
    assoc.close()


@live
async def test_udp_refused_by_microsocks(microsocks: Microsocks) -> None:
    """microsocks answers UDP ASSOCIATE with REP 7, a typed refusal."""
    from dantex.client import Socks5RefusedError

    ep = HostnameEndpoint(reactor, microsocks.host, microsocks.port)
    with pytest.raises(Socks5RefusedError) as e:
        await udp_associate(reactor, ep).addTimeout(TIMEOUT, reactor)
    assert e.value.reply == 7


@live
@pytest.mark.parametrize("version", [5, 4])
async def test_bind_through_danted(danted: Danted, version: int) -> None:
    """BIND: the bound address, then a peer connects there, then data both ways."""
    to_peer = b"hello peer"
    ours = Collect(to_peer, len(b"hello binder"))
    pending = await bind(
        proxy(danted),
        "127.0.0.1",
        0,
        Factory.forProtocol(lambda: ours),
        version=version,  # type: ignore[arg-type]
        reactor=reactor,
        accept_timeout=TIMEOUT,
    ).addTimeout(TIMEOUT, reactor)
    assert pending.bound.host == "127.0.0.1" and pending.bound.port != 0
    peer = Collect(b"hello binder", len(to_peer))
    await TCP4ClientEndpoint(reactor, "127.0.0.1", pending.bound.port).connect(
        Factory.forProtocol(lambda: peer)
    )
    tunnel = await pending.connected.addTimeout(TIMEOUT, reactor)
    assert tunnel.bound is not None and tunnel.bound.host == "127.0.0.1"
    assert await peer.done.addTimeout(TIMEOUT, reactor) == to_peer
    assert await ours.done.addTimeout(TIMEOUT, reactor) == b"hello binder"
    assert "tcp/bindreply" in danted.log_text() or "bindreply" in danted.log_text()


@live
async def test_socks5_connect_then_bind_on_the_same_proxy(
    danted: Danted, origins: Origins
) -> None:
    """CONNECT and a pending BIND coexist; cancelling the BIND cleans up."""
    from tests.client._live import echo_through

    pending = await bind(
        proxy(danted), "127.0.0.1", 0, Factory.forProtocol(Protocol)
    ).addTimeout(TIMEOUT, reactor)
    ep = Socks5ClientEndpoint(proxy(danted), "127.0.0.1", origins.echo_port)
    assert await echo_through(ep, b"meanwhile") == b"meanwhile"
    pending.cancel()
    done: Deferred[None] = Deferred()
    pending.connected.addErrback(lambda f: done.callback(None))
    await done.addTimeout(TIMEOUT, reactor)
