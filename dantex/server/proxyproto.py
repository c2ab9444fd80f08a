"""The PROXY protocol (HAProxy, versions 1 and 2) in front of a SOCKS session.

With ``internal.proxyprotocol:`` set, a connection from a peer listed in
``internal.proxyprotocol.from`` must begin with a PROXY header; the address
it carries becomes the session's client address (rules, logs, limits,
ident).  The header is parsed with Twisted's own parsers
(:mod:`twisted.protocols.haproxy`); :class:`ProxyHeaderGate` is the
transport's protocol until the header is complete, then hands the same
transport -- and the bytes after the header -- to the :class:`SocksSession`.

* A trusted peer whose first bytes are not a header it may send (no header,
  a version not listed, a malformed header) is refused with a log line.
* A peer *not* trusted is served as itself; if it sends a PROXY header the
  session refuses it as an unknown SOCKS version, with a log line saying why
  (:func:`unknown_version`): a direct client can never claim an address.
* ``LOCAL`` (v2, HAProxy's health checks) and ``UNKNOWN`` (v1), and v2
  headers with no IP addresses (UNSPEC, UNIX), are served as the
  connection's real peer, as the PROXY protocol specification asks.

Not implemented: v2 TLVs are skipped, not read (no ``PP2_TYPE_SSL`` etc.).
"""

from __future__ import annotations

import ipaddress
import struct
from functools import cached_property
from typing import TYPE_CHECKING

from twisted.internet import address as taddress
from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.python.failure import Failure

from dantex.log.format import dante_addr
from dantex.protocol.address import Address, AddressType
from dantex.server._state import State

if TYPE_CHECKING:
    from dantex.config.model import Config
    from dantex.server.session import SocksSession

__all__ = [
    "HeaderError",
    "ProxyHeaderGate",
    "ProxyTrust",
    "looks_like_header",
    "parse_header",
    "unknown_version",
]

#: PROXY protocol v1: the whole line, CRLF included, is at most 107 bytes.
_V1_MAX = 107
_V1_START = b"PROXY "
_V2_SIG = V2Parser.PREFIX


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HeaderError(Exception):
    """The first bytes of a trusted connection are not an acceptable header."""


def looks_like_header(data: bytes) -> bool:
    """Whether ``data`` begins like a PROXY v1 or v2 header (any prefix)."""
    if not data:
        return False
    if data[:1] == b"P":
        n = min(len(data), len(_V1_START))
        return data[:n] == _V1_START[:n]
    n = min(len(data), len(_V2_SIG))
    return data[:n] == _V2_SIG[:n]


def unknown_version(data: bytes) -> str:
    """The log text for a first byte that is neither SOCKS 4 nor 5."""
    if looks_like_header(data):
        return (
            "PROXY protocol header from a source not in "
            "internal.proxyprotocol.from; connection refused"
        )
    return f"unknown SOCKS version {data[0]} in client request"


def _ip_address(addr: IAddress | None) -> Address | None:
    """An IP address and port from a parsed header (None: none carried)."""
    if not isinstance(addr, taddress.IPv4Address | taddress.IPv6Address):
        return None
    try:
        ip = ipaddress.ip_address(addr.host)
    except ValueError:
        raise HeaderError(f"bad address {addr.host!r} in PROXY header") from None
    if not 0 <= addr.port <= 0xFFFF:
        raise HeaderError(f"bad port {addr.port} in PROXY header")
    if isinstance(addr, taddress.IPv6Address) != (ip.version == 6):
        raise HeaderError("address family mismatch in PROXY header")
    kind = AddressType.IPV6 if ip.version == 6 else AddressType.IPV4
    return Address(kind, str(ip), addr.port)


