"""dantex.client against real proxies on loopback: danted and microsocks (SOCKS 5,
with and without RFC 1929), danted (SOCKS 4), tinyproxy and squid (HTTP CONNECT
with Basic auth), and chains of mixed hops."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.web.client import Agent, readBody

from dantex.client import (
    HTTPConnectEndpoint,
    HTTPProxyAuthenticationError,
    HTTPProxyRefusedError,
    NoAcceptableMethodError,
    ProxyAgentEndpointFactory,
    ProxyAuthenticationError,
    ProxyConnectError,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
    Socks5RefusedError,
    chain,
)
from tests.client._live import TIMEOUT, echo_through, live, reactor
from tests.integration.conftest import PROXY_PASSWORD, PROXY_USER
from tests.integration.peers import (
    Danted,
    Microsocks,
    Squid,
    Tinyproxy,
    free_port,
)
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


def tcp(host: str, port: int) -> HostnameEndpoint:
    return HostnameEndpoint(reactor, host, port, timeout=TIMEOUT)


@live
async def test_socks5_to_danted_ip_and_name(danted: Danted, origins: Origins) -> None:
    """SOCKS 5 CONNECT through danted to an IPv4 target and to 'localhost'."""
    for host in ("127.0.0.1", "localhost"):
        ep = Socks5ClientEndpoint(
            tcp(danted.host, danted.port), host, origins.echo_port
        )
        assert await echo_through(ep, b"through danted") == b"through danted"


@live
async def test_socks5_userpass_with_danted(
    danted_userpass: Danted, origins: Origins
) -> None:
    """RFC 1929 with danted: right password passes, a wrong one and none fail typed."""
    d = danted_userpass
    assert d.username is not None and d.password is not None
    proxy = tcp(d.host, d.port)
    good = Socks5ClientEndpoint(
        proxy, "127.0.0.1", origins.echo_port, (d.username, d.password)
    )
    assert await echo_through(good, b"authed") == b"authed"
    bad = Socks5ClientEndpoint(
        proxy, "127.0.0.1", origins.echo_port, (d.username, "wrong")
    )
    with pytest.raises(ProxyAuthenticationError):
        await echo_through(bad, b"x")
    none = Socks5ClientEndpoint(proxy, "127.0.0.1", origins.echo_port)
    with pytest.raises(NoAcceptableMethodError):
        await echo_through(none, b"x")


@live
async def test_socks5_userpass_with_microsocks(
    microsocks_userpass: Microsocks, origins: Origins
) -> None:
    """RFC 1929 with microsocks, host name sent to the proxy."""
    m = microsocks_userpass
    ep = Socks5ClientEndpoint(
        tcp(m.host, m.port),
        "localhost",
        origins.echo_port,
        (PROXY_USER, PROXY_PASSWORD),
    )
    assert await echo_through(ep, b"micro") == b"micro"


@live
async def test_socks4_to_danted(danted: Danted, origins: Origins) -> None:
    """Plain SOCKS 4 (danted has no 4A): a name resolved locally reaches the echo."""
    ep = Socks4ClientEndpoint(
        tcp(danted.host, danted.port),
        "localhost",
        origins.echo_port,
        "someone",
        resolve="local",
        reactor=reactor,
    )
    assert await echo_through(ep, b"four") == b"four"


@live
async def test_danted_refusal_carries_the_reply_code(danted: Danted) -> None:
    """A closed target port comes back as REP 5 (connection refused)."""
    ep = Socks5ClientEndpoint(tcp(danted.host, danted.port), "127.0.0.1", free_port())
    with pytest.raises(Socks5RefusedError) as e:
        await echo_through(ep, b"x")
    assert e.value.reply == 5


@live
async def test_unreachable_proxy_is_a_connect_error() -> None:
    """Nothing listening at the proxy's address: ProxyConnectError."""
    ep = Socks5ClientEndpoint(tcp("127.0.0.1", free_port()), "127.0.0.1", 9)
    with pytest.raises(ProxyConnectError):
        await echo_through(ep, b"x")


