"""Proxy URLs, chain(), the clientFromString prefixes and the Agent endpoint
factory, in memory."""

from __future__ import annotations

import subprocess
import sys

import pytest
from twisted.internet.endpoints import clientFromString
from twisted.internet.testing import MemoryReactorClock
from twisted.web.client import Agent, readBody

from dantex.client import (
    HTTPConnectEndpoint,
    ProxyAgentEndpointFactory,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
    UserPass,
    chain,
    parse_proxy_url,
)
from tests.client._memory import accept, recorder_factory, result_of


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "creds"),
    [
        ("socks5://u:p@h1:1080", "socks5", "h1", 1080, UserPass("u", "p")),
        ("socks5h://h1", "socks5h", "h1", 1080, None),
        ("http://h2:3128", "http", "h2", 3128, None),
        ("http://h2", "http", "h2", 80, None),
        ("https://h3", "https", "h3", 443, None),
        ("socks4a://h4:1080/", "socks4a", "h4", 1080, None),
        ("socks4://bob@10.0.0.4", "socks4", "10.0.0.4", 1080, UserPass("bob", "")),
        ("SOCKS5://[::1]:9050", "socks5", "::1", 9050, None),
        (
            "http://us%3Aer:p%40ss@h2:8080",
            "http",
            "h2",
            8080,
            UserPass("us:er", "p@ss"),
        ),
    ],
)
def test_proxy_urls(
    url: str, scheme: str, host: str, port: int, creds: UserPass | None
) -> None:
    """Schemes, default ports, IPv6 brackets and percent-decoded credentials."""
    parsed = parse_proxy_url(url)
    assert (parsed.scheme, parsed.host, parsed.port) == (scheme, host, port)
    assert parsed.credentials == creds
    assert (
        "@" not in str(parsed) and "p" not in repr(parsed).split("credentials")[0][-1:]
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://h:21", "socks5://", "http://h:99999", "http://h/path", "socks4://u:p@h"],
)
def test_bad_proxy_urls(url: str) -> None:
    """Unknown schemes, no host, bad ports, paths and SOCKS 4 passwords are refused."""
    with pytest.raises(ValueError):
        parse_proxy_url(url)


def test_bad_url_message_hides_the_password() -> None:
    """A refused URL is quoted without its userinfo."""
    with pytest.raises(ValueError) as e:
        parse_proxy_url("http://u:hunter2@h/path")
    assert "hunter2" not in str(e.value)


def test_chain_nests_in_order() -> None:
    """Each hop is asked for the next hop's address; the last for the target."""
    reactor = MemoryReactorClock()
    ep = chain(
        reactor,
        ["socks5://u:p@h1:1080", "http://h2:3128", "socks4a://h4"],
        "example.com",
        443,
    )
    assert isinstance(ep, Socks4ClientEndpoint)
    assert (ep.host, ep.port, ep.name) == ("example.com", 443, "socks4a h4:1080")
    middle = ep.proxy
    assert isinstance(middle, HTTPConnectEndpoint)
    assert (middle.host, middle.port) == ("h4", 1080)
    first = middle.proxy
    assert isinstance(first, Socks5ClientEndpoint)
    assert (first.host, first.port) == ("h2", 3128)
    assert first.credentials == UserPass("u", "p")


def test_chain_wraps_https_hops_in_tls() -> None:
    """An https hop is reached through wrapClientTLS for that proxy's name."""
    reactor = MemoryReactorClock()
    ep = chain(reactor, ["socks5://h1", "https://h3:8443"], "example.com", 443)
    assert isinstance(ep, HTTPConnectEndpoint)
    tls = ep.proxy
    assert type(tls).__name__ == "_WrapperEndpoint"
    inner = tls._wrappedEndpoint  # type: ignore[attr-defined]
    assert isinstance(inner, Socks5ClientEndpoint)
    assert (inner.host, inner.port) == ("h3", 8443)


def test_chain_of_nothing_is_direct() -> None:
    """No proxies: a HostnameEndpoint to the target."""
    ep = chain(MemoryReactorClock(), [], "example.com", 80)
    assert type(ep).__name__ == "HostnameEndpoint"


def test_socks4_url_resolves_locally() -> None:
    """socks4:// sends plain SOCKS 4 (curl's meaning); socks4a:// sends the name."""
    reactor = MemoryReactorClock()
    ep = chain(reactor, ["socks4://h4"], "example.com", 80)
    assert isinstance(ep, Socks4ClientEndpoint) and ep.resolve == "local"


