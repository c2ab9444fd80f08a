"""Matching one address against one rule address (Dante §2.3).

Port first, then family: an IPv4 rule never matches an IPv6 address; ``0/0``
matches both and every host name.  ``.domain`` matches on label boundaries
(``.example.com`` matches ``example.com`` and ``www.example.com`` but not
``badexample.com``; Dante itself compares raw string suffixes).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

from attrs import frozen

from dantex.config.interfaces import interface_addresses
from dantex.config.model import AddressSpec, AddressSpecKind
from dantex.protocol.address import Address, AddressType

__all__ = ["Answers", "Lookup", "NeedLookup", "compile_address", "ip_int"]


@frozen
class Lookup:
    """A DNS question the matcher needs answered before it can decide."""

    kind: str  #: "forward" (name -> addresses) or "reverse" (address -> names)
    key: str


class NeedLookup(Exception):
    """Raised inside matching when a lookup result is missing."""

    def __init__(self, lookup: Lookup) -> None:
        super().__init__(lookup.key)
        self.lookup = lookup


class Answers(Protocol):
    """DNS answers known so far: ``answers[("forward", name)]`` -> addresses,
    ``answers[("reverse", ip)]`` -> names (empty = failed); KeyError if unknown."""

    def __getitem__(self, key: tuple[str, str], /) -> tuple[str, ...]: ...


#: A compiled matcher: (address, answers) -> the IP that matched, "" for a
#: match not tied to one IP, or None for no match.
Matcher = Callable[[Address, Answers], str | None]


@lru_cache(maxsize=8192)
def ip_int(host: str) -> int:
    """An IP address as an integer (memoized: the same clients come back)."""
    return int(ipaddress.ip_address(host))


def _answer(answers: Answers, kind: str, key: str) -> tuple[str, ...]:
    try:
        return answers[(kind, key)]
    except KeyError:
        raise NeedLookup(Lookup(kind, key)) from None


def _in_domain(name: str, domain: str) -> bool:
    if domain == ".":
        return True
    name = name.lower().rstrip(".")
    return name == domain[1:] or name.endswith(domain)


def compile_address(spec: AddressSpec) -> Matcher:
    """Turn a rule address into a fast matcher closure."""
    base = _compile_host(spec)
    port = spec.port
    if port is None:
        return base

    def with_port(addr: Address, answers: Answers) -> str | None:
        if not port.matches(addr.port):
            return None
        return base(addr, answers)

    return with_port


def _compile_host(spec: AddressSpec) -> Matcher:
    kind = spec.kind
    if kind is AddressSpecKind.ANY:
        return lambda addr, answers: ""
    if kind is AddressSpecKind.NETWORK:
        net = spec.network
        assert net is not None
        want = AddressType.IPV4 if net.version == 4 else AddressType.IPV6
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.prefixlen == 0:

            def any_of_family(addr: Address, answers: Answers) -> str | None:
                if addr.type is want:
                    return ""
                if addr.type is AddressType.DOMAIN:
                    for ip in _answer(answers, "forward", addr.host):
                        if (":" in ip) == (want is AddressType.IPV6):
                            return ip
                return None

            return any_of_family

        fam = socket.AF_INET if net.version == 4 else socket.AF_INET6
        pton = socket.inet_pton
        from_bytes = int.from_bytes

        def network(addr: Address, answers: Answers) -> str | None:
            if addr.type is want:
                value = from_bytes(pton(fam, addr.host), "big")
                return addr.host if lo <= value <= hi else None
            if addr.type is AddressType.DOMAIN:
                for ip in _answer(answers, "forward", addr.host):
                    parsed = ipaddress.ip_address(ip)
                    if parsed.version == net.version and lo <= int(parsed) <= hi:
                        return ip
            return None

        return network
    name = spec.name or ""
    if kind is AddressSpecKind.HOSTNAME:

        def hostname(addr: Address, answers: Answers) -> str | None:
            if addr.type is AddressType.DOMAIN:
                if addr.host.lower().rstrip(".") == name:
                    return ""
                return None
            if addr.host in _answer(answers, "forward", name):
                return addr.host
            return None

        return hostname
    if kind is AddressSpecKind.DOMAIN:

        def domain(addr: Address, answers: Answers) -> str | None:
            if addr.type is AddressType.DOMAIN:
                return "" if _in_domain(addr.host, name) else None
            for rname in _answer(answers, "reverse", addr.host):
                if _in_domain(rname, name):
                    return addr.host
            return None

        return domain
    if kind is AddressSpecKind.INTERFACE:

        def interface(addr: Address, answers: Answers) -> str | None:
            ips = {a.partition("%")[0] for _f, a in interface_addresses(name)}
            if addr.type is AddressType.DOMAIN:
                for ip in _answer(answers, "forward", addr.host):
                    if ip in ips:
                        return ip
                return None
            return addr.host if addr.host in ips else None

        return interface
    return lambda addr, answers: None
