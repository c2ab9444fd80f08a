"""Dante's client configuration as route choice with failover (§3 of the reference).

:func:`load_client_config` reads the ``SOCKS_*`` environment variables or,
when none names a proxy, ``socks.conf``; :class:`ClientRouter` turns a
target into an endpoint through the matching routes, in turn: a route whose
gateway cannot be reached counts a failure and, at ``route.maxfail``, is
skipped for ``route.badexpire`` seconds, while the next matching route is
tried (Dante's failover).  A proxy that answers (even with a refusal) ends
the attempt: its answer is the result.

Differences from Dante's client, by design: routes are tried in file order
(``order="dante"`` gives Dante's direct-first, v4, v5, HTTP order); within a
route offering both SOCKS versions, SOCKS 5 is used; HTTP routes send Basic
credentials when ``method: username`` is listed; no automatic LAN direct
routes; ``from:`` must be ``0/0``; a domain ``to:`` never matches an IP
target (no reverse lookups).  Not implemented: GSS-API, UPnP, the bind
extension, ``SOCKS_REDIRECT_FROM``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.client._handshake import UserPass
from dantex.client._socksconf_parse import (
    ClientConfig,
    Route,
    Via,
    parse_client_config,
)
from dantex.client.endpoints import (
    HTTPConnectEndpoint,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
)
from dantex.client.errors import NoRouteError, ProxyConnectError, ProxyTimeoutError
from dantex.config.errors import Span
from dantex.config.model import AddressSpec, AddressSpecKind
from dantex.protocol.address import Address, AddressType
from dantex.rules.addresses import NeedLookup, compile_address

__all__ = [
    "ClientConfig",
    "ClientRouter",
    "Route",
    "credentials_from_env",
    "load_client_config",
    "parse_client_config",
]

#: Where Dante looks when ``SOCKS_CONF`` is unset (upstream, then Debian).
DEFAULT_PATHS = ("/etc/socks.conf", "/etc/dante.conf")
_SERVER_VARIABLES = {
    "SOCKS_SERVER": ("socks_v4", "socks_v5"),
    "SOCKS5_SERVER": ("socks_v5",),
    "SOCKS4_SERVER": ("socks_v4",),
    "HTTP_CONNECT_PROXY": ("http",),
}
Order = Literal["file", "dante"]
_DANTE_RANK = {"socks_v4": 1, "socks_v5": 2, "http": 3}


def credentials_from_env(environ: Mapping[str, str]) -> UserPass | None:
    """``SOCKS_USERNAME``/``SOCKS_PASSWORD`` (and Dante's aliases
    ``SOCKS_USER``, ``SOCKS5_USER``, ``SOCKS_PASSWD``, ``SOCKS5_PASSWD``)."""
    user = next(
        (
            environ[k]
            for k in ("SOCKS_USERNAME", "SOCKS_USER", "SOCKS5_USER")
            if k in environ
        ),
        None,
    )
    if user is None:
        return None
    password = next(
        (
            environ[k]
            for k in ("SOCKS_PASSWORD", "SOCKS_PASSWD", "SOCKS5_PASSWD")
            if k in environ
        ),
        "",
    )
    return UserPass(user, password)


def _server_route(name: str, value: str, number: int) -> Route:
    """``host[:port]`` (``http://host:port`` for HTTP_CONNECT_PROXY) to a 0/0 route."""
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1].rstrip("/")
    host, sep, port_text = text.rpartition(":")
    if not sep or host.endswith(":") or (host.count(":") and not host.startswith("[")):
        host, port_text = text, ""
    host = host.strip("[]")
    protocols = _SERVER_VARIABLES[name]
    default = 80 if protocols == ("http",) else 1080
    try:
        port = int(port_text) if port_text else default
        Address.from_host(host, port)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not host:port") from None
    span = Span(name, 1, 1, len(value) + 1, value)
    every = AddressSpec(AddressSpecKind.ANY, span)
    commands = ("connect",) if protocols == ("http",) else (
        "connect", "bind", "bindreply", "udpassociate", "udpreply")  # fmt: skip
    return Route(
        number,
        span,
        every,
        Via(host, port, span),
        protocols,
        ("none", "username"),
        frozenset(commands),
    )