def test_string_form_socks5() -> None:
    """socks5:host:port:proxy=...:user=...:password=... builds the endpoint."""
    reactor = MemoryReactorClock()
    ep = clientFromString(
        reactor,
        r"socks5:example.com:443:proxy=tcp\:10.0.0.1\:1080:user=u:password=p",
    )
    assert isinstance(ep, Socks5ClientEndpoint)
    assert (ep.host, ep.port, ep.credentials) == (
        "example.com",
        443,
        UserPass("u", "p"),
    )
    d = ep.connect(recorder_factory())
    assert reactor.tcpClients[0][:2] == ("10.0.0.1", 1080)
    t = accept(reactor)
    assert t.value() == b"\x05\x02\x00\x02"
    d.cancel()


def test_string_forms_socks4_and_httpconnect() -> None:
    """socks4: takes userid=, httpconnect: takes user/password and timeouts."""
    reactor = MemoryReactorClock()
    s4 = clientFromString(
        reactor, r"socks4:host=10.1.2.3:port=80:proxy=tcp\:h\:1080:userid=bob"
    )
    assert isinstance(s4, Socks4ClientEndpoint) and s4.userid == "bob"
    http = clientFromString(
        reactor,
        r"httpconnect:example.com:443:proxy=tcp\:h\:3128:user=u:password=p"
        ":negotiate_timeout=5:resolve=local",
    )
    assert isinstance(http, HTTPConnectEndpoint)
    assert http.negotiate_timeout == 5 and http.resolve == "local"


@pytest.mark.parametrize(
    "description",
    [
        r"socks5:example.com:443:proxy=tcp\:h\:1080:colour=blue",
        r"socks5:example.com:443",
        r"socks5:example.com:proxy=tcp\:h\:1080",
        r"socks4:example.com:443:proxy=tcp\:h\:1080:password=p",
    ],
)
def test_string_form_errors_are_type_errors(description: str) -> None:
    """Unknown keywords, a missing proxy or port: TypeError, like _parseClientTLS."""
    with pytest.raises(TypeError):
        clientFromString(MemoryReactorClock(), description)


def test_plugin_scan_imports_no_endpoint_code() -> None:
    """Importing the twisted plugin loads only the parsers, not the endpoints."""
    code = (
        "import sys, twisted.plugins.dantex_plugin;"
        "print(sorted(m for m in sys.modules if m.startswith('dantex')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['dantex', 'dantex.client', 'dantex.client.parsers']"


@pytest.mark.filterwarnings("ignore:Using readBody")  # StringTransport
def test_agent_fetches_through_the_chain() -> None:
    """Agent.usingEndpointFactory sends its request through the SOCKS 5 tunnel."""
    reactor = MemoryReactorClock()
    agent = Agent.usingEndpointFactory(
        reactor, ProxyAgentEndpointFactory(reactor, ["socks5://h1:1080"])
    )
    d = agent.request(b"GET", b"http://example.com:8080/page")
    t = accept(reactor)
    assert t.value() == b"\x05\x01\x00"
    t.clear()
    t.protocol.dataReceived(b"\x05\x00")
    assert t.value() == b"\x05\x01\x00\x03\x0bexample.com\x1f\x90"
    t.clear()
    t.protocol.dataReceived(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    assert t.value().startswith(b"GET /page HTTP/1.1\r\n")
    t.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    response = result_of(d)
    assert response.code == 200
    body = readBody(response)
    t.protocol.dataReceived(b"hello")
    assert result_of(body) == b"hello"


def test_agent_wraps_https_targets_in_tls() -> None:
    """An https URI gets TLS to the origin on top of the tunnel."""
    reactor = MemoryReactorClock()
    factory = ProxyAgentEndpointFactory(reactor, ["http://h2:3128"])
    from twisted.web.client import URI

    ep = factory.endpointForURI(URI.fromBytes(b"https://example.com/"))
    assert type(ep).__name__ == "_WrapperEndpoint"
    inner = ep._wrappedEndpoint  # type: ignore[attr-defined]
    assert isinstance(inner, HTTPConnectEndpoint)
    assert (inner.host, inner.port) == ("example.com", 443)
