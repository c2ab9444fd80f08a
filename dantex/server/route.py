"""Server chaining: route choice, failover, bad marks (Dante §1.8, §2.10).

With no ``route { }`` in the configuration every request goes direct.  With
routes, a request takes the matching ones in turn:

* **Matching** (danted's rules): ``from:`` the client, ``to:`` the target
  (a host name is resolved when a route's ``to:`` needs its addresses),
  the command (a route without ``command:`` serves CONNECT), ``protocol:``,
  and the methods: each parent must be usable with what we can offer it
  -- method ``none`` in its ``method:`` list (the default), or credentials:
  the route's own ``username:``/``password:`` (dantex) or, with ``method:
  username``, the client's own.  A route whose first parent is the target
  itself is skipped (danted's loop guard), and so is one marked bad.
* **Order**: the first match in file order (dantex's default), or with
  ``route.order: dante`` danted's: direct routes first, then by the first
  parent's protocol (SOCKS 4, SOCKS 5, HTTP), file order within each.
  Where a parent offers both SOCKS versions, SOCKS 5 is used unless
  ``route.order: dante`` and SOCKS 4 can carry the request.
* **Failover**: a parent that cannot be reached, breaks the protocol,
  refuses our credentials, refuses the request or does not answer within
  ``timeout.connect`` hands the request to the next matching route; the
  client is told of success only once a whole path stands, so nothing has
  been relayed yet.  A ``via: direct`` route is the last one tried: its
  answer is the target's own.  When every route failed the client gets the
  reply that tells most about the target (a parent's answer about it before
  a parent's refusal, before a timeout, before an unreachable parent).
* **Bad marks**: a route whose path broke (unreachable parent, a hop that
  could not reach the next one, a broken or silent parent, our fixed
  credentials refused) counts a failure; at ``route.maxfail`` (default 1)
  it is skipped for ``route.badexpire`` seconds (default 300, 0: until
  restart).  Marks are kept per process (each worker has its own) and
  survive reloads for routes that did not change.  A request that finds no
  usable route is refused with 0x03 ("no usable serverchain route to
  target found", as danted).

BIND and UDP ASSOCIATE take a route only when one names the command
(``command: bind``/``udpassociate``, through a SOCKS 5 parent); with no such
route they are served here, as danted serves them.

Not implemented: UPnP gateways, GSS-API towards parents, a route's
``redirect from:`` and socket options, SOCKS 4A towards SOCKS 4 parents
(names are resolved here first, as danted does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

from dantex.client._handshake import UserPass
from dantex.config.model import Config, Hop, Route
from dantex.protocol.address import Address, AddressType
from dantex.rules.addresses import Answers, Matcher, compile_address

if TYPE_CHECKING:
    from dantex.server.session import SocksSession

__all__ = [
    "Plan",
    "PlannedHop",
    "RouteMarks",
    "RouteTable",
    "client_credentials",
    "remember_credentials",
]

#: danted's rank of a route by its parent's protocol (``route.order: dante``).
_DANTE_RANK = {"direct": 0, "socks_v4": 1, "socks_v5": 2, "http": 3}
_DEFAULT_PROTOCOLS = frozenset({"socks_v4", "socks_v5"})
_PROTOCOL_OF = {"connect": "tcp", "bind": "tcp", "udpassociate": "udp"}

#: The client's RFC 1929 credentials, kept (in memory only) while its session
#: lives, for routes that pass them on (``method: username``).
_FORWARDABLE: WeakKeyDictionary[SocksSession, UserPass] = WeakKeyDictionary()


def remember_credentials(session: SocksSession, user: bytes, password: bytes) -> None:
    """Keep a client's verified user name and password for its parents.

    Called by authentication when the session's configuration has a route
    that forwards them; they live as long as the session and are never logged.
    """
    _FORWARDABLE[session] = UserPass(
        user.decode("utf-8", "surrogateescape"),
        password.decode("utf-8", "surrogateescape"),
    )


def client_credentials(session: SocksSession) -> UserPass | None:
    """The client's own credentials, if it gave and we kept them."""
    return _FORWARDABLE.get(session)


