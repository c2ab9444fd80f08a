"""Moving bytes between a client and its target once a session is established.

Two implementations behind one small interface (:class:`Relay`):

* :class:`~dantex.server.splice.SpliceRelay` (Linux): the kernel moves bytes
  socket -> pipe -> socket with ``splice(2)``; Python only sees readiness
  events.  Used whenever nothing needs to see the bytes.
* :class:`TwistedRelay`: Twisted transports paired as each other's streaming
  producers.  Portable, and used where bytes must be seen (bandwidth limits,
  TLS to a parent proxy).

Both keep backpressure (a slow reader pauses the fast writer; at most one
buffer per direction is held), forward half-closes as ``shutdown(SHUT_WR)``,
and turn a reset on one side into a reset on the other.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet import interfaces as ti
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.limits.shaper import Shaper
from dantex.limits.timeouts import FIN_WAIT_REASON, IO_REASON

__all__ = ["EndReason", "Relay", "TransportTarget", "TwistedRelay"]


class EndReason:
    """Why a relayed session ended, in Dante's words."""

    __slots__ = ("error", "side")

    def __init__(self, side: str, error: str | None = None) -> None:
        self.side = side  #: "client", "target" or "timeout"
        self.error = error

    def __str__(self) -> str:
        if self.side == "timeout":
            return self.error or "i/o timeout"
        who = "local client" if self.side == "client" else "remote peer"
        if self.error:
            return f"{who} error ({self.error})"
        return f"{who} closed"


OnEnd = Callable[[EndReason], None]


class Relay:
    """Counters and the end-of-session callback shared by both relays.

    ``on_end`` is called exactly once, after both connections are closed.
    """

    kind = "relay"
    #: per-read hook for ``log: iooperation``/``data``: (from_client, bytes);
    #: only the copy relay calls it (the session picks that relay then)
    on_io: Callable[[bool, bytes], None] | None = None
    #: ``log: tcpinfo``: read TCP_INFO of both sockets before they close
    want_tcpinfo = False
    #: keep TCP_INFO without logging it (``<side>.log.<level>.tcp.*``)
    keep_tcpinfo = False
    #: (client, target) raw TCP_INFO, filled in when ``want_tcpinfo`` or
    #: ``keep_tcpinfo``
    tcp_info: tuple[bytes | None, bytes | None] = (None, None)
    #: ``timeout.tcp_fin_wait``: seconds a half-closed session may last (0: no limit)
    fin_wait = 0.0
    _fin_call: IDelayedCall | None = None

    def __init__(self, clock: IReactorTime, on_end: OnEnd, io_timeout: float) -> None:
        self._clock = clock
        self._on_end: OnEnd | None = on_end
        self._io_timeout = io_timeout
        self._idle_call: IDelayedCall | None = None
        self.last_active = clock.seconds()
        if io_timeout > 0:
            self._idle_call = clock.callLater(io_timeout, self._check_idle)

    def _check_idle(self) -> None:
        remaining = self.last_active + self._io_timeout - self._clock.seconds()
        if remaining > 0:
            self._idle_call = self._clock.callLater(remaining, self._check_idle)
            return
        self._idle_call = None
        self._timed_out()

    def _timed_out(self) -> None:
        self.abort(EndReason("timeout", IO_REASON), reset=False)

    def _half_close_began(self) -> None:
        """One side sent its EOF: start ``timeout.tcp_fin_wait`` (once)."""
        if self.fin_wait > 0 and self._fin_call is None and self._on_end is not None:
            self._fin_call = self._clock.callLater(self.fin_wait, self._fin_timed_out)

    def _fin_timed_out(self) -> None:
        self.abort(EndReason("timeout", FIN_WAIT_REASON), reset=False)

    def start(self) -> None:
        """Begin relaying (called once the session has recorded the relay)."""
        raise NotImplementedError

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        """End the session now: both connections reset (or closed in order)."""
        raise NotImplementedError

    def counts(self) -> tuple[int, int, int, int]:
        """Bytes (read from client, written to client, read from target,
        written to target)."""
        raise NotImplementedError

    def _capture_tcp_info(self, client: object, target: object) -> None:
        """Keep TCP_INFO of both sockets (once, while they are still open)."""
        wanted = self.want_tcpinfo or self.keep_tcpinfo
        if not wanted or self.tcp_info != (None, None):
            return
        from dantex.log.tcpinfo import read

        self.tcp_info = (read(_socket_of(client)), read(_socket_of(target)))

    def _ended(self, reason: EndReason) -> None:
        for call in (self._idle_call, self._fin_call):
            if call is not None and call.active():
                call.cancel()
        self._idle_call = self._fin_call = None
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(reason)


