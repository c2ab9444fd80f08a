"""The TLS path of an attempt (:mod:`._chain`): dantex's client endpoints
around Twisted's TLS.

The first parent is connected by the server's connector (as on the lean
path) and adopted into Twisted; each parent reached over TLS is wrapped in
``wrapClientTLS`` (service_identity checks ``tls.servername``, default the
``via:`` host, against ``tls.cafile``, default the system's roots); the hops
before the last are the client's CONNECT endpoints, the last one runs the
attempt's own handshake through the client's ``negotiate()``.  The relay
then copies through the resulting transport
(:class:`~dantex.server.relay.TransportTarget`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.client._negotiate import Tunnel, negotiate
from dantex.client.endpoints import (
    HTTPConnectEndpoint,
    Socks4ClientEndpoint,
    Socks5ClientEndpoint,
)
from dantex.client.errors import ProxyConnectError
from dantex.protocol.address import Address
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed
from dantex.server.lean import Conn
from dantex.server.relay import TransportTarget

if TYPE_CHECKING:
    from dantex.server._chain import Attempt
    from dantex.server.route import PlannedHop

__all__ = ["connect_tls"]


def connect_tls(attempt: Attempt, ip: str) -> None:
    """Build the path for ``attempt`` (its first parent at ``ip``) and run it;
    the outcome goes to ``attempt.tls_reached`` / ``attempt.tls_failed``."""
    endpoint: IStreamClientEndpoint = _FirstParent(attempt, ip)
    reactor = attempt.session.runtime.reactor
    asks = attempt._asks()
    for i, (hop, asked) in enumerate(asks):
        if hop.hop.tls:
            try:
                options = _tls_options(hop)
            except OSError as e:
                attempt._fail(ProxyConnectError(e, proxy=str(hop)))
                return
            endpoint = wrapClientTLS(options, endpoint)
        if i == len(asks) - 1:
            break
        common: dict[str, Any] = {"reactor": reactor, "name": str(hop)}
        try:
            if hop.protocol == "socks_v5":
                endpoint = Socks5ClientEndpoint(
                    endpoint, asked.host, asked.port, hop.credentials, **common
                )
            elif hop.protocol == "socks_v4":
                endpoint = Socks4ClientEndpoint(
                    endpoint, asked.host, asked.port, **common
                )
            else:
                endpoint = HTTPConnectEndpoint(
                    endpoint, asked.host, asked.port, hop.credentials, **common
                )
        except ValueError as e:
            attempt._fail(e)
            return
    last, asked = asks[-1]
    try:
        handshake = attempt._handshake(last, asked, attempt.command)
    except ValueError as e:
        attempt._fail(e)
        return
    sink = TransportTarget()
    d = negotiate(
        endpoint,
        handshake,
        _Given(sink),
        on_first_reply=lambda step: attempt._first_reply(step.bound),
    )
    attempt._step = d

    def reached(tunnel: Tunnel) -> None:
        from dantex.server._chain import Reached

        local = _address_of(tunnel.transport.getHost())
        # The bytes after the reply reach ``sink.dataReceived`` (kept there
        # for the relay) right after this callback.
        attempt.tls_reached(Reached(sink, tunnel.bound, local, b""))

    d.addCallbacks(reached, attempt.tls_failed)


def _address_of(addr: Any) -> Address:
    host = getattr(addr, "host", "0.0.0.0")
    return Address.from_host(str(host).partition("%")[0], int(getattr(addr, "port", 0)))


class _Given(ServerFactory):
    """A factory that hands out one protocol built beforehand."""

    noisy = False

    def __init__(self, protocol: IProtocol) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.protocol_instance  # type: ignore[return-value]


@implementer(IStreamClientEndpoint)
class _FirstParent:
    """The TCP connection to the first parent, made by the server's connector
    (source address as for a direct connect) and adopted into Twisted."""

    def __init__(self, attempt: Attempt, ip: str) -> None:
        self._attempt = attempt
        self._ip = ip

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt = self._attempt
        session = attempt.session
        runtime = session.runtime
        try:
            source, ports = attempt.source(self._ip)
        except ConnectFailed as e:
            failed: Deferred[IProtocol] = Deferred()
            failed.errback(Failure(e))
            return failed
        family = family_of(self._ip)
        d = runtime.connector.connect(
            family,
            (self._ip, attempt.first.port),
            source=source,
            source_ports=ports,
            options=session.external_options(),
            warn=session.policy.log.warning,
        )

        def connected(conn: Conn | socket.socket) -> Deferred[IProtocol]:
            sock = conn.release() if isinstance(conn, Conn) else conn
            attempt.connected = True
            kind = IPv6Address if family == socket.AF_INET6 else IPv4Address
            protocol = factory.buildProtocol(kind("TCP", self._ip, attempt.first.port))
            if protocol is None:
                sock.close()
                raise ConnectionError("no protocol")
            runtime.reactor.adoptStreamConnection(
                sock.fileno(), sock.family, _Given(_Watch(attempt, protocol))
            )
            sock.close()  # the reactor holds its own duplicate
            return succeed(protocol)

        return d.addCallback(connected)


@implementer(IHalfCloseableProtocol)
class _Watch(Protocol):
    """Between the TCP connection to the first parent and what runs on it
    (TLS): notes that the parent said something (a live parent is not marked
    bad for a slow target), passes everything on."""

    def __init__(self, attempt: Attempt, inner: IProtocol) -> None:
        self._attempt = attempt
        self._inner = inner

    def makeConnection(self, transport: Any) -> None:
        Protocol.makeConnection(self, transport)
        self._inner.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self._attempt.answered = True
        self._inner.dataReceived(data)

    def readConnectionLost(self) -> None:
        half = IHalfCloseableProtocol(self._inner, None)
        if half is not None:
            half.readConnectionLost()
        elif self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        half = IHalfCloseableProtocol(self._inner, None)
        if half is not None:
            half.writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._inner.connectionLost(reason)


_TRUST: dict[tuple[str, int], Any] = {}


def _tls_options(hop: PlannedHop) -> Any:
    """Client TLS options for a parent: its name checked by service_identity
    against ``tls.cafile`` (every certificate in it) or the system's roots."""
    name = hop.hop.tls_servername or hop.host
    path = hop.hop.tls_cafile
    if path is None:
        return optionsForClientTLS(name, trustRoot=platformTrust())
    mtime = Path(path).stat().st_mtime_ns
    root = _TRUST.get((path, mtime))
    if root is None:
        text = Path(path).read_bytes()
        marker = b"-----END CERTIFICATE-----"
        blocks = [b + marker for b in text.split(marker) if b"-----BEGIN" in b]
        root = trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])
        _TRUST.clear()
        _TRUST[(path, mtime)] = root
    return optionsForClientTLS(name, trustRoot=root)
