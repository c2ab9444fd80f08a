"""Dante's client configuration: socks.conf routes, SOCKS_* variables, route
choice and failover (reference §3), in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock

from dantex.client import (
    ClientRouter,
    NoRouteError,
    ProxyConnectError,
    Socks5RefusedError,
    UserPass,
    load_client_config,
)
from dantex.client.socksconf import credentials_from_env, parse_client_config
from dantex.config.errors import ConfigErrors
from dantex.protocol.address import Address
from tests.client._memory import accept, fail_connect, recorder_factory, result_of

SOCKS_CONF = """\
# a Dante client configuration
logoutput: stderr
route.maxfail: 1
route.badexpire: 60
timeout.connect: 5

route {
  from: 0.0.0.0/0 to: .example.com
  via: 10.0.0.1 port = 1080
  proxyprotocol: socks_v5
  method: username
  command: connect
}
route {
  from: 0/0 to: 192.0.2.0/24 port = 80
  via: direct
}
route {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  via: proxy.internal
  proxyprotocol: http
}
"""


def test_socks_conf_routes() -> None:
    """Every route keyword lands where it belongs; defaults follow Dante."""
    config = parse_client_config(SOCKS_CONF, "socks.conf")
    first, direct, http = config.routes
    assert (config.maxfail, config.badexpire, config.connect_timeout) == (1, 60, 5)
    assert (first.via.host, first.via.port) == ("10.0.0.1", 1080)
    assert first.proxyprotocols == ("socks_v5",) and first.methods == ("username",)
    assert first.commands == {"connect"}
    assert direct.direct and direct.number == 2
    assert http.gateway_port("http") == 80 and http.commands == {"connect"}
    assert next(str(w) for w in config.warnings).startswith(
        "socks.conf:2:1: warning: 'logoutput' is ignored"
    )


def test_default_protocols_and_commands() -> None:
    """No proxyprotocol means socks_v4 socks_v5, and every command."""
    config = parse_client_config(
        "route {\nfrom: 0/0 to: 0/0 via: 10.0.0.1\n}\n", "socks.conf"
    )
    (route,) = config.routes
    assert route.proxyprotocols == ("socks_v4", "socks_v5")
    assert route.methods == ("none",)
    assert route.commands == {
        "connect",
        "bind",
        "bindreply",
        "udpassociate",
        "udpreply",
    }
    assert route.gateway_port("socks_v5") == 1080


BAD = """\
route {
  from: 10.0.0.0/8 to: 0/0 via: 10.0.0.1
}
route {
  from: 0/0 to: 0/0 via: 10.0.0.1/32 port = 1080
}
route {
  from: 0/0 to: 0/0
}
route {
  from: 0/0 to: 0/0 via: 10.0.0.1
  extension: bind
  method: gssapi
}
route {
  from: 0/0 to: 0/0 via: 10.0.0.1
  proxyprotocol: socks_v4 http
}
route {
  from: 0/0 to: 0/0 via: 10.0.0.1
  proxyprotocol: socks_v4
  method: username
}
colour: blue
"""


def test_errors_are_collected_and_point_at_the_text() -> None:
    """Every problem is reported with file:line:col, sorted, with the line."""
    with pytest.raises(ConfigErrors) as e:
        parse_client_config(BAD, "socks.conf")
    heads = [err.headline() for err in e.value.errors]
    assert heads == [
        "socks.conf:2:9: error: 'from:' other than 0/0 is not supported yet "
        "(routes apply to every local address)",
        "socks.conf:5:26: error: a gateway is one address, without a netmask",
        "socks.conf:7:1: error: route without via:",
        "socks.conf:12:3: error: 'extension' is not supported yet",
        "socks.conf:13:11: error: 'gssapi' is not supported yet",
        "socks.conf:16:26: error: 'http' cannot be combined with socks protocols",
        "socks.conf:20:26: error: method 'username' needs proxyprotocol socks_v5",
        "socks.conf:24:1: error: unknown keyword 'colour'",
    ]
    assert "  from: 10.0.0.0/8 to: 0/0 via: 10.0.0.1\n        ^^^^^^^^^^" in str(
        e.value
    )


def test_environment_servers_win_over_the_file(tmp_path: Path) -> None:
    """SOCKS_ROUTE_n and *_SERVER variables replace socks.conf, in Dante's forms."""
    conf = tmp_path / "socks.conf"
    conf.write_text("this is not read")
    env = {
        "SOCKS_CONF": str(conf),
        "SOCKS_ROUTE_1": "from: 0/0 to: .internal via: 10.9.9.9 port = 1081",
        "SOCKS_SERVER": "10.0.0.2:1082",
        "SOCKS5_SERVER": "[2001:db8::5]:1085",
        "HTTP_CONNECT_PROXY": "http://10.0.0.3:3128",
    }
    routes = load_client_config(env).routes
    assert [(r.number, r.via.host, r.via.port, r.proxyprotocols) for r in routes] == [
        (1, "10.9.9.9", 1081, ("socks_v4", "socks_v5")),
        (2, "10.0.0.2", 1082, ("socks_v4", "socks_v5")),
        (3, "2001:db8::5", 1085, ("socks_v5",)),
        (4, "10.0.0.3", 3128, ("http",)),
    ]


