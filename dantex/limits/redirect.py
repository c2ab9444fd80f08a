"""Dante's redirect module (§1.9, §2.9): ``redirect to:`` and ``redirect from:``.

In a client- or socks-rule (the socks-rule's value wins, a client-rule's is
inherited by CONNECT):

* ``redirect to: ADDR [port = N]`` replaces the destination of a CONNECT
  before it is connected: ``ADDR`` is one address (``10.0.0.1/32``, full
  netmask) or a host name, or ``0/0`` to keep the requested address and
  change only the port.  Without a port (or with ``port = 0``) the requested
  port is kept.  The rewritten destination is what the log lines show and
  what routes see.
* ``redirect from: ADDR [port = N | port A - B]`` chooses the source of the
  outbound connection: one address of the target's family, an interface
  name (its first address of that family), or ``0/0`` to keep the usual
  choice (``external:``/``external.rotation``); the port, or a port from the
  range, is taken as the source port.

Not implemented: redirects of BIND and UDP ASSOCIATE (Dante gives them other
meanings), and ``redirect from:`` in ``route { }`` blocks; such rules only
redirect CONNECT, and a route's ``redirect from:`` is refused at start-up.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from dantex.config.interfaces import interface_addresses
from dantex.config.model import AddressSpec, AddressSpecKind, Rule
from dantex.protocol.address import Address, AddressType

__all__ = ["RedirectError", "check", "source", "spec_for", "target"]


class RedirectError(Exception):
    """``redirect from:`` cannot serve this target (no address of its family)."""


def check(which: str, spec: AddressSpec) -> str | None:
    """Why ``redirect <which>: spec`` cannot be honoured, or None.

    :param which: ``"to"`` or ``"from"``.
    """
    kind = spec.kind
    net = spec.network
    if (
        kind is AddressSpecKind.NETWORK
        and net is not None
        and net.prefixlen != net.max_prefixlen
    ):
        return (
            f"'redirect {which}:' needs one address, not the network {net} "
            f"(write {net.network_address}/{net.max_prefixlen})"
        )
    if kind is AddressSpecKind.DOMAIN:
        return f"'redirect {which}:' needs an address, not a domain"
    if which == "from" and kind is AddressSpecKind.HOSTNAME:
        return f"'redirect from:' needs an address or an interface, not {spec.name!r}"
    if which == "to" and kind is AddressSpecKind.INTERFACE:
        return f"'redirect to:' needs an address or a host name, not {spec.name!r}"
    port = spec.port
    if port is not None and port.op not in ("eq", "range"):
        return (
            f"'redirect {which}:' takes 'port = N'{' or a range' * (which == 'from')}"
        )
    if port is not None and port.op == "range" and which == "to":
        return "'redirect to:' takes one port, not a range"
    return None


def spec_for(which: str, rules: Iterable[Rule | None]) -> AddressSpec | None:
    """The ``redirect <which>:`` of the most specific rule that has one."""
    for rule in rules:
        if rule is not None:
            spec = rule.redirect_to if which == "to" else rule.redirect_from
            if spec is not None:
                return spec
    return None


def target(requested: Address, spec: AddressSpec) -> Address:
    """The destination ``redirect to: spec`` makes of ``requested``."""
    port = requested.port
    if spec.port is not None and spec.port.low > 0:
        port = spec.port.low
    if spec.network is not None:
        return Address.from_host(str(spec.network.network_address), port)
    if spec.kind is AddressSpecKind.HOSTNAME and spec.name:
        return Address(AddressType.DOMAIN, spec.name, port)
    return Address(requested.type, requested.host, port)  # 0/0: keep the address


def source(
    spec: AddressSpec, family: int, usual: str | None
) -> tuple[str | None, tuple[int, int] | None]:
    """``(address, ports)`` to connect from under ``redirect from: spec``.

    :param family: the target's address family.
    :param usual: the address chosen without a redirect (None: the kernel's).
    :returns: the address (None: the kernel's) and the inclusive source port
        range (None: any port).
    :raises RedirectError: the redirect has no address of ``family``.
    """
    host = usual
    if spec.network is not None:
        host = str(spec.network.network_address)
        want = socket.AF_INET6 if spec.network.version == 6 else socket.AF_INET
        if want != family:
            kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise RedirectError(f"redirect from: {host} cannot reach an {kind} target")
    elif spec.kind is AddressSpecKind.INTERFACE and spec.name:
        found = [
            a for f, a in interface_addresses(spec.name) if f == family and "%" not in a
        ]
        if not found:
            kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
            raise RedirectError(
                f"redirect from: interface {spec.name} has no {kind} address"
            )
        host = found[0]
    ports: tuple[int, int] | None = None
    port = spec.port
    if port is not None and port.op == "range":
        ports = (port.low, port.high)
    elif port is not None and port.low > 0:
        ports = (port.low, port.low)
    return host, ports
