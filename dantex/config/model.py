"""The parsed configuration: immutable values, each keeping its :class:`Span`.

A :class:`Config` is built once per file (at start-up and on every reload) and
shared read-only by every session that starts while it is current.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from enum import Enum

from attrs import field, frozen

from dantex.config.errors import ConfigWarning, Span

__all__ = [
    "AddressSpec",
    "AddressSpecKind",
    "Alarm",
    "Config",
    "ErrorLogSpec",
    "ExternalAddress",
    "Hop",
    "InternalAddress",
    "LogTarget",
    "Monitor",
    "PortSpec",
    "Route",
    "Rule",
    "RuleKind",
    "SessionLimits",
    "SocketOption",
    "Timeouts",
    "Use",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Dante's default SOCKS port, used when ``internal:`` gives none.
DEFAULT_PORT = 1080


@frozen
class PortSpec:
    """A port test: ``op`` one of eq ne ge le gt lt range; ``high`` for range."""

    op: str
    low: int
    high: int = 0

    def matches(self, port: int) -> bool:
        """Whether ``port`` passes the test."""
        op = self.op
        if op == "eq":
            return port == self.low
        if op == "ne":
            return port != self.low
        if op == "ge":
            return port >= self.low
        if op == "le":
            return port <= self.low
        if op == "gt":
            return port > self.low
        if op == "lt":
            return port < self.low
        return self.low <= port <= self.high

    def __str__(self) -> str:
        if self.op == "range":
            return f"port {self.low} - {self.high}"
        return f"port {self.op} {self.low}"


class AddressSpecKind(Enum):
    """What an address in a rule means."""

    ANY = "any"  #: ``0/0``: every IPv4 and IPv6 address and every host name
    NETWORK = "network"  #: CIDR: ``10.0.0.0/8``, ``::1/128``, ``0.0.0.0/0``
    HOSTNAME = "hostname"  #: ``www.example.org``
    DOMAIN = "domain"  #: ``.example.org``: the domain and its subdomains
    INTERFACE = "interface"  #: ``eth0``: the interface's addresses
    DIRECT = "direct"  #: ``via: direct`` in routes


@frozen
class AddressSpec:
    """An address as written in ``from:``/``to:``/``via:``, with its port test."""

    kind: AddressSpecKind
    span: Span
    network: IPNetwork | None = None
    name: str | None = None
    port: PortSpec | None = None

    def __str__(self) -> str:
        if self.kind is AddressSpecKind.ANY:
            text = "0/0"
        elif self.network is not None:
            text = str(self.network)
        else:
            text = self.name or ""
        return f"{text} {self.port}" if self.port else text


@frozen
class InternalAddress:
    """An ``internal:`` line: where to listen (``host`` is an IP literal)."""

    host: str
    port: int
    span: Span


@frozen
class ExternalAddress:
    """An ``external:`` line: an IP literal or an interface name."""

    span: Span
    ip: str | None = None
    interface: str | None = None


@frozen
class LogTarget:
    """One ``logoutput:``/``errorlog:`` destination."""

    kind: str  #: "stderr", "stdout", "file" or "syslog"
    span: Span
    path: str | None = None  #: file path
    facility: str = "daemon"  #: syslog facility


class RuleKind(Enum):
    """Which list a rule belongs to."""

    CLIENT = "client"
    SOCKS = "socks"
    HOSTID = "hostid"


@frozen
class Timeouts:
    """Seconds; 0 means "no limit" (Dante's convention)."""

    negotiate: float = 30.0
    connect: float = 30.0
    io_tcp: float = 0.0
    io_udp: float = 86400.0
    tcp_fin_wait: float = 0.0
    #: dantex: ``timeout.shutdown``, how long live sessions may drain after
    #: SIGTERM before they are closed (0: closed at once)
    shutdown: float = 0.0


@frozen
class Use:
    """One use of a gated feature (see :mod:`dantex.config.support`)."""

    feature: str  #: registry key: ``bandwidth``, ``method:username`` ...
    span: Span
    label: str  #: how messages name it: ``'bandwidth'``, ``method 'username'``


@frozen
class SocketOption:
    """``internal|external.socket|ip|tcp|udp.<option>: value`` (Dante §1.3)."""

    side: str  #: "internal" or "external"
    level: str  #: "socket", "ip", "tcp" or "udp"
    name: str  #: "so_rcvbuf", or the option number as text
    value: int
    span: Span


@frozen
class ErrorLogSpec:
    """``<side>.log.<level>.error`` / ``.tcp.disabled`` / ``.tcp.enabled``."""

    side: str
    level: str  #: a syslog level name: "warning", "info" ...
    what: str  #: "error", "tcp.disabled" or "tcp.enabled"
    values: tuple[str, ...]
    span: Span


@frozen
class SessionLimits:
    """The ``session.*`` keywords of one rule (Dante §1.6); None = not given."""

    max: int | None = None
    throttle: tuple[int, int] | None = None  #: (clients, seconds)
    state_key: str | None = None  #: "from", "hostid" or "user" (dantex)
    state_hostindex: int | None = None
    state_max: int | None = None
    state_throttle: tuple[int, int] | None = None
    inheritable: bool | None = None


@frozen
class Rule:
    """A ``client``/``socks``/``hostid`` pass/block rule.

    ``None`` in a list field means "not given" (Dante's defaults apply).
    ``number`` counts from 1 per kind in file order, as Dante numbers rules.
    """

    kind: RuleKind
    verdict: str  #: "pass" or "block"
    number: int
    span: Span
    src: AddressSpec
    dst: AddressSpec
    commands: frozenset[str] | None = None
    protocols: frozenset[str] | None = None
    proxyprotocols: frozenset[str] | None = None
    socksmethods: tuple[str, ...] | None = None
    clientmethods: tuple[str, ...] | None = None
    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    log: frozenset[str] = frozenset()
    timeouts: Mapping[str, float] = field(factory=dict)
    bandwidth: int | None = None  #: bytes per second
    #: dantex: ``bandwidth.state.key`` (``from``/``user``: a bucket per key)
    bandwidth_key: str | None = None
    session: SessionLimits | None = None
    redirect_from: AddressSpec | None = None
    redirect_to: AddressSpec | None = None
    udp_portrange: tuple[int, int] | None = None
    libwrap: str | None = None  #: the rest of the ``libwrap:`` line
    hostid: AddressSpec | None = None
    hostindex: int | None = None
    pam_servicename: str | None = None
    ldap: Mapping[str, tuple[str, ...]] = field(factory=dict)
    socket_options: tuple[SocketOption, ...] = ()
    log_levels: tuple[ErrorLogSpec, ...] = ()
    #: other parsed keywords without a field of their own (keyword -> values)
    extras: Mapping[str, tuple[str, ...]] = field(factory=dict)

    @property
    def passes(self) -> bool:
        """True for ``pass`` rules."""
        return self.verdict == "pass"


@frozen
class Hop:
    """One parent proxy on a route's path (:mod:`dantex.server.route`).

    Dante has one parent per route; dantex allows several (each further
    ``via:`` of a block starts a hop reached through the ones before it).
    The keywords written after a ``via:`` (``proxyprotocol:``, ``method:``
    and dantex's ``username:``, ``password:``, ``tls*:``) belong to its hop.
    """

    via: AddressSpec  #: the parent's address, with its port
    proxyprotocols: frozenset[str] | None = None  #: None: socks_v4 socks_v5
    methods: tuple[str, ...] | None = None  #: None: none
    #: fixed credentials (dantex): RFC 1929 for SOCKS 5, Basic for HTTP
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: TLS to this parent (dantex), verified against ``tls_cafile`` (else the
    #: system's trust store) for ``tls_servername`` (else the ``via:`` host)
    tls: bool = False
    tls_cafile: str | None = None
    tls_servername: str | None = None


@frozen
class Route:
    """A ``route { }`` block (server chaining, Dante §1.8).

    ``via``, ``proxyprotocols`` and ``methods`` describe the first parent as
    Dante has it; ``hops`` is the whole path (empty for ``via: direct``).
    """

    number: int
    span: Span
    src: AddressSpec
    dst: AddressSpec
    via: AddressSpec  #: DIRECT, or the gateway with its port
    commands: frozenset[str] | None = None
    protocols: frozenset[str] | None = None
    proxyprotocols: frozenset[str] | None = None
    methods: tuple[str, ...] | None = None
    extensions: frozenset[str] = frozenset()
    redirect_from: AddressSpec | None = None
    socket_options: tuple[SocketOption, ...] = ()
    extras: Mapping[str, tuple[str, ...]] = field(factory=dict)
    hops: tuple[Hop, ...] = ()

    @property
    def direct(self) -> bool:
        """Whether this is a ``via: direct`` route."""
        return self.via.kind is AddressSpecKind.DIRECT


@frozen
class Alarm:
    """A monitor alarm (Dante §1.7).

    data: triggers when at most ``limit`` bytes moved in ``seconds``;
    disconnect: ``limit``/``ratio`` sessions closed by ``side`` in ``seconds``.
    """

    kind: str  #: "data", "disconnect" or "test.mtu-error"
    span: Span
    side: str | None = None  #: "internal", "external" or None (both)
    direction: str | None = None  #: "recv", "send" or None (both)
    limit: int = 0
    ratio: int | None = None
    seconds: float = 5.0


@frozen
class Monitor:
    """A ``monitor { }`` block (Dante §1.7); served elsewhere."""

    number: int
    span: Span
    src: AddressSpec
    dst: AddressSpec
    commands: frozenset[str] | None = None
    protocols: frozenset[str] | None = None
    hostid: AddressSpec | None = None
    hostindex: int | None = None
    alarms: tuple[Alarm, ...] = ()


@frozen
class Config:
    """A whole configuration file, parsed and checked."""

    path: str
    internals: tuple[InternalAddress, ...]
    externals: tuple[ExternalAddress, ...] = ()
    external_rotation: str = "none"
    socksmethods: tuple[str, ...] = ()
    clientmethods: tuple[str, ...] = ()
    logoutput: tuple[LogTarget, ...] = ()
    errorlog: tuple[LogTarget, ...] = ()
    debug: int = 0
    timeouts: Timeouts = Timeouts()
    user_privileged: str | None = None
    user_unprivileged: str | None = None
    user_libwrap: str | None = None
    internal_protocols: frozenset[str] = frozenset({"ipv4", "ipv6"})
    external_protocols: frozenset[str] = frozenset({"ipv4", "ipv6"})
    srchost: frozenset[str] = frozenset()
    compatibility: frozenset[str] = frozenset()
    extensions: frozenset[str] = frozenset()
    udp_connectdst: bool = True
    resolveprotocol: str = "udp"
    libwrap_hosts_access: bool = False
    libwrap_allow: str | None = None
    libwrap_deny: str | None = None
    route_maxfail: int = 1
    route_badexpire: float = 300.0
    #: ``route.order`` (dantex): "file" (first match in file order) or
    #: "dante" (direct routes first, then by parent protocol, as danted)
    route_order: str = "file"
    pam_servicename: str | None = None
    ldap: Mapping[str, tuple[str, ...]] = field(factory=dict)
    #: dantex: ``username.passwordfile`` (absolute path), None = system accounts
    passwordfile: str | None = None
    #: dantex: ``auth.failures`` (failures allowed, per seconds); 0 = off
    auth_failures: tuple[int, float] = (5, 60.0)
    #: dantex: ``rfc931.port`` / ``rfc931.timeout``
    rfc931_port: int = 113
    rfc931_timeout: float = 10.0
    socket_options: tuple[SocketOption, ...] = ()
    log_levels: tuple[ErrorLogSpec, ...] = ()
    #: settings accepted without effect (cpu.*, child.*): keyword -> values
    ignored: Mapping[str, tuple[str, ...]] = field(factory=dict)
    client_rules: tuple[Rule, ...] = ()
    hostid_rules: tuple[Rule, ...] = ()
    socks_rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    #: every use of a gated feature (see :mod:`dantex.config.support`)
    uses: tuple[Use, ...] = ()
    warnings: tuple[ConfigWarning, ...] = ()
    #: ``internal.advertise`` (dantex): address put in UDP ASSOCIATE replies,
    #: at most one per family, for servers behind NAT.
    internal_advertise: tuple[str, ...] = ()
    #: ``external.advertise`` (dantex): address put in BIND's first reply.
    external_advertise: tuple[str, ...] = ()
    #: ``internal.proxyprotocol`` (dantex): PROXY header versions the
    #: listeners accept ("v1", "v2"); empty: no PROXY protocol
    internal_proxyprotocol: frozenset[str] = frozenset()
    #: ``internal.proxyprotocol.from`` (dantex): networks (CIDR text) whose
    #: connections must start with a PROXY header
    internal_proxyprotocol_from: tuple[str, ...] = ()
    #: ``metrics.internal`` (dantex): where the Prometheus endpoint listens
    #: (None: no metrics)
    metrics: InternalAddress | None = None