def parse_header(
    data: bytes, versions: frozenset[str]
) -> tuple[tuple[Address, Address] | None, bytes] | None:
    """Parse a PROXY header at the start of ``data``.

    PROXY protocol specification (haproxy.org, proxy-protocol.txt) §2.1 (v1)
    and §2.2 (v2), via Twisted's ``V1Parser``/``V2Parser``.

    :param versions: the versions accepted: ``"v1"``, ``"v2"``.
    :returns: None while more bytes are needed; else ``(addresses, rest)``,
        ``addresses`` being (source, destination) or None for LOCAL/UNKNOWN
        and headers without IP addresses, ``rest`` the bytes after the header.
    :raises HeaderError: not a header, a version not accepted, or malformed.
    """
    if not data:
        return None
    if not looks_like_header(data):
        raise HeaderError("no PROXY protocol header from a trusted source")
    info: ProxyInfo
    if data[:1] == b"P":
        if "v1" not in versions:
            raise HeaderError("PROXY protocol v1 header, but only v2 is accepted")
        end = data.find(b"\r\n", 0, _V1_MAX)
        if end < 0:
            if len(data) >= _V1_MAX:
                raise HeaderError("PROXY protocol v1 header longer than 107 bytes")
            return None
        line, rest = data[:end], data[end + 2 :]
        if line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN "):
            return None, rest  # the v1 form of LOCAL (§2.1)
        try:
            info = V1Parser.parse(line)
        except (InvalidProxyHeader, ValueError, UnicodeError):
            raise HeaderError("malformed PROXY protocol v1 header") from None
    else:
        if len(data) < 16:
            return None
        if "v2" not in versions:
            raise HeaderError("PROXY protocol v2 header, but only v1 is accepted")
        size = 16 + struct.unpack("!H", data[14:16])[0]
        if len(data) < size:
            return None
        try:
            info = V2Parser.parse(data[:size])
        except (InvalidProxyHeader, KeyError, ValueError, struct.error):
            raise HeaderError("malformed PROXY protocol v2 header") from None
        rest = data[size:]
    source = _ip_address(info.source)
    destination = _ip_address(info.destination)
    if source is None or destination is None:
        return None, rest
    return (source, destination), rest


class ProxyTrust:
    """``internal.proxyprotocol`` and ``.from`` of one configuration, compiled."""

    def __init__(self, versions: frozenset[str], networks: tuple[str, ...]) -> None:
        self.versions = versions
        self.networks = tuple(ipaddress.ip_network(n) for n in networks)

    @classmethod
    def from_config(cls, config: Config) -> ProxyTrust | None:
        """None when the configuration does not use the PROXY protocol."""
        if not config.internal_proxyprotocol:
            return None
        return cls(config.internal_proxyprotocol, config.internal_proxyprotocol_from)

    @cached_property
    def _by_version(self) -> dict[int, tuple[_Network, ...]]:
        return {v: tuple(n for n in self.networks if n.version == v) for v in (4, 6)}

    def trusts(self, peer: IAddress | None) -> bool:
        """Whether ``peer`` (the connection's real address) may send a header."""
        if not isinstance(peer, taddress.IPv4Address | taddress.IPv6Address):
            return False
        try:
            ip = ipaddress.ip_address(peer.host.partition("%")[0])
        except ValueError:
            return False
        return any(ip in net for net in self._by_version[ip.version])


class ProxyHeaderGate(Protocol):
    """The protocol of a trusted connection until its PROXY header is read.

    :param session: the session to hand the connection to.
    :param trust: the versions accepted.
    """

    def __init__(self, session: SocksSession, trust: ProxyTrust) -> None:
        self.session = session
        self.trust = trust
        self._buf = b""
        self._done = False
        self._deadline: IDelayedCall | None = None
        self._where = "0.0.0.0.0 0.0.0.0.0"

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        # now: a closed socket no longer knows its local address
        self._where = f"{_text(transport.getPeer())} {_text(transport.getHost())}"
        session = self.session
        timeout = session.policy.timeouts.negotiate
        if timeout > 0:
            self._deadline = session.runtime.clock.callLater(timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._buf += data
        try:
            parsed = parse_header(self._buf, self.trust.versions)
        except HeaderError as e:
            self._refuse(str(e))
            return
        if parsed is not None:
            addresses, rest = parsed
            self._hand_over(addresses, rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._done:
            self._log("closed before sending a PROXY protocol header")
            self._stop()

    def _hand_over(
        self, addresses: tuple[Address, Address] | None, rest: bytes
    ) -> None:
        self._stop()
        self._buf = b""
        transport = self.transport
        assert transport is not None
        session = self.session
        session.proxied = addresses
        transport.protocol = session  # type: ignore[attr-defined]
        self.transport = None
        session.makeConnection(transport)  # type: ignore[no-untyped-call]

        if rest and session.state is not State.CLOSED:
            session.dataReceived(rest)

    def _timed_out(self) -> None:
        self._deadline = None
        timeout = self.session.policy.timeouts.negotiate
        self._refuse(f"no PROXY protocol header within {timeout:g}s")

    def _refuse(self, why: str) -> None:
        self._log(f"{why}; connection refused")
        self._stop()
        transport = self.transport
        if transport is not None:
            transport.loseConnection()

    def _stop(self) -> None:
        self._done = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _log(self, why: str) -> None:
        self.session.policy.log.info(f"{self._where}: {why}")


def _text(addr: IAddress) -> str:
    """Dante's ``ip.port`` for a Twisted address."""
    if isinstance(addr, taddress.IPv4Address | taddress.IPv6Address):
        return dante_addr(Address.from_host(addr.host.partition("%")[0], addr.port))
    return "0.0.0.0.0"