def load_client_config(
    environ: Mapping[str, str] | None = None, path: str | None = None
) -> ClientConfig:
    """The routes Dante's client library would use.

    ``SOCKS_ROUTE_1``, ``SOCKS_ROUTE_2`` ... (each the body of a ``route``),
    then ``SOCKS_SERVER``, ``SOCKS5_SERVER``, ``SOCKS4_SERVER`` and
    ``HTTP_CONNECT_PROXY`` (routes for ``0/0``, in that order) win; socks.conf
    is then not read.  Otherwise ``path``, ``SOCKS_CONF``, or the first of
    :data:`DEFAULT_PATHS` that exists; none at all means no routes (direct).

    :raises ConfigErrors: a bad file or ``SOCKS_ROUTE_n``.
    :raises ValueError: a bad ``*_SERVER`` value.
    :raises OSError: ``path`` or ``SOCKS_CONF`` cannot be read.
    """
    env = os.environ if environ is None else environ
    routes: list[Route] = []
    n = 1
    while f"SOCKS_ROUTE_{n}" in env:
        name = f"SOCKS_ROUTE_{n}"
        text = "route {\n" + env[name] + "\n}\n"
        routes.extend(
            parse_client_config(text, name, first_route=len(routes) + 1).routes
        )
        n += 1
    for name in _SERVER_VARIABLES:
        if env.get(name):
            routes.append(_server_route(name, env[name], len(routes) + 1))
    if routes:
        return ClientConfig(tuple(routes))
    file = path or env.get("SOCKS_CONF")
    if file is None:
        file = next((p for p in DEFAULT_PATHS if Path(p).exists()), None)
        if file is None:
            return ClientConfig()
    return parse_client_config(Path(file).read_text(), file)


class _RouteState:
    def __init__(self) -> None:
        self.failures = 0
        self.bad_until: float | None = None


class ClientRouter:
    """Chooses routes for targets and remembers which gateways failed.

    :param reactor: for connects, name resolution and the failover clock.
    :param credentials: for ``method: username`` routes; default from the
        ``SOCKS_USERNAME``/``SOCKS_PASSWORD`` environment variables.
    :param order: ``"file"`` (first match in file order) or ``"dante"``.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: ClientConfig,
        *,
        credentials: UserPass | None = None,
        order: Order = "file",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._reactor = reactor
        self.config = config
        env = os.environ if environ is None else environ
        self._credentials = credentials or credentials_from_env(env)
        self._order = order
        self._state = {r.number: _RouteState() for r in config.routes}
        self._matchers = {r.number: compile_address(r.to) for r in config.routes}

    def routes_for(
        self,
        target: Address,
        command: str = "connect",
        answers: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    ) -> list[Route]:
        """Usable routes to ``target`` for ``command``, in the order to try.

        :raises NeedLookup: a route's ``to:`` needs ``target``'s addresses.
        """
        now = self._reactor.seconds()
        known = dict(answers or {})
        found: list[Route] = []
        for route in self.config.routes:
            state = self._state[route.number]
            if state.bad_until is not None and (
                state.bad_until < 0 or now < state.bad_until
            ):
                continue
            if command not in route.commands or self._protocol(route, target) is None:
                continue
            if self._matches(route, target, known):
                found.append(route)
        if self._order == "dante":
            found.sort(
                key=lambda r: (
                    0 if r.direct else _DANTE_RANK[self._protocol(r, target) or "http"]
                )
            )
        return found

    def routes_for_host(
        self, host: str, port: int, command: str = "connect"
    ) -> list[Route]:
        """:meth:`routes_for` with a host and port (no DNS answers)."""
        return self.routes_for(Address.from_host(host, port), command)

    def _matches(
        self,
        route: Route,
        target: Address,
        answers: dict[tuple[str, str], tuple[str, ...]],
    ) -> bool:
        spec = route.to
        if target.type is AddressType.DOMAIN:
            net = spec.network
            if net is not None and net.prefixlen == 0:
                return True  # any address: the name goes to the proxy
        elif spec.kind is AddressSpecKind.DOMAIN:
            return False  # no reverse lookups
        return self._matchers[route.number](target, _Answers(answers)) is not None

    def _protocol(self, route: Route, target: Address) -> str | None:
        """The proxy protocol this route would use for ``target``, or None."""
        if route.direct:
            return "direct"
        offered = route.proxyprotocols
        creds = self._credentials is not None
        prefer_v4 = self._order == "dante" and self._v4_ok(route, target)
        if (
            "socks_v5" in offered
            and ("none" in route.methods or creds)
            and not (prefer_v4 and "socks_v4" in offered)
        ):
            return "socks_v5"
        if "socks_v4" in offered and self._v4_ok(route, target):
            return "socks_v4"
        if "http" in offered and ("none" in route.methods or creds):
            return "http"
        return None

    @staticmethod
    def _v4_ok(route: Route, target: Address) -> bool:
        return "none" in route.methods and target.type is not AddressType.IPV6

    def endpoint_for_route(
        self, route: Route, host: str, port: int
    ) -> IStreamClientEndpoint:
        """The endpoint that reaches ``host``:``port`` through ``route``."""
        timeout = self.config.connect_timeout or 30.0
        target = Address.from_host(host, port)
        protocol = self._protocol(route, target)
        if protocol == "direct" or route.via.host is None:
            return HostnameEndpoint(self._reactor, host, port, timeout=timeout)
        assert protocol is not None
        gateway_port = route.gateway_port(protocol)
        gateway = HostnameEndpoint(
            self._reactor, route.via.host, gateway_port, timeout=timeout
        )
        where = Address.from_host(route.via.host, gateway_port)
        name = f"route #{route.number} {protocol} {where}"
        creds = self._credentials if "username" in route.methods else None
        common: dict[str, Any] = {"reactor": self._reactor, "name": name}
        if protocol == "socks_v5":
            return Socks5ClientEndpoint(gateway, host, port, creds, **common)
        if protocol == "socks_v4":
            return Socks4ClientEndpoint(gateway, host, port, resolve="local", **common)
        return HTTPConnectEndpoint(gateway, host, port, creds, **common)

    def endpoint(self, host: str, port: int) -> IStreamClientEndpoint:
        """An endpoint to ``host``:``port`` that tries the matching routes in turn."""
        return _RoutedEndpoint(self, host, port)

    def failed(self, route: Route, reason: BaseException) -> None:
        """Count a failure to reach ``route``'s gateway (Dante's blacklisting)."""
        state = self._state[route.number]
        state.failures += 1
        if state.failures >= self.config.maxfail:
            expire = self.config.badexpire
            state.bad_until = -1.0 if expire == 0 else self._reactor.seconds() + expire
            state.failures = 0
            self.log.warn(
                "blacklisting route #{route} for {seconds}s: {reason}",
                route=route.number,
                seconds=expire or "ever",
                reason=reason,
            )

    def succeeded(self, route: Route) -> None:
        """The gateway answered: forget earlier failures."""
        state = self._state[route.number]
        state.failures = 0
        state.bad_until = None


class _Answers:
    def __init__(self, table: Mapping[tuple[str, str], tuple[str, ...]]) -> None:
        self._table = table

    def __getitem__(self, key: tuple[str, str], /) -> tuple[str, ...]:
        return self._table[key]


def _unreachable(failure: Failure) -> bool:
    """Whether a failure means the gateway (or the target of a direct route)
    could not be reached, so that the next route should be tried."""
    if failure.check(ProxyConnectError, ConnectError, DNSLookupError):
        return True
    error = failure.value
    return isinstance(error, ProxyTimeoutError) and error.phase == "connect"


@implementer(IStreamClientEndpoint)
class _RoutedEndpoint:
    def __init__(self, router: ClientRouter, host: str, port: int) -> None:
        self._router = router
        self._host = host
        self._port = port

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Try each usable route; fails with the last route's failure, or
        :class:`~dantex.client.errors.NoRouteError` when none is usable."""
        return _Failover(self._router, self._host, self._port, factory).start()


