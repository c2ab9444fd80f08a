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
    "Config",
    "ExternalAddress",
    "InternalAddress",
    "LogTarget",
    "PortSpec",
    "Rule",
    "RuleKind",
    "Timeouts",
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
    #: ``udp.portrange: A - B``: ports for the UDP relay socket facing the client.
    udp_portrange: tuple[int, int] | None = None

    @property
    def passes(self) -> bool:
        """True for ``pass`` rules."""
        return self.verdict == "pass"


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
    client_rules: tuple[Rule, ...] = ()
    socks_rules: tuple[Rule, ...] = ()
    warnings: tuple[ConfigWarning, ...] = ()
    #: ``udp.connectdst``: connect the external UDP socket to a sole destination.
    udp_connectdst: bool = True
    #: ``internal.advertise`` (dantex): address put in UDP ASSOCIATE replies,
    #: at most one per family, for servers behind NAT.
    internal_advertise: tuple[str, ...] = ()
    #: ``external.advertise`` (dantex): address put in BIND's first reply.
    external_advertise: tuple[str, ...] = ()
