"""Local name resolution for ``resolve="local"``, through the reactor's resolver."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import (
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import implementer

from dantex.protocol.address import Address

__all__ = ["resolve_locally"]


@implementer(IResolutionReceiver)
class _First:
    def __init__(self, deferred: Deferred[str]) -> None:
        self._deferred = deferred
        self._addresses: list[str] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self._addresses.append(address.host)

    def resolutionComplete(self) -> None:
        if self._deferred.called:
            return
        if self._addresses:
            self._deferred.callback(self._addresses[0])
        else:
            self._deferred.errback(DNSLookupError("no address"))


def resolve_locally(
    reactor: object, target: Address, *, ipv4_only: bool = False
) -> Deferred[Address]:
    """``target`` with its host name replaced by the first address it resolves to.

    IP literals come back unchanged.

    :raises ValueError: ``reactor`` has no pluggable name resolver.
    :returns: fails with ``DNSLookupError`` when the name has no address (of
        the family SOCKS 4 can carry, with ``ipv4_only``).
    """
    if target.is_ip:
        d: Deferred[Address] = Deferred()
        d.callback(target)
        return d
    if not IReactorPluggableNameResolver.providedBy(reactor):
        raise ValueError('resolve="local" needs a reactor with a name resolver')
    found: Deferred[str] = Deferred()
    kinds = [IPv4Address] if ipv4_only else [IPv4Address, IPv6Address]
    reactor.nameResolver.resolveHostName(
        _First(found), target.host, 0, addressTypes=kinds
    )
    return found.addCallback(lambda ip: Address.from_host(ip, target.port))


@implementer(IResolutionReceiver)
class _All:
    def __init__(self, deferred: Deferred[tuple[str, ...]]) -> None:
        self._deferred = deferred
        self._addresses: list[str] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self._addresses.append(address.host)

    def resolutionComplete(self) -> None:
        if not self._deferred.called:
            self._deferred.callback(tuple(dict.fromkeys(self._addresses)))


def resolve_all(reactor: object, name: str) -> Deferred[tuple[str, ...]]:
    """Every address ``name`` resolves to (empty when none)."""
    if not IReactorPluggableNameResolver.providedBy(reactor):
        raise ValueError("resolving needs a reactor with a name resolver")
    found: Deferred[tuple[str, ...]] = Deferred()
    reactor.nameResolver.resolveHostName(_All(found), name, 0)
    return found
