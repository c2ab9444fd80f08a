"""A lean outbound TCP connect: a non-blocking socket watched for writability.

Twisted's ``connectTCP`` path (connector, client transport, factory start/stop)
costs about half of a tunnel's setup time; a relay only needs the connected
socket, so this hands back exactly that.  A source address is bound with
``IP_BIND_ADDRESS_NO_PORT`` so the kernel picks the port at connect time and
TIME_WAIT does not exhaust the ephemeral range under a high setup rate.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
    IReactorTime,
    IWriteDescriptor,
)
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["IP_BIND_ADDRESS_NO_PORT", "TcpConnector"]

#: linux/in.h; not exported by Python's socket module before 3.12.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@implementer(IWriteDescriptor)
class _Connecting:
    """Watches one in-progress connect; fires its Deferred once."""

    def __init__(self, reactor: IReactorFDSet, sock: socket.socket) -> None:
        self._reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.deferred: Deferred[socket.socket] = Deferred(self._cancel)
        self.timer: IDelayedCall | None = None

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dantex-connect"

    def doWrite(self) -> None:
        self._reactor.removeWriter(self)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(OSError(err, os.strerror(err)))
        else:
            self._stop_timer()
            self.deferred.callback(self.sock)

    def connectionLost(self, reason: Failure) -> None:
        # epoll reports a failed connect as HUP/ERR: the errno is in SO_ERROR.
        if self.deferred.called:
            return
        try:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            err = 0
        self._fail(OSError(err, os.strerror(err)) if err else reason.value)

    def timed_out(self) -> None:
        self.timer = None
        self._reactor.removeWriter(self)
        self._fail(TimeoutError("connect timed out"))

    def _fail(self, error: BaseException | None) -> None:
        self._stop_timer()
        self.sock.close()
        if not self.deferred.called:
            self.deferred.errback(Failure(error or ConnectionError("connect failed")))

    def _stop_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _cancel(self, d: Deferred[socket.socket]) -> None:
        self._stop_timer()
        self._reactor.removeWriter(self)
        self.sock.close()
        d.errback(Failure(CancelledError()))


class TcpConnector:
    """Connects TCP sockets for the relay.

    :param reactor: provides ``IReactorFDSet`` and ``IReactorTime``.
    """

    def __init__(self, reactor: IReactorFDSet) -> None:
        self._reactor = reactor

    def connect(
        self,
        family: int,
        sockaddr: tuple[str, int],
        *,
        source: str | None = None,
        timeout: float = 0.0,
    ) -> Deferred[socket.socket]:
        """Connect to ``sockaddr``; the Deferred fires with the socket.

        :param source: local address to send from (port chosen by the kernel).
        :param timeout: seconds before giving up (0: the kernel's own limit);
            fails with ``TimeoutError``.
        :returns: fires with a connected non-blocking socket with TCP_NODELAY,
            or fails with the ``OSError`` of the connect.  Cancelling closes
            the socket.
        """
        sock = socket.socket(
            family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if source is not None:
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            err = sock.connect_ex(sockaddr)
        except OSError as e:
            sock.close()
            d: Deferred[socket.socket] = Deferred()
            d.errback(Failure(e))
            return d
        if err == 0:
            d = Deferred()
            d.callback(sock)
            return d
        if err != errno.EINPROGRESS:
            sock.close()
            d = Deferred()
            d.errback(Failure(OSError(err, os.strerror(err))))
            return d
        pending = _Connecting(self._reactor, sock)
        self._reactor.addWriter(pending)
        if timeout > 0:
            clock: IReactorTime = self._reactor  # type: ignore[assignment]
            pending.timer = clock.callLater(timeout, pending.timed_out)
        return pending.deferred
