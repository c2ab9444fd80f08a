"""A chain of proxies from one description: a list of proxy URLs.

``socks5://user:pass@h1:1080``, ``socks5h://h1``, ``socks4://h4:1080``
(plain SOCKS 4, names resolved locally as curl does), ``socks4a://h4``,
``http://user:pass@h2:3128``, ``https://h3:443`` (TLS to the proxy, verified
with service_identity).  Default ports: 1080 for SOCKS, 80 for ``http``, 443
for ``https``.  Unlike curl, ``socks5://`` sends host names to the proxy, like
``socks5h://``; pass ``resolve="local"`` to :func:`chain` to resolve here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS

from dantex.client._handshake import UserPass
from dantex.client.endpoints import (
    HTTPConnectEndpoint,
    Resolve,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
)
from dantex.protocol.address import Address

__all__ = ["SCHEMES", "ProxyURL", "chain", "parse_proxy_url"]

#: scheme -> default port.
SCHEMES = {
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
    "http": 80,
    "https": 443,
}


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """One hop of a chain; ``str()`` is the URL without credentials."""

    scheme: str
    host: str
    port: int
    credentials: UserPass | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.scheme}://{Address.from_host(self.host, self.port)}"

    @property
    def tls(self) -> bool:
        """Whether the proxy is reached over TLS."""
        return self.scheme == "https"


def parse_proxy_url(text: str) -> ProxyURL:
    """Parse ``scheme://[user[:password]@]host[:port][/]``.

    User and password are percent-decoded.

    :raises ValueError: an unknown scheme, a missing host, a bad port, a
        path, query or fragment, or credentials on a ``socks4``/``socks4a``
        URL other than a user id alone.
    """
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad proxy URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(SCHEMES)
        raise ValueError(f"unknown proxy scheme {scheme!r} (known: {known})")
    if not parts.hostname:
        raise ValueError(f"proxy URL without a host: {_safe(text)}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a proxy URL has no path or query: {_safe(text)}")
    credentials = None
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password) if parts.password is not None else ""
        if scheme.startswith("socks4") and parts.password is not None:
            raise ValueError("SOCKS 4 has no password (give a user id alone)")
        credentials = UserPass(user, password)
    host = parts.hostname
    return ProxyURL(
        scheme, host, port if port is not None else SCHEMES[scheme], credentials
    )


def _safe(text: str) -> str:
    """The URL without its userinfo, for messages."""
    scheme, sep, rest = text.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else text.rpartition("@")[2]


def _hop(
    url: ProxyURL,
    inner: IStreamClientEndpoint,
    host: str,
    port: int,
    *,
    reactor: Any,
    resolve: Resolve,
    negotiate_timeout: float | None,
    headers: Sequence[tuple[str, str]],
) -> IStreamClientEndpoint:
    name = f"{url.scheme} {Address.from_host(url.host, url.port)}"
    common: dict[str, Any] = {
        "reactor": reactor,
        "negotiate_timeout": negotiate_timeout,
        "name": name,
    }
    if url.scheme in ("socks5", "socks5h"):
        return Socks5ClientEndpoint(
            inner, host, port, url.credentials, resolve=resolve, **common
        )
    if url.scheme in ("socks4", "socks4a"):
        userid = url.credentials.username if url.credentials else ""
        local: Resolve = "local" if url.scheme == "socks4" else resolve
        return Socks4ClientEndpoint(inner, host, port, userid, resolve=local, **common)
    return HTTPConnectEndpoint(
        inner,
        host,
        port,
        url.credentials,
        headers=headers,
        resolve=resolve,
        **common,
    )


def chain(
    reactor: Any,
    proxies: Sequence[str | ProxyURL],
    host: str,
    port: int,
    *,
    resolve: Resolve = "remote",
    tls_trust_root: Any = None,
    connect_timeout: float = 30.0,
    negotiate_timeout: float | None = 30.0,
    headers: Sequence[tuple[str, str]] = (),
) -> IStreamClientEndpoint:
    """An endpoint reaching ``host``:``port`` through ``proxies`` in order.

    The first proxy is reached with a ``HostnameEndpoint``; each next one
    through the hops before it.  ``https`` hops are wrapped in Twisted's TLS
    (``optionsForClientTLS``: the certificate must be valid for the proxy's
    host name or IP address, checked by service_identity).  With no proxies
    the result is a plain ``HostnameEndpoint``.

    :param tls_trust_root: the ``trustRoot`` for ``https`` proxies (e.g.
        ``Certificate.loadPEM(...)``); default: the platform's trust store.
    :param connect_timeout: seconds for the TCP connect to the first proxy.
    :param negotiate_timeout: seconds each hop may take to answer.
    :param headers: extra request fields for the HTTP hops.
    :raises ValueError: a bad URL or target (see :func:`parse_proxy_url`).
    """
    urls = [p if isinstance(p, ProxyURL) else parse_proxy_url(p) for p in proxies]
    hops: list[tuple[str, int]] = [(u.host, u.port) for u in urls[1:]] + [(host, port)]
    if not urls:
        return HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
    first = urls[0]
    endpoint: IStreamClientEndpoint = HostnameEndpoint(
        reactor, first.host, first.port, timeout=connect_timeout
    )
    for i, url in enumerate(urls):
        if url.tls:
            options = optionsForClientTLS(url.host, trustRoot=tls_trust_root)
            endpoint = wrapClientTLS(options, endpoint)
        next_host, next_port = hops[i]
        endpoint = _hop(
            url,
            endpoint,
            next_host,
            next_port,
            reactor=reactor,
            resolve=resolve,
            negotiate_timeout=negotiate_timeout,
            headers=headers,
        )
    return endpoint