@frozen
class PlannedHop:
    """One parent as this request will use it.

    :ivar host: the parent's address (IP or name); ``port`` its port.
    :ivar protocol: ``socks_v5``, ``socks_v4`` or ``http``.
    :ivar credentials: what we offer it (fixed, the client's, or none).
    :ivar fixed: whether ``credentials`` are the route's own.
    """

    host: str
    port: int
    protocol: str
    hop: Hop
    credentials: UserPass | None = None
    fixed: bool = False

    @property
    def address(self) -> Address:
        """The parent's address."""
        return Address.from_host(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.protocol} {self.host}.{self.port}"


@frozen
class Plan:
    """A route chosen for one request: its number and the path to take."""

    route: Route
    hops: tuple[PlannedHop, ...]  #: empty for ``via: direct``
    key: tuple[object, ...]

    @property
    def direct(self) -> bool:
        """Whether the route is ``via: direct``."""
        return not self.hops

    @property
    def tls(self) -> bool:
        """Whether any parent is reached over TLS."""
        return any(h.hop.tls for h in self.hops)

    def __str__(self) -> str:
        if not self.hops:
            return f"route #{self.route.number} (direct)"
        path = " -> ".join(str(h) for h in self.hops)
        return f"route #{self.route.number} ({path})"


class _State:
    __slots__ = ("bad_until", "failures")

    def __init__(self) -> None:
        self.failures = 0
        self.bad_until: float | None = None  #: -1: for ever


class RouteMarks:
    """Failure counts and bad marks, shared by the sessions of one process."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._states: dict[tuple[object, ...], _State] = {}

    def usable(self, key: tuple[object, ...]) -> bool:
        """Whether the route may be tried now (not marked, or the mark expired)."""
        state = self._states.get(key)
        if state is None or state.bad_until is None:
            return True
        if state.bad_until >= 0 and self._clock.seconds() >= state.bad_until:
            state.bad_until = None
            return True
        return False

    def failed(self, key: tuple[object, ...], maxfail: int, badexpire: float) -> bool:
        """Count a failure; True when the route has just been marked bad."""
        state = self._states.setdefault(key, _State())
        state.failures += 1
        if state.failures < max(1, maxfail):
            return False
        state.failures = 0
        state.bad_until = -1.0 if badexpire <= 0 else self._clock.seconds() + badexpire
        return True

    def succeeded(self, key: tuple[object, ...]) -> None:
        """The path worked: forget the route's earlier failures."""
        state = self._states.get(key)
        if state is not None:
            state.failures = 0
            state.bad_until = None


def _route_key(route: Route) -> tuple[object, ...]:
    """What identifies a route across reloads: its number and its path."""
    return (
        route.number,
        str(route.src),
        str(route.dst),
        tuple(
            (str(h.via), h.proxyprotocols, h.methods, h.username, h.tls)
            for h in route.hops
        ),
    )


def route_commands(route: Route) -> frozenset[str]:
    """The commands a route serves: its ``command:`` list, else by
    ``protocol:`` (``udp``: UDP ASSOCIATE), else CONNECT."""
    if route.commands is not None:
        return route.commands
    if route.protocols is not None and route.protocols == {"udp"}:
        return frozenset({"udpassociate"})
    return frozenset({"connect"})


class _Compiled:
    __slots__ = ("commands", "dst", "key", "route", "src")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.src: Matcher = compile_address(route.src)
        self.dst: Matcher = compile_address(route.dst)
        self.commands = route_commands(route)
        self.key = _route_key(route)


