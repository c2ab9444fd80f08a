"""First-match indexing: which rules *can* match, as a bit set, before any
rule is evaluated.

Rule ``i`` of a list is bit ``1 << i`` of a Python int.  Each fact of a
request (command, proxy protocol, methods, client address, target address)
selects a mask of the rules it does not exclude; AND-ing the masks leaves the
candidates, tried lowest bit first (file order).  Address masks come from a
table per (family, prefix length) of the rules' networks, so a request costs
one dict lookup per distinct prefix length, not one test per rule; port
masks come from the boundaries of the rules' port tests (one bisection), so
rules that differ only by port (``to: 0/0 port = 25``) are not tried one by
one either.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence

from dantex.config.model import AddressSpec, AddressSpecKind, PortSpec
from dantex.protocol.address import Address, AddressType
from dantex.rules.addresses import ip_int

__all__ = ["AddressIndex", "PortIndex", "ValueIndex", "bits"]


def bits(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class ValueIndex:
    """Rules restricted to a set of values (``None`` = any value).

    :param allowed: per rule, the values it accepts, or None for all.
    """

    def __init__(self, allowed: Sequence[Iterable[str] | None]) -> None:
        self._any = 0
        self._by_value: dict[str, int] = {}
        for i, values in enumerate(allowed):
            if values is None:
                self._any |= 1 << i
                continue
            for value in values:
                self._by_value[value] = self._by_value.get(value, 0) | (1 << i)
        #: the mask for every value alike when no rule names one (else None)
        self.fixed: int | None = None if self._by_value else self._any

    def mask(self, value: str) -> int:
        """The rules that accept ``value``."""
        return self._any | self._by_value.get(value, 0)


class AddressIndex:
    """Rules by the address they name in one slot (``from`` or ``to``).

    Rules whose address is not a plain network (``0/0``, host names,
    ``.domain``, interfaces) are always candidates; network rules are
    candidates for an IP inside their network, and for every host name
    request (which needs resolving before it can be compared).
    """

    def __init__(self, specs: Sequence[AddressSpec]) -> None:
        self._always = 0
        self._networks = 0
        #: (version, prefixlen) -> {network int: mask}
        tables: dict[tuple[int, int], dict[int, int]] = {}
        for i, spec in enumerate(specs):
            net = spec.network
            if spec.kind is not AddressSpecKind.NETWORK or net is None:
                self._always |= 1 << i
                continue
            self._networks |= 1 << i
            table = tables.setdefault((net.version, net.prefixlen), {})
            key = int(net.network_address)
            table[key] = table.get(key, 0) | (1 << i)
        self._v4 = _probes(tables, 4, 32)
        self._v6 = _probes(tables, 6, 128)
        self._memo: dict[str, int] = {}
        #: the mask for every address alike when no rule names a network
        self.fixed: int | None = None if self._networks else self._always

    def mask(self, address: Address) -> int:
        """The rules that can match ``address`` (an IP or a host name)."""
        if address.type is AddressType.DOMAIN:
            return self._always | self._networks
        host = address.host
        found = self._memo.get(host)
        if found is not None:
            return found
        ip = ip_int(host)
        mask = self._always
        for shift, table in self._v4 if address.type is AddressType.IPV4 else self._v6:
            hit = table.get((ip >> shift) << shift)
            if hit:
                mask |= hit
        if len(self._memo) >= 4096:
            self._memo.clear()
        self._memo[host] = mask
        return mask


class PortIndex:
    """Rules by the port test of one slot (``from`` or ``to``).

    Every rule's test is a union of at most two port intervals; toggling the
    rule's bit at each interval's start and one past its end, and sweeping
    the boundaries in order, gives the exact set of rules for every stretch
    of ports between two boundaries.
    """

    def __init__(self, specs: Sequence[AddressSpec]) -> None:
        self._always = 0
        toggles: dict[int, int] = {}
        for i, spec in enumerate(specs):
            if spec.port is None:
                self._always |= 1 << i
                continue
            for low, high in _intervals(spec.port):
                toggles[low] = toggles.get(low, 0) ^ (1 << i)
                toggles[high + 1] = toggles.get(high + 1, 0) ^ (1 << i)
        self._starts = sorted(toggles)
        self._masks: list[int] = []
        current = 0
        for start in self._starts:
            current ^= toggles[start]
            self._masks.append(current)
        #: the mask for every port alike when no rule tests one (else None)
        self.fixed: int | None = None if self._starts else self._always

    def mask(self, port: int) -> int:
        """The rules whose port test ``port`` can pass."""
        at = bisect_right(self._starts, port) - 1
        if at < 0:
            return self._always
        return self._always | self._masks[at]


def _intervals(spec: PortSpec) -> list[tuple[int, int]]:
    """The ports ``spec`` accepts, as disjoint inclusive intervals."""
    top = 65535
    low = spec.low
    op = spec.op
    if op == "eq":
        found = [(low, low)]
    elif op == "ne":
        found = [(0, low - 1), (low + 1, top)]
    elif op == "ge":
        found = [(low, top)]
    elif op == "le":
        found = [(0, low)]
    elif op == "gt":
        found = [(low + 1, top)]
    elif op == "lt":
        found = [(0, low - 1)]
    else:
        found = [(low, spec.high)]
    return [(a, b) for a, b in found if a <= b]


def _probes(
    tables: dict[tuple[int, int], dict[int, int]], version: int, width: int
) -> list[tuple[int, dict[int, int]]]:
    """(shift, table) per prefix length present for ``version``."""
    return [
        (width - prefixlen, table)
        for (ver, prefixlen), table in sorted(tables.items())
        if ver == version
    ]
