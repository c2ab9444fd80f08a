"""UDP ASSOCIATE through a SOCKS 5 proxy (RFC 1928 §4, §6, §7), as a client API.

:func:`udp_associate` binds a local UDP port, asks the proxy for a relay
over a TCP control connection (which may go through other hops), and fires
with a :class:`UdpAssociation` that sends and receives datagrams with the
§7 header.  Datagrams go straight from our UDP port to the proxy's relay
address: only the control connection can be chained.  The association
lives as long as the control connection.

Not implemented: fragmentation (FRAG != 0 is dropped on receipt, as Dante
does; we never send it).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorTime,
    IReactorUDP,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    Protocol,
    connectionDone,
)
from twisted.python.failure import Failure

from dantex.client._handshake import Socks5Handshake, UserPass
from dantex.client._negotiate import Tunnel, negotiate
from dantex.client.endpoints import describe_endpoint
from dantex.client.errors import ProxyClosedError, ProxyProtocolError
from dantex.protocol.address import Address
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.socks5 import Command, decode_udp, encode_udp

__all__ = ["UdpAssociation", "udp_associate"]

#: A receiver of datagrams: (payload, the address it came from).
Receiver = Callable[[bytes, Address], None]


class _Control(Protocol):
    """The TCP control connection: nothing flows on it; its end ends the association."""

    def __init__(self) -> None:
        self.association: UdpAssociation | None = None

    def dataReceived(self, data: bytes) -> None:
        pass  # RFC 1928 defines no data here; ignore, like Dante

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.association is not None:
            self.association._control_lost(reason)


class _OneControl(Factory):
    noisy = False  # no "Starting factory" line per connection

    def __init__(self, control: _Control) -> None:
        self._control = control

    def buildProtocol(self, addr: Any) -> _Control:
        return self._control


class _Datagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.association: UdpAssociation | None = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.association is not None:
            self.association._received(datagram, addr)


class UdpAssociation:
    """A live UDP association.

    :ivar relay: where our datagrams go (the reply's BND, with a wildcard
        host replaced by the control connection's peer or ``relay_host``).
    :ivar local: our UDP port's address.
    :ivar closed: fires (with ``None``) when the association has ended.
    """

    def __init__(
        self,
        port: Any,
        control: Tunnel,
        relay: Address,
        receiver: Receiver | None,
        queue_size: int,
    ) -> None:
        self._port = port
        self._control = control
        self.relay = relay
        self._relay_key = (relay.host, relay.port)
        host = port.getHost()
        self.local = Address.from_host(host.host, host.port)
        self._receiver = receiver
        self._queue: deque[tuple[bytes, Address]] = deque(maxlen=queue_size)
        self._waiting: deque[Deferred[tuple[bytes, Address]]] = deque()
        self.dropped = 0
        self.closed: Deferred[None] = Deferred()
        self._ended = False

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send ``data`` to ``host``:``port`` through the relay (§7 header, FRAG 0).

        :raises ValueError: a bad host or port.
        :raises ProxyClosedError: the association has ended.
        """
        if self._ended:
            raise ProxyClosedError(
                "the UDP association has ended", proxy=self._control.proxy
            )
        datagram = encode_udp(Address.from_host(host, port), data)
        self._port.write(datagram, self._relay_key)

    def receive(self) -> Deferred[tuple[bytes, Address]]:
        """The next datagram ``(payload, from)``, when no receiver was given.

        Up to ``queue_size`` datagrams wait; beyond that the oldest are
        dropped (counted in ``dropped``).  Fails with ``ProxyClosedError``
        once the association has ended.
        """
        d: Deferred[tuple[bytes, Address]] = Deferred(self._forget)
        if self._queue:
            d.callback(self._queue.popleft())
        elif self._ended:
            d.errback(self._closed_error())
        else:
            self._waiting.append(d)
        return d

    def _forget(self, d: Deferred[tuple[bytes, Address]]) -> None:
        if d in self._waiting:
            self._waiting.remove(d)

    def close(self) -> None:
        """End the association: close the control connection and the UDP port."""
        self._control.transport.loseConnection()
        self._end()

    def _received(self, datagram: bytes, addr: Any) -> None:
        # Only the relay may send to us (RFC 1928 §7); others are dropped.
        if (addr[0], addr[1]) != self._relay_key:
            self.dropped += 1
            return
        try:
            parsed = decode_udp(datagram)
        except RemoteProtocolError:
            self.dropped += 1
            return
        if parsed.frag != 0:
            self.dropped += 1
            return
        item = (parsed.data, parsed.address)
        if self._receiver is not None:
            self._receiver(*item)
        elif self._waiting:
            self._waiting.popleft().callback(item)
        else:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(item)

    def _closed_error(self) -> ProxyClosedError:
        return ProxyClosedError(
            "the UDP association has ended", proxy=self._control.proxy
        )

    def _control_lost(self, reason: Failure) -> None:
        self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._port.stopListening()
        while self._waiting:
            self._waiting.popleft().errback(self._closed_error())
        self.closed.callback(None)


def _relay_address(
    bound: Address | None, tunnel: Tunnel, relay_host: str | None
) -> Address:
    if bound is None:
        raise ProxyProtocolError("no relay address", proxy=tunnel.proxy)
    if relay_host is not None:
        return Address.from_host(relay_host, bound.port)
    if not bound.is_ip:
        raise ProxyProtocolError(
            f"relay address {bound} is a name; pass relay_host", proxy=tunnel.proxy
        )
    if ipaddress.ip_address(bound.host).is_unspecified:
        peer = tunnel.transport.getPeer()
        host = getattr(peer, "host", None)
        if not isinstance(host, str):
            raise ProxyProtocolError(
                "wildcard relay address; pass relay_host", proxy=tunnel.proxy
            )
        return Address.from_host(host, bound.port)
    return bound


def udp_associate(
    reactor: Any,
    proxy: IStreamClientEndpoint,
    *,
    credentials: UserPass | tuple[str, str] | None = None,
    bind_host: str = "0.0.0.0",
    relay_host: str | None = None,
    receiver: Receiver | None = None,
    queue_size: int = 256,
    connect_timeout: float | None = None,
    negotiate_timeout: float | None = None,
    name: str | None = None,
) -> Deferred[UdpAssociation]:
    """Set up a UDP association through the SOCKS 5 proxy ``proxy`` leads to.

    The request's DST.ADDR/DST.PORT is where we will send from:
    ``bind_host`` (``0.0.0.0`` when wildcard, RFC 1928 §4) and our UDP port.

    :param reactor: provides ``IReactorUDP`` (and the clock for timeouts).
    :param bind_host: local address of our UDP port (``"::"`` for IPv6 relays).
    :param relay_host: where to send datagrams instead of the reply's BND
        host (e.g. when the proxy answers a private address); the reply's
        port is kept.  Default: BND, or the proxy's address for a wildcard BND.
    :param receiver: called with ``(payload, from)`` for each datagram;
        without it, use :meth:`UdpAssociation.receive`.
    :returns: fires with the :class:`UdpAssociation`, or fails as
        :meth:`dantex.client.Socks5ClientEndpoint.connect` lists.  The UDP
        port is closed on failure and on cancellation.
    """
    if not IReactorUDP.providedBy(reactor):
        raise ValueError("udp_associate needs a reactor with IReactorUDP")
    if isinstance(credentials, tuple):
        credentials = UserPass(*credentials)
    datagrams = _Datagrams()
    port = reactor.listenUDP(0, datagrams, interface=bind_host, maxPacketSize=65535)
    local_port: int = getattr(port.getHost(), "port", 0)
    where = describe_endpoint(proxy)
    desc = name or (f"socks5 {where}" if where else "socks5 proxy")
    wildcard = ipaddress.ip_address(bind_host).is_unspecified
    source = Address.from_host("0.0.0.0" if wildcard else bind_host, local_port)
    handshake = Socks5Handshake(
        desc, source, command=Command.UDP_ASSOCIATE, credentials=credentials
    )
    control = _Control()
    d = negotiate(
        proxy,
        handshake,
        _OneControl(control),
        clock=reactor if IReactorTime.providedBy(reactor) else None,
        connect_timeout=connect_timeout,
        negotiate_timeout=negotiate_timeout,
    )

    def established(tunnel: Tunnel) -> UdpAssociation:
        try:
            relay = _relay_address(tunnel.bound, tunnel, relay_host)
        except ProxyProtocolError:
            tunnel.transport.loseConnection()
            raise
        association = UdpAssociation(port, tunnel, relay, receiver, queue_size)
        datagrams.association = association
        control.association = association
        return association

    def failed(failure: Failure) -> Failure:
        port.stopListening()
        return failure

    return d.addCallbacks(established, failed)