@implementer(ti.IHalfCloseableProtocol)
class _Side(Protocol):
    """One end of a :class:`TwistedRelay` (client or target)."""

    def __init__(self, relay: TwistedRelay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.peer: _Side | None = None
        self.read = 0

    def connectionMade(self) -> None:
        self.relay._made(self)

    def dataReceived(self, data: bytes) -> None:
        self.read += len(data)
        relay = self.relay
        if relay._track:
            relay.last_active = relay._clock.seconds()
        if relay.on_io is not None:
            relay.on_io(self.name == "client", data)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        if relay.shaper is not None:
            relay.shaper.consumed(self.name, len(data))

    def readConnectionLost(self) -> None:
        self.relay._half_closed(self)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.relay._lost(self, reason)


@implementer(ti.IHalfCloseableProtocol)
class TransportTarget(Protocol):
    """A target reached through a Twisted transport whose socket the relay
    cannot take (TLS to a parent proxy): the protocol of that transport.

    What arrives before the relay starts (the first bytes after the parent's
    reply, an EOF, the loss) is kept and replayed to the relay.  Twisted's
    TLS has no half-close, so an EOF from the client closes the TLS
    connection once pending bytes are written (``half_close`` is False).
    """

    half_close = False

    def __init__(self) -> None:
        self._side: Protocol | None = None
        self._data: list[bytes] = []
        self._eof = False
        self._reason: Failure | None = None

    def attach(self, side: Protocol) -> None:
        """Hand the transport and everything kept so far to ``side``."""
        assert self.transport is not None
        self._side = side
        side.makeConnection(self.transport)
        data, self._data = self._data, []
        for chunk in data:
            side.dataReceived(chunk)
        if self._eof:
            ti.IHalfCloseableProtocol(side).readConnectionLost()
        if self._reason is not None:
            side.connectionLost(self._reason)

    def dataReceived(self, data: bytes) -> None:
        if self._side is not None:
            self._side.dataReceived(data)
        else:
            self._data.append(data)

    def readConnectionLost(self) -> None:
        if self._side is not None:
            ti.IHalfCloseableProtocol(self._side).readConnectionLost()
        else:
            self._eof = True

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._side is not None:
            self._side.connectionLost(reason)
        else:
            self._reason = reason

    def close(self) -> None:
        """Drop the connection (the session ended before the relay started)."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


class _OneShotFactory(ServerFactory):
    noisy = False

    def __init__(self, side: _Side) -> None:
        self.side = side

    def buildProtocol(self, addr: object) -> Protocol:
        return self.side


class TwistedRelay(Relay):
    """Relay through Twisted transports paired as each other's producers.

    :param client: the client's connected socket.
    :param target: the connected target socket, or a :class:`TransportTarget`
        (its transport is used as it is).
    :param to_client: bytes for the client first (e.g. the SOCKS reply).
    :param to_target: bytes the client sent before the relay started.

    Both sockets are adopted into the reactor (which keeps duplicates) and
    closed here.
    """

    kind = "copy"
    #: ``bandwidth:``: pauses the transports while the bucket is in debt
    shaper: Shaper | None = None

    def __init__(
        self,
        reactor: ti.IReactorSocket,
        clock: IReactorTime,
        client: socket.socket,
        target: socket.socket | TransportTarget,
        on_end: OnEnd,
        *,
        to_client: bytes = b"",
        to_target: bytes = b"",
        io_timeout: float = 0.0,
    ) -> None:
        super().__init__(clock, on_end, io_timeout)
        self._reactor = reactor
        self._target_half_close = not isinstance(target, TransportTarget)
        self._track = io_timeout > 0
        self._sockets = (client, target)
        self._initial = (to_client, to_target)
        self.client = _Side(self, "client")
        self.target = _Side(self, "target")
        self.client.peer, self.target.peer = self.target, self.client
        self._eof: set[str] = set()
        self._closed: set[str] = set()
        self._first: EndReason | None = None
        self._written = [0, 0]

    def start(self) -> None:
        for side, sock, first in zip(
            (self.client, self.target), self._sockets, self._initial, strict=True
        ):
            if isinstance(sock, TransportTarget):
                sock.attach(side)
            else:
                self._reactor.adoptStreamConnection(
                    sock.fileno(), sock.family, _OneShotFactory(side)
                )
                sock.close()  # the reactor holds its own duplicate
            if first and side.transport is not None:
                side.transport.write(first)
        self._sockets = ()  # type: ignore[assignment]
        c, t = self.client.transport, self.target.transport
        if c is not None and t is not None and self.shaper is not None:
            self.shaper.attach(c, t)
        elif c is not None and t is not None:
            c.registerProducer(t, True)  # type: ignore[attr-defined]
            t.registerProducer(c, True)  # type: ignore[attr-defined]

    def _made(self, side: _Side) -> None:
        pass

    def counts(self) -> tuple[int, int, int, int]:
        to_target = self._initial[1]
        c_read = self.client.read + len(to_target)
        t_read = self.target.read
        return (c_read, t_read, t_read, c_read)

    def _half_closed(self, side: _Side) -> None:
        self._capture_tcp_info(self.client.transport, self.target.transport)
        self._eof.add(side.name)
        if self._first is None:
            self._first = EndReason(side.name)
            self._half_close_began()
        peer = side.peer
        if peer is not None and peer.transport is not None:
            if peer is self.target and not self._target_half_close:
                # TLS: our close_notify is the half-close; Twisted sends it
                # only once no producer is registered, and keeps reading
                # until the peer's close_notify.
                peer.transport.unregisterProducer()  # type: ignore[attr-defined]
                peer.transport.loseConnection()
            else:
                peer.transport.loseWriteConnection()  # type: ignore[attr-defined]
        if self._eof == {"client", "target"}:
            for s in (self.client, self.target):
                if s.transport is not None:
                    s.transport.loseConnection()

    def _lost(self, side: _Side, reason: Failure) -> None:
        if side.name in self._closed:
            return
        self._capture_tcp_info(self.client.transport, self.target.transport)
        self._closed.add(side.name)
        error = _error_text(reason)
        first = self._first
        if first is None or (
            error and side.name not in self._eof and first.error is None
        ):
            self._first = EndReason(side.name, error)
        peer = side.peer
        if (
            peer is not None
            and peer.name not in self._closed
            and peer.transport is not None
        ):
            if error:
                peer.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                peer.transport.loseConnection()
        if self._closed == {"client", "target"}:
            if self.shaper is not None:
                self.shaper.stop()
            self._ended(self._first or EndReason(side.name))
            # The sides, their peers and the relay refer to each other:
            # parting them lets reference counting free the session.
            for s in (self.client, self.target):
                s.peer = None
                del s.relay
            self.on_io = None

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        self._capture_tcp_info(self.client.transport, self.target.transport)
        self._first = reason
        for side in (self.client, self.target):
            if side.transport is not None:
                if reset:
                    side.transport.abortConnection()  # type: ignore[attr-defined]
                else:
                    side.transport.loseConnection()


def _socket_of(transport: object) -> socket.socket | None:
    """The socket under a transport (or the socket itself), if it has one."""
    if isinstance(transport, socket.socket):
        return transport
    get = getattr(transport, "getHandle", None)
    handle = get() if get is not None else None
    return handle if isinstance(handle, socket.socket) else None


def _error_text(reason: Failure) -> str | None:
    """None for a clean close, else the error's text (``Connection reset by peer``)."""
    from twisted.internet import error as terror

    if reason.check(terror.ConnectionDone):
        return None
    value = reason.value
    if isinstance(value, terror.ConnectionLost):
        return "Connection reset by peer"
    if isinstance(value, OSError) and value.strerror:
        return value.strerror
    text = str(value)
    return text or type(value).__name__
