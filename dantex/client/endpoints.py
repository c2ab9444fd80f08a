"""Twisted client endpoints that reach their target through a proxy hop.

Each endpoint wraps an inner ``IStreamClientEndpoint`` (how to reach the
proxy: TCP, TLS, or another proxy endpoint), so a chain is nesting::

    hop1 = HostnameEndpoint(reactor, "10.0.0.1", 1080)
    hop2 = Socks5ClientEndpoint(hop1, "10.0.0.2", 3128)       # hop1 reaches hop2
    target = HTTPConnectEndpoint(hop2, "example.com", 443)    # hop2 reaches target

Host names go to the proxy (SOCKS 4A/5, HTTP) unless ``resolve="local"``.

Not implemented: GSS-API (RFC 1961), HTTP authentication schemes other than
Basic, SOCKS 5's Dante "bind extension".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from attrs import field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IReactorTime,
    IStreamClientEndpoint,
)
from zope.interface import implementer

from dantex.client._handshake import (
    Handshake,
    HttpConnectHandshake,
    Socks4Handshake,
    Socks5Handshake,
    UserPass,
)
from dantex.client._negotiate import Tunnel, negotiate
from dantex.client._resolve import resolve_locally
from dantex.protocol.address import Address, AddressType

__all__ = [
    "HTTPConnectEndpoint",
    "Socks4ClientEndpoint",
    "Socks5ClientEndpoint",
    "Tunnel",
    "UserPass",
    "describe_endpoint",
]

Resolve = Literal["remote", "local"]


def describe_endpoint(endpoint: object) -> str | None:
    """``host:port`` an endpoint connects to, when it can be told (Twisted's
    TCP and Hostname endpoints, TLS wrappers of them, and our own)."""
    if isinstance(endpoint, _ProxyEndpointMixin):
        return str(Address.from_host(endpoint.host, endpoint.port))
    wrapped = getattr(endpoint, "_wrappedEndpoint", None)
    if wrapped is not None:
        return describe_endpoint(wrapped)
    host = getattr(endpoint, "_hostText", None) or getattr(endpoint, "_host", None)
    port = getattr(endpoint, "_port", None)
    if isinstance(host, str) and isinstance(port, int):
        try:
            return str(Address.from_host(host, port))
        except ValueError:
            return f"{host}:{port}"
    return None


def _target(host: str, port: int) -> Address:
    try:
        return Address.from_host(host, port)
    except ValueError as e:
        raise ValueError(f"bad target {host!r} port {port}: {e}") from None


def _check_timeout(value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError("timeouts are positive numbers of seconds")


@frozen
class _ProxyEndpointMixin:
    """What the three endpoints share: naming, resolution, timeouts.

    The keyword-only settings live here; each endpoint adds its positional
    fields (attrs keeps keyword-only fields out of the positional order).
    """

    kind: ClassVar[str] = "proxy"
    proxy: IStreamClientEndpoint
    host: str
    port: int
    resolve: Resolve = field(default="remote", kw_only=True)
    reactor: Any = field(default=None, kw_only=True)
    connect_timeout: float | None = field(default=None, kw_only=True)
    negotiate_timeout: float | None = field(default=None, kw_only=True)
    name: str | None = field(default=None, kw_only=True)

    def _validate(self) -> None:
        _target(self.host, self.port)
        if self.resolve not in ("remote", "local"):
            raise ValueError("resolve must be 'remote' or 'local'")
        _check_timeout(self.connect_timeout)
        _check_timeout(self.negotiate_timeout)
        if (
            self.connect_timeout or self.negotiate_timeout
        ) and not IReactorTime.providedBy(self.reactor):
            raise ValueError("timeouts need a reactor (pass reactor=...)")
        if self.resolve == "local" and not IReactorPluggableNameResolver.providedBy(
            self.reactor
        ):
            raise ValueError('resolve="local" needs a reactor (pass reactor=...)')

    @property
    def description(self) -> str:
        """How errors name this hop: ``name``, else ``"<kind> <proxy address>"``."""
        if self.name is not None:
            return self.name
        where = describe_endpoint(self.proxy)
        return f"{self.kind} {where}" if where else f"{self.kind} proxy"

    def _handshake(self, target: Address) -> Handshake:
        raise NotImplementedError

    def connect_tunnel(self, factory: IProtocolFactory) -> Deferred[Tunnel]:
        """Like :meth:`connect`, but fires with the :class:`Tunnel` (the
        protocol plus the reply's bound address, the transport and the bytes
        that followed the reply)."""
        target = _target(self.host, self.port)
        if self.resolve == "remote" or target.is_ip:
            return self._negotiate(target, factory)
        ipv4_only = self.kind.startswith("socks4")
        resolved = resolve_locally(self.reactor, target, ipv4_only=ipv4_only)
        return resolved.addCallback(self._negotiate, factory)

    def _negotiate(
        self, target: Address, factory: IProtocolFactory
    ) -> Deferred[Tunnel]:
        try:
            handshake = self._handshake(target)
        except ValueError as e:
            failed: Deferred[Tunnel] = Deferred()
            failed.errback(e)
            return failed
        return negotiate(
            self.proxy,
            handshake,
            factory,
            clock=self.reactor if IReactorTime.providedBy(self.reactor) else None,
            connect_timeout=self.connect_timeout,
            negotiate_timeout=self.negotiate_timeout,
        )

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Reach the proxy through ``proxy``, ask it for ``host``:``port``, and
        connect ``factory``'s protocol to the tunnel.

        The protocol's ``transport`` is the connection to the first hop (its
        ``getPeer()`` is that hop); bytes the proxy sent after its reply are
        delivered to ``dataReceived`` right after the Deferred fires.

        :returns: fires with the protocol, or fails with:

            - :class:`~dantex.client.errors.ProxyConnectError`: the proxy
              could not be reached (``reason`` holds the inner failure, e.g.
              ``ConnectionRefusedError``, ``DNSLookupError``);
            - an error of an inner hop, unchanged (it names that hop);
            - :class:`~dantex.client.errors.Socks5RefusedError` /
              :class:`~dantex.client.errors.Socks4RefusedError` /
              :class:`~dantex.client.errors.HTTPProxyRefusedError`: the proxy
              refused; ``reply`` is the REP, CD or HTTP status;
            - :class:`~dantex.client.errors.NoAcceptableMethodError`,
              :class:`~dantex.client.errors.ProxyAuthenticationError`
              (:class:`~dantex.client.errors.HTTPProxyAuthenticationError`
              for 407/401): no method, or credentials refused or missing;
            - :class:`~dantex.client.errors.ProxyProtocolError`: a malformed
              or unexpected answer;
            - :class:`~dantex.client.errors.ProxyClosedError`: the proxy
              closed before answering;
            - :class:`~dantex.client.errors.ProxyTimeoutError`:
              ``connect_timeout`` (reaching the proxy) or
              ``negotiate_timeout`` (its answer) expired;
            - ``DNSLookupError``: ``resolve="local"`` found no address;
            - ``ValueError``: a target, user name or password the protocol
              cannot carry (e.g. IPv6 over SOCKS 4);
            - ``twisted.internet.error.NoProtocol``: the factory built none;
            - ``CancelledError``: the Deferred was cancelled.  Cancelling
              works at every stage: a pending connect to the proxy (or an
              inner hop) is cancelled, an open connection is aborted.
        """
        return self.connect_tunnel(factory).addCallback(_protocol_of)


