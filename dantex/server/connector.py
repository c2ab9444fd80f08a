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
from typing import TypedDict

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
    IReactorTime,
)
from twisted.python.failure import Failure
from typing_extensions import Unpack

from dantex.server.lean import Conn
from dantex.server.sockopts import Compiled, Warn, apply

__all__ = ["IP_BIND_ADDRESS_NO_PORT", "ConnectOptions", "TcpConnector"]

#: linux/in.h; not exported by Python's socket module before 3.12.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class _Connecting(Conn):
    """One in-progress connect: a descriptor watched for writability.

    On success the Deferred fires with this very descriptor, still registered,
    so the relay that takes it over needs no new ``epoll_ctl`` registration.
    """

    def __init__(self, reactor: IReactorFDSet, sock: socket.socket) -> None:
        super().__init__(reactor, sock)
        self.deferred: Deferred[Conn] | None = Deferred(self._cancel)
        self.timer: IDelayedCall | None = None
        self.write_cb = self._writable
        self.lost_cb = self._lost

    def _writable(self) -> None:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(OSError(err, os.strerror(err)))
            return
        self._stop_timer()
        self.write_cb = _idle
        self.lost_cb = _ignore
        self._fire().callback(self)

    def _fire(self) -> Deferred[Conn]:
        """The Deferred, forgotten before it fires: its canceller holds us,
        and keeping both would leave a reference cycle behind."""
        d, self.deferred = self.deferred, None
        assert d is not None
        return d

    def _lost(self, reason: Failure) -> None:
        # epoll reports a failed connect as HUP/ERR: the errno is in SO_ERROR.
        if self.deferred is None:
            return
        try:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            err = 0
        self._fail(OSError(err, os.strerror(err)) if err else reason.value)

    def timed_out(self) -> None:
        self.timer = None
        self._fail(TimeoutError("connect timed out"))

    def _fail(self, error: BaseException | None) -> None:
        self._stop_timer()
        self.close()
        if self.deferred is not None:
            self._fire().errback(Failure(error or ConnectionError("connect failed")))

    def _stop_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _cancel(self, d: Deferred[Conn]) -> None:
        self._stop_timer()
        self.close()
        self.deferred = None
        d.errback(Failure(CancelledError()))


def _idle() -> None:
    return None


def _bind_in_range(
    sock: socket.socket, family: int, source: str | None, ports: tuple[int, int]
) -> None:
    """Bind ``sock`` to the first free port of ``ports`` (at most 1024 tries).

    :raises OSError: EADDRINUSE when none was free.
    """
    host = source or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    low, high = ports
    for port in range(low, min(high, low + 1023) + 1):
        try:
            sock.bind((host, port))
            return
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free source port in {low}-{high}")


def _bind_port(sock: socket.socket, family: int, source: str | None, port: int) -> bool:
    """Bind ``sock`` to ``port``; False (still unbound) when it cannot be had."""
    host = source or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        return False
    return True


def _ignore(reason: Failure) -> None:
    return None


def _no_warning(text: str) -> None:
    return None


class ConnectOptions(TypedDict, total=False):
    """The keywords of :meth:`TcpConnector.try_connect` (which documents
    them), for the callers that pass them on."""

    source: str | None
    timeout: float
    source_ports: tuple[int, int] | None
    options: tuple[Compiled, ...]
    warn: Warn
    prefer_port: int


def _established(sock: socket.socket) -> bool:
    """Whether a non-blocking connect that said EINPROGRESS is done already.

    To a local address the kernel completes the handshake before connect()
    returns; asking costs one system call and saves the writability event,
    its two epoll_ctl calls and the connect timer.  A remote target is not
    connected yet (ENOTCONN) and takes the usual path.
    """
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


class TcpConnector:
    """Connects TCP sockets for the relay.

    :param reactor: provides ``IReactorFDSet`` and ``IReactorTime``.
    """

    def __init__(self, reactor: IReactorFDSet) -> None:
        self._reactor = reactor

    def connect(
        self, family: int, sockaddr: tuple[str, int], **how: Unpack[ConnectOptions]
    ) -> Deferred[Conn]:
        """Connect to ``sockaddr``; the Deferred fires with its descriptor.

        See :meth:`try_connect`, which this wraps (same keywords).
        """
        result = self.try_connect(family, sockaddr, **how)
        return succeed(result) if isinstance(result, Conn) else result

    def try_connect(
        self,
        family: int,
        sockaddr: tuple[str, int],
        *,
        source: str | None = None,
        timeout: float = 0.0,
        source_ports: tuple[int, int] | None = None,
        options: tuple[Compiled, ...] = (),
        warn: Warn = _no_warning,
        prefer_port: int = 0,
    ) -> Conn | Deferred[Conn]:
        """Connect to ``sockaddr``: the descriptor itself when the kernel
        connected it at once (a local target), else a Deferred of it.

        :param source: local address to send from (port chosen by the kernel).
        :param source_ports: an inclusive range the source port must come
            from (``redirect from:``); the first free one is taken.
        :param timeout: seconds before giving up (0: the kernel's own limit);
            fails with ``TimeoutError``.
        :param options: socket options set before binding and connecting
            (:mod:`dantex.server.sockopts`); ``warn`` is told of a refused one.
        :param prefer_port: a source port to try first (``compatibility:
            sameport``: the client's); the kernel picks one if it is taken.
        :returns: the :class:`Conn` of a connected non-blocking socket with
            TCP_NODELAY (``.sock``), or a Deferred that fires with it or fails
            with the ``OSError`` of the connect.  Cancelling closes the socket.
        """
        try:
            # EMFILE/ENFILE when the process is out of descriptors: the
            # caller answers the client like any other connect error.
            sock = socket.socket(
                family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
        except OSError as e:
            return fail(Failure(e))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if options:
                apply(sock, options, warn)
            if source_ports is not None:
                _bind_in_range(sock, family, source, source_ports)
            elif prefer_port and _bind_port(sock, family, source, prefer_port):
                pass
            elif source is not None:
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            err = sock.connect_ex(sockaddr)
        except OSError as e:
            sock.close()
            d: Deferred[Conn] = Deferred()
            d.errback(Failure(e))
            return d
        if err == errno.EINPROGRESS and _established(sock):
            err = 0
        if err == 0:
            return Conn(self._reactor, sock)
        if err != errno.EINPROGRESS:
            sock.close()
            d = Deferred()
            d.errback(Failure(OSError(err, os.strerror(err))))
            return d
        pending = _Connecting(self._reactor, sock)
        pending.want_write(True)
        if timeout > 0:
            clock: IReactorTime = self._reactor  # type: ignore[assignment]
            pending.timer = clock.callLater(timeout, pending.timed_out)
        assert pending.deferred is not None
        return pending.deferred