class _Failover:
    def __init__(
        self, router: ClientRouter, host: str, port: int, factory: IProtocolFactory
    ) -> None:
        self._router = router
        self._host = host
        self._port = port
        self._factory = factory
        self._target = Address.from_host(host, port)
        self._answers: dict[tuple[str, str], tuple[str, ...]] = {}
        self._tried: set[int] = set()
        self._current: Deferred[Any] | None = None
        self._last: Failure | None = None
        self.result: Deferred[IProtocol] = Deferred(self._cancel)

    def start(self) -> Deferred[IProtocol]:
        self._next()
        return self.result

    def _next(self) -> None:
        try:
            routes = self._router.routes_for(self._target, "connect", self._answers)
        except NeedLookup as need:
            self._lookup(need.lookup.key)
            return
        routes = [r for r in routes if r.number not in self._tried]
        if not routes:
            if self._last is not None:
                self.result.errback(self._last)
            else:
                self.result.errback(
                    NoRouteError(
                        "no usable route", proxy="socks.conf", target=self._target
                    )
                )
            return
        route = routes[0]
        self._tried.add(route.number)
        d = self._router.endpoint_for_route(route, self._host, self._port).connect(
            self._factory
        )
        self._current = d
        d.addCallbacks(
            self._connected, self._failed, callbackArgs=(route,), errbackArgs=(route,)
        )

    def _lookup(self, name: str) -> None:
        from dantex.client._resolve import resolve_all

        d = resolve_all(self._router._reactor, name)
        self._current = d

        def got(addresses: tuple[str, ...]) -> None:
            self._answers[("forward", name)] = addresses
            self._next()

        def failed(f: Failure) -> None:
            if f.check(CancelledError):
                return
            self._answers[("forward", name)] = ()
            self._next()

        d.addCallbacks(got, failed)

    def _connected(self, protocol: IProtocol, route: Route) -> None:
        self._current = None
        self._router.succeeded(route)
        self.result.callback(protocol)

    def _failed(self, failure: Failure, route: Route) -> None:
        self._current = None
        if failure.check(CancelledError):
            return
        if not _unreachable(failure):
            self._router.succeeded(route)
            self.result.errback(failure)
            return
        self._router.failed(route, failure.value or Exception("failed"))
        self._last = failure
        self._next()

    def _cancel(self, d: Deferred[IProtocol]) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            current.cancel()