def _protocol_of(tunnel: Tunnel) -> IProtocol:
    return tunnel.protocol


def _headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(value)


def _credentials(value: UserPass | tuple[str, str] | None) -> UserPass | None:
    if value is None or isinstance(value, UserPass):
        return value
    return UserPass(*value)


@implementer(IStreamClientEndpoint)
@frozen
class Socks5ClientEndpoint(_ProxyEndpointMixin):
    """CONNECT through a SOCKS 5 proxy (RFC 1928), RFC 1929 with ``credentials``.

    :param proxy: how to reach the proxy.
    :param host: the target: IPv4, IPv6 (brackets allowed) or a host name.
    :param credentials: a :class:`UserPass` or ``(user, password)``.
    :param resolve: ``"remote"`` sends host names to the proxy (ATYP 3);
        ``"local"`` resolves them through ``reactor`` first.
    :param reactor: clock for the timeouts and resolver for ``"local"``.
    :param connect_timeout: seconds to reach the proxy (including inner hops).
    :param negotiate_timeout: seconds for the proxy to answer.
    :param name: how errors name this hop (default ``socks5 host:port``).
    """

    kind = "socks5"
    credentials: UserPass | None = field(default=None, converter=_credentials)

    def __attrs_post_init__(self) -> None:
        self._validate()
        self._handshake(_target("example.invalid", 1))  # validates credentials

    def _handshake(self, target: Address) -> Handshake:
        return Socks5Handshake(self.description, target, credentials=self.credentials)


@implementer(IStreamClientEndpoint)
@frozen
class Socks4ClientEndpoint(_ProxyEndpointMixin):
    """CONNECT through a SOCKS 4 proxy; a host name is sent as SOCKS 4A.

    :param userid: the USERID field (SOCKS 4 has no password).
    :param resolve: ``"remote"`` (SOCKS 4A for names) or ``"local"`` (plain
        SOCKS 4: the name is resolved to IPv4 through ``reactor``).
    :param name: how errors name this hop (default ``socks4 host:port``).

    Other parameters as :class:`Socks5ClientEndpoint`.  IPv6 targets fail
    with ``ValueError``: SOCKS 4 cannot carry them.
    """

    kind = "socks4"
    userid: str = ""

    def __attrs_post_init__(self) -> None:
        self._validate()
        target = _target(self.host, self.port)
        if target.type is AddressType.IPV6:
            raise ValueError("SOCKS 4 cannot carry an IPv6 target")
        self._handshake(_target("127.0.0.1", 1))  # validates the USERID

    def _handshake(self, target: Address) -> Handshake:
        return Socks4Handshake(
            self.description, target, userid=self.userid.encode("utf-8")
        )


@implementer(IStreamClientEndpoint)
@frozen
class HTTPConnectEndpoint(_ProxyEndpointMixin):
    """An HTTP CONNECT tunnel (RFC 9110 §9.3.6) with ``Host:`` and Basic auth.

    For an HTTPS proxy, make ``proxy`` a TLS endpoint
    (``wrapClientTLS(optionsForClientTLS(name), HostnameEndpoint(...))``).

    :param credentials: sent as ``Proxy-Authorization: Basic`` (RFC 7617).
    :param headers: more request fields, e.g. ``[("User-Agent", "x")]``.
    :param name: how errors name this hop (default ``http host:port``).

    Other parameters as :class:`Socks5ClientEndpoint`.
    """

    kind = "http"
    credentials: UserPass | None = field(default=None, converter=_credentials)
    headers: tuple[tuple[str, str], ...] = field(
        default=(), kw_only=True, converter=_headers
    )

    def __attrs_post_init__(self) -> None:
        self._validate()
        self._handshake(_target(self.host, self.port))

    def _handshake(self, target: Address) -> Handshake:
        return HttpConnectHandshake(
            self.description,
            target,
            credentials=self.credentials,
            headers=self.headers,
        )