class RouteTable:
    """The routes of one configuration, compiled once.

    :param config: its ``routes``, ``route.order``, ``route.maxfail`` and
        ``route.badexpire`` are used.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.order = config.route_order
        self.maxfail = config.route_maxfail
        self.badexpire = config.route_badexpire
        self._routes = [_Compiled(r) for r in config.routes]
        #: commands some route names (others are served here, unrouted)
        self.commands = frozenset().union(*(c.commands for c in self._routes))
        #: whether a parent takes the client's own credentials (they are then
        #: kept in memory for the session's life, never logged)
        self.forwards = any(
            h.username is None and "username" in (h.methods or ())
            for r in config.routes
            for h in r.hops
        )

    def health(self, marks: RouteMarks) -> list[tuple[int, bool]]:
        """Each route's number and whether it may be used now (metrics)."""
        return [(c.route.number, marks.usable(c.key)) for c in self._routes]

    def plans(
        self,
        client: Address,
        target: Address | None,
        command: str,
        answers: Answers,
        marks: RouteMarks,
        *,
        credentials: UserPass | None = None,
    ) -> list[Plan]:
        """The usable routes for a request, in the order to try them.

        :param target: None for UDP ASSOCIATE, whose destinations are not
            known yet (``to:`` is then checked per datagram).
        :param credentials: the client's own, for ``method: username`` parents.
        :raises NeedLookup: a route's ``from:``/``to:`` needs DNS first.
        """
        found: list[Plan] = []
        proto = _PROTOCOL_OF.get(command, "tcp")
        for c in self._routes:
            route = c.route
            if command not in c.commands:
                continue
            if route.protocols is not None and proto not in route.protocols:
                continue
            if c.src(client, answers) is None:
                continue
            if target is not None and c.dst(target, answers) is None:
                continue
            if not marks.usable(c.key):
                continue
            plan = self._plan(c, target, command, credentials)
            if plan is not None:
                found.append(plan)
        if self.order == "dante":
            found.sort(
                key=lambda p: _DANTE_RANK[p.hops[0].protocol if p.hops else "direct"]
            )
        return found

    def _plan(
        self,
        c: _Compiled,
        target: Address | None,
        command: str,
        credentials: UserPass | None,
    ) -> Plan | None:
        route = c.route
        if route.direct:
            return Plan(route, (), c.key)
        hops: list[PlannedHop] = []
        for i, hop in enumerate(route.hops):
            via = hop.via
            host = via.name if via.network is None else str(via.network.network_address)
            assert host is not None and via.port is not None
            nxt = route.hops[i + 1] if i + 1 < len(route.hops) else None
            last = nxt is None
            next_ipv6 = (
                target is not None and target.type is AddressType.IPV6
                if last
                else nxt is not None
                and nxt.via.network is not None
                and nxt.via.network.version == 6
            )
            planned = self._hop(
                hop, host, via.port.low, command if last else "connect", next_ipv6,
                credentials,
            )  # fmt: skip
            if planned is None:
                return None
            hops.append(planned)
        first = hops[0]
        if (
            target is not None
            and target.is_ip
            and target.host == first.host
            and target.port == first.port
            and command == "connect"
        ):
            return None  # danted's routing-loop guard: the gateway is the target
        return Plan(route, tuple(hops), c.key)

    def covers(self, plan: Plan, target: Address, answers: Answers) -> bool:
        """Whether ``plan``'s route has ``target`` in its ``to:``.

        :raises NeedLookup: ``to:`` needs DNS for ``target`` first.
        """
        for c in self._routes:
            if c.route is plan.route:
                return c.dst(target, answers) is not None
        return False

    def _hop(
        self,
        hop: Hop,
        host: str,
        port: int,
        command: str,
        next_ipv6: bool,
        credentials: UserPass | None,
    ) -> PlannedHop | None:
        offered = hop.proxyprotocols or _DEFAULT_PROTOCOLS
        methods = hop.methods or ("none",)
        creds: UserPass | None = None
        fixed = False
        if hop.username is not None:
            creds, fixed = UserPass(hop.username, hop.password or ""), True
        elif "username" in methods:
            creds = credentials
        plain = "none" in methods
        v5 = "socks_v5" in offered and (plain or creds is not None)
        v4 = (
            "socks_v4" in offered
            and plain
            and not next_ipv6
            and command in ("connect", "bind")
        )
        http = bool(offered & {"http", "http_v1.0"}) and command == "connect"
        protocol: str | None = None
        if v4 and (self.order == "dante" or not v5):
            protocol = "socks_v4"
        elif v5:
            protocol = "socks_v5"
        elif http and (plain or creds is not None):
            protocol = "http"
        if protocol is None:
            return None
        if protocol == "socks_v4":
            creds, fixed = None, False
        return PlannedHop(host, port, protocol, hop, creds, fixed)
