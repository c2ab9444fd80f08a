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
from typing import Any

from twisted.internet import interfaces as ti
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["EndReason", "Relay", "TwistedRelay"]


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
    #: (client, target) raw TCP_INFO, filled in when ``want_tcpinfo``
    tcp_info: tuple[bytes | None, bytes | None] = (None, None)

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
        reason = EndReason("timeout", f"i/o timeout ({self._io_timeout:g}s idle)")
        self.abort(reason, reset=False)

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
        if not self.want_tcpinfo or self.tcp_info != (None, None):
            return
        from dantex.log.tcpinfo import read

        self.tcp_info = (read(_socket_of(client)), read(_socket_of(target)))

    def _ended(self, reason: EndReason) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(reason)


@implementer(ti.IHalfCloseableProtocol)
class _TargetSide(Protocol):
    """The target's end of a :class:`TwistedRelay`."""

    def __init__(self, relay: TwistedRelay) -> None:
        self.relay = relay

    def connectionMade(self) -> None:
        self.relay._target_made(self)

    def dataReceived(self, data: bytes) -> None:
        relay = self.relay
        relay.target_read += len(data)
        relay.client_written += len(data)
        relay.last_active = relay._clock.seconds()
        if relay.on_io is not None:
            relay.on_io(False, data)
        relay.client.write(data)

    def readConnectionLost(self) -> None:
        self.relay._half_closed("target")

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.relay._lost("target", reason)


class _OneShotFactory(ServerFactory):
    noisy = False

    def __init__(self, relay: TwistedRelay) -> None:
        self.relay = relay

    def buildProtocol(self, addr: object) -> Protocol:
        return _TargetSide(self.relay)


class TwistedRelay(Relay):
    """Relay through Twisted transports.

    :param client: the client's transport (the session feeds its data in
        with :meth:`client_data` and reports EOF with :meth:`client_eof`).
    :param target: the connected target socket; adopted into the reactor and
        closed here.
    :param to_target: bytes the client sent before the relay started.
    """

    kind = "copy"

    def __init__(
        self,
        reactor: ti.IReactorSocket,
        clock: IReactorTime,
        client: Any,
        target: socket.socket,
        to_target: bytes,
        on_end: OnEnd,
        io_timeout: float = 0.0,
    ) -> None:
        super().__init__(clock, on_end, io_timeout)
        self.client_read = 0
        self.client_written = 0
        self.target_read = 0
        self.target_written = 0
        self.client = client
        self.target: Any = None
        self._closed: set[str] = set()
        self._eof: set[str] = set()
        self._first: EndReason | None = None
        self._reactor = reactor
        self._socket: socket.socket | None = target
        self._to_target = to_target

    def start(self) -> None:
        sock, self._socket = self._socket, None
        assert sock is not None
        self._reactor.adoptStreamConnection(
            sock.fileno(), sock.family, _OneShotFactory(self)
        )
        sock.close()  # the reactor holds its own duplicate
        target = self.target
        if target is None:  # pragma: no cover - adoption always connects
            raise RuntimeError("target adoption failed")
        if self._to_target:
            self.client_read += len(self._to_target)
            self.target_written += len(self._to_target)
            target.write(self._to_target)
            self._to_target = b""
        target.registerProducer(self.client, True)
        self.client.registerProducer(target, True)
        self.client.resumeProducing()

    def _target_made(self, side: _TargetSide) -> None:
        self.target = side.transport

    def client_data(self, data: bytes) -> None:
        """Bytes from the client: forward them."""
        self.client_read += len(data)
        self.target_written += len(data)
        self.last_active = self._clock.seconds()
        if self.on_io is not None:
            self.on_io(True, data)
        if self.target is not None:
            self.target.write(data)

    def client_eof(self) -> None:
        """The client shut down its sending side."""
        self._half_closed("client")

    def _half_closed(self, side: str) -> None:
        self._capture_tcp_info(self.client, self.target)
        self._eof.add(side)
        if self._first is None:
            self._first = EndReason(side)
        other = self.target if side == "client" else self.client
        if other is not None:
            other.loseWriteConnection()
        if self._eof == {"client", "target"}:
            self.client.loseConnection()
            if self.target is not None:
                self.target.loseConnection()

    def client_lost(self, reason: Failure) -> None:
        """The client's connection is gone."""
        self._lost("client", reason)

    def _lost(self, side: str, reason: Failure) -> None:
        if side in self._closed:
            return
        self._capture_tcp_info(self.client, self.target)
        self._closed.add(side)
        other = self.target if side == "client" else self.client
        error = _error_text(reason)
        first = self._first
        if first is None or (error and side not in self._eof and first.error is None):
            self._first = EndReason(side, error)
        if other is not None and (
            ("target" if side == "client" else "client") not in self._closed
        ):
            if error:
                other.abortConnection()
            else:
                other.loseConnection()
        if self._closed == {"client", "target"}:
            self._ended(self._first or EndReason(side))

    def counts(self) -> tuple[int, int, int, int]:
        return (
            self.client_read,
            self.client_written,
            self.target_read,
            self.target_written,
        )

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        self._capture_tcp_info(self.client, self.target)
        self._first = reason
        for transport in (self.client, self.target):
            if transport is not None:
                if reset:
                    transport.abortConnection()
                else:
                    transport.loseConnection()


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