def test_socks_conf_from_the_environment(tmp_path: Path) -> None:
    """Without server variables SOCKS_CONF names the file; no routes means direct."""
    conf = tmp_path / "socks.conf"
    conf.write_text(SOCKS_CONF)
    assert len(load_client_config({"SOCKS_CONF": str(conf)}).routes) == 3
    empty = tmp_path / "empty.conf"
    empty.write_text("# nothing\n")
    assert load_client_config({}, path=str(empty)).routes == ()
    with pytest.raises(ValueError):
        load_client_config({"SOCKS_SERVER": "host:port"})


def test_credentials_and_their_aliases() -> None:
    """SOCKS_USERNAME/SOCKS_PASSWORD and Dante's undocumented aliases."""
    assert credentials_from_env({"SOCKS_USERNAME": "u", "SOCKS_PASSWORD": "p"}) == (
        UserPass("u", "p")
    )
    assert credentials_from_env({"SOCKS5_USER": "u", "SOCKS5_PASSWD": "p"}) == (
        UserPass("u", "p")
    )
    assert credentials_from_env({"SOCKS_PASSWORD": "p"}) is None


def router(text: str, **kw: object) -> tuple[MemoryReactorClock, ClientRouter]:
    reactor = MemoryReactorClock()
    config = parse_client_config(text, "socks.conf")
    return reactor, ClientRouter(reactor, config, environ={}, **kw)  # type: ignore[arg-type]


def numbers(
    r: ClientRouter, host: str, port: int, command: str = "connect"
) -> list[int]:
    return [x.number for x in r.routes_for(Address.from_host(host, port), command)]


def test_route_choice() -> None:
    """to: matching (domain, CIDR with port), commands, credentials, IPv6 and v4."""
    _, r = router(SOCKS_CONF)
    assert numbers(r, "www.example.com", 443) == [3]  # route 1 needs credentials
    _, r = router(SOCKS_CONF, credentials=UserPass("u", "p"))
    assert numbers(r, "www.example.com", 443) == [1, 3]
    assert numbers(r, "192.0.2.9", 80) == [2, 3]
    assert numbers(r, "192.0.2.9", 81) == [3]
    assert numbers(r, "192.0.2.9", 80, "udpassociate") == []
    _, r = router(
        "route {\nfrom: 0/0 to: 0/0 via: 10.0.0.1\nproxyprotocol: socks_v4\n}"
    )
    assert numbers(r, "::1", 80) == []


ORDERED = """\
route { from: 0/0 to: 0/0 via: 10.0.0.5 port = 3128
  proxyprotocol: http }
route { from: 0/0 to: 0/0 via: 10.0.0.4
  proxyprotocol: socks_v4 socks_v5 }
route { from: 0/0 to: 0/0 via: direct
  command: connect }
"""


def test_file_order_and_dante_order() -> None:
    """File order by default; order="dante" puts direct, then v4, v5, HTTP first."""
    _, r = router(ORDERED)
    assert numbers(r, "10.1.1.1", 80) == [1, 2, 3]
    _, r = router(ORDERED, order="dante")
    assert numbers(r, "10.1.1.1", 80) == [3, 2, 1]


FAILOVER = """\
route.maxfail: 1
route.badexpire: 60
route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1080
  proxyprotocol: socks_v5 }
route { from: 0/0 to: 0/0 via: 10.0.0.2 port = 1081
  proxyprotocol: socks_v5 }
"""


def test_failover_to_the_next_route_and_back() -> None:
    """An unreachable gateway is skipped for badexpire; the next route is used."""
    reactor, r = router(FAILOVER)
    d = r.endpoint("example.com", 443).connect(recorder_factory())
    assert reactor.tcpClients[-1][1] == 1080
    fail_connect(reactor, ConnectionRefusedError())
    reactor.advance(1)  # HostnameEndpoint gives up on its only address
    assert reactor.tcpClients[-1][1] == 1081  # the second route
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    assert result_of(d).made
    r.endpoint("example.com", 443).connect(recorder_factory()).cancel()
    assert reactor.tcpClients[-1][1] == 1081  # route 1 is blacklisted
    reactor.advance(61)
    r.endpoint("example.com", 443).connect(recorder_factory()).cancel()
    assert reactor.tcpClients[-1][1] == 1080  # and back after badexpire


def test_refusal_by_a_proxy_does_not_fail_over() -> None:
    """A proxy that answers (REP 5) ends the attempt; its route stays good."""
    reactor, r = router(FAILOVER)
    d = r.endpoint("example.com", 443).connect(recorder_factory())
    t = accept(reactor)
    t.protocol.dataReceived(b"\x05\x00\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")
    f = result_of(d)
    assert f.check(Socks5RefusedError)
    assert len(reactor.tcpClients) == 1


def test_all_routes_failing_or_none_matching() -> None:
    """The last failure when every route failed; NoRouteError when none matches."""
    reactor, r = router(FAILOVER)
    d = r.endpoint("example.com", 443).connect(recorder_factory())
    for _ in range(2):
        fail_connect(reactor, ConnectionRefusedError())
        reactor.advance(1)
    f = result_of(d)
    assert f.check(ProxyConnectError) and f.value.proxy.startswith("route #2 ")
    d = r.endpoint("example.com", 443).connect(recorder_factory())
    assert result_of(d).check(NoRouteError)


def test_host_name_against_a_network_is_looked_up() -> None:
    """A name target is resolved to match a CIDR 'to:' (the reactor says 127.0.0.1)."""
    reactor, r = router(
        "route { from: 0/0 to: 127.0.0.0/8 via: 10.0.0.1\nproxyprotocol: socks_v5 }\n"
    )
    r.endpoint("localhost", 80).connect(recorder_factory())
    assert reactor.tcpClients[-1][1] == 1080  # the gateway, not the target's port 80