@live
async def test_tinyproxy_basic_auth(
    tinyproxy_auth: Tinyproxy, origins: Origins
) -> None:
    """HTTP CONNECT with Basic credentials through tinyproxy; without them, 407."""
    proxy = tcp(tinyproxy_auth.host, tinyproxy_auth.port)
    ep = HTTPConnectEndpoint(
        proxy, "127.0.0.1", origins.echo_port, (PROXY_USER, PROXY_PASSWORD)
    )
    assert await echo_through(ep, b"tiny") == b"tiny"
    with pytest.raises(HTTPProxyAuthenticationError) as e:
        await echo_through(
            HTTPConnectEndpoint(proxy, "127.0.0.1", origins.echo_port), b"x"
        )
    assert e.value.status == 407


@live
async def test_squid_basic_auth_and_refusal(
    squid_auth: Squid, squid: Squid, origins: Origins
) -> None:
    """squid: Basic auth works, a wrong password is 407, a closed port is 503."""
    proxy = tcp(squid_auth.host, squid_auth.port)
    ep = HTTPConnectEndpoint(
        proxy, "localhost", origins.echo_port, (PROXY_USER, PROXY_PASSWORD)
    )
    assert await echo_through(ep, b"squid") == b"squid"
    wrong = HTTPConnectEndpoint(
        proxy, "127.0.0.1", origins.echo_port, (PROXY_USER, "nope")
    )
    with pytest.raises(HTTPProxyAuthenticationError):
        await echo_through(wrong, b"x")
    closed = HTTPConnectEndpoint(tcp(squid.host, squid.port), "127.0.0.1", free_port())
    with pytest.raises(HTTPProxyRefusedError) as e:
        await echo_through(closed, b"x")
    assert e.value.status == 503


@live
async def test_three_mixed_hops(
    danted: Danted,
    tinyproxy: Tinyproxy,
    microsocks_userpass: Microsocks,
    origins: Origins,
) -> None:
    """danted (SOCKS 5) -> tinyproxy (HTTP) -> microsocks (SOCKS 5 + auth) -> echo."""
    m = microsocks_userpass
    ep = chain(
        reactor,
        [
            f"socks5://{danted.host}:{danted.port}",
            f"http://{tinyproxy.host}:{tinyproxy.port}",
            f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@{m.host}:{m.port}",
        ],
        "127.0.0.1",
        origins.echo_port,
    )
    payload = bytes(range(256)) * 64
    assert await echo_through(ep, payload) == payload
    assert f"{tinyproxy.port}" in danted.log_text()


@pytest.mark.filterwarnings("ignore:Using readBody")  # Twisted's own proxy transport
@live
async def test_agent_fetches_a_page_through_two_hops(
    danted: Danted, squid: Squid, origins: Origins
) -> None:
    """twisted.web Agent through danted then squid gets the origin's page."""
    factory = ProxyAgentEndpointFactory(
        reactor,
        [f"socks5://{danted.host}:{danted.port}", f"http://{squid.host}:{squid.port}"],
    )
    agent = Agent.usingEndpointFactory(reactor, factory)
    response = await agent.request(b"GET", origins.http_url().encode()).addTimeout(
        TIMEOUT, reactor
    )
    assert response.code == 200
    assert await readBody(response) == INDEX_BODY


@live
async def test_client_from_string_through_danted(
    danted: Danted, origins: Origins
) -> None:
    """The socks5: string form works against a real proxy."""
    ep = clientFromString(
        reactor,
        f"socks5:127.0.0.1:{origins.echo_port}:proxy=tcp\\:127.0.0.1\\:{danted.port}"
        ":negotiate_timeout=10",
    )
    assert await echo_through(ep, b"string form") == b"string form"
