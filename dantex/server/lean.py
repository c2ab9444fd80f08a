"""Lean sockets for the server's hot path: accept, negotiate, hand over.

Twisted's TCP port and transport are general; a SOCKS server only needs a
few of their abilities, and on the setup path every system call and Python
layer counts.  Here:

* :class:`Conn` is one socket registered with the reactor for its whole life:
  its ``doRead``/``doWrite`` call replaceable callbacks, so the negotiation and
  then the relay drive the same descriptor without re-registering it.
* :class:`LeanTransport` is the ``ITransport`` a session talks to while it
  negotiates: a write goes straight to ``send()`` (no epoll round trip for a
  two-byte reply), pausing just stops reading.
* :class:`LeanPort` accepts connections in batches and builds sessions with
  a factory.  Accepted sockets inherit ``TCP_NODELAY`` from it.

Anything Twisted-shaped still works: the session only sees ``ITransport``.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import address as taddress
from twisted.internet import error as terror
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IListeningPort,
    IReactorFDSet,
    IReadDescriptor,
    IReadWriteDescriptor,
    ITCPTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.protocol.address import Address, AddressType

__all__ = [
    "Conn",
    "LeanPort",
    "LeanTransport",
    "listening_socket",
    "sockaddr_address",
]

_LINGER_RESET = struct.pack("ii", 1, 0)
_DONE = Failure(terror.ConnectionDone())
_LOST = Failure(terror.ConnectionLost())
_ACCEPT_BATCH = 64
_READ_SIZE = 65536


def _nothing() -> None:
    return None


def _ignore_lost(reason: Failure) -> None:
    return None


@implementer(IReadWriteDescriptor)
class Conn:
    """A socket and its reactor registration; the callbacks say what to do."""

    def __init__(self, reactor: IReactorFDSet, sock: socket.socket) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.reading = False
        self.writing = False
        self.closed = False
        #: the peer reset the connection: closing it needs no RST of ours
        self.reset_by_peer = False
        self.read_cb: Callable[[], None] = _nothing
        self.write_cb: Callable[[], None] = _nothing
        self.lost_cb: Callable[[Failure], None] = _ignore_lost

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dantex"

    def doRead(self) -> None:
        self.read_cb()

    def doWrite(self) -> None:
        self.write_cb()

    def connectionLost(self, reason: Failure) -> None:
        # The reactor has already forgotten us (error/HUP from epoll).
        self.reading = self.writing = False
        self.lost_cb(reason)

    def want_read(self, on: bool) -> None:
        """Start or stop watching for readability (no-op if unchanged)."""
        if on != self.reading and not self.closed:
            self.reading = on
            if on:
                self.reactor.addReader(self)
            else:
                self.reactor.removeReader(self)

    def want_write(self, on: bool) -> None:
        """Start or stop watching for writability (no-op if unchanged)."""
        if on != self.writing and not self.closed:
            self.writing = on
            if on:
                self.reactor.addWriter(self)
            else:
                self.reactor.removeWriter(self)

    def set_interest(self, read: bool, write: bool) -> None:
        """Watch for exactly these events, with one ``epoll_ctl`` at most."""
        if self.closed or (read == self.reading and write == self.writing):
            return
        fast = _epoll_state(self.reactor)
        if fast is None:
            self.want_read(read)
            self.want_write(write)
            return
        poller, reads, writes, selectables = fast
        fd = self.fd
        if read or write:
            flags = (_EPOLLIN if read else 0) | (_EPOLLOUT if write else 0)
            if self.reading or self.writing:
                poller.modify(fd, flags)
            else:
                poller.register(fd, flags)
            selectables[fd] = self
            if read:
                reads.add(fd)
            else:
                reads.discard(fd)
            if write:
                writes.add(fd)
            else:
                writes.discard(fd)
        else:
            poller.unregister(fd)
            reads.discard(fd)
            writes.discard(fd)
            selectables.pop(fd, None)
        self.reading = read
        self.writing = write

    def _forget(self) -> None:
        """Leave the reactor's books; the close that follows leaves epoll.

        Our sockets are never duplicated (close-on-exec, no dup), so closing
        the descriptor removes it from the epoll set without a system call.
        """
        fast = _epoll_state(self.reactor)
        if fast is None or not (self.reading or self.writing):
            self.want_read(False)
            self.want_write(False)
            return
        _poller, reads, writes, selectables = fast
        fd = self.fd
        reads.discard(fd)
        writes.discard(fd)
        if selectables.get(fd) is self:
            del selectables[fd]
        self.reading = self.writing = False

    def release(self) -> socket.socket:
        """Leave the reactor and give up the socket without closing it."""
        self.want_read(False)
        self.want_write(False)
        self.closed = True
        return self.sock

    def close(self, *, reset: bool = False) -> None:
        """Leave the reactor and close the socket (RST when ``reset``)."""
        if self.closed:
            return
        self._forget()
        self.closed = True
        # The callbacks are bound methods of whoever drove this socket, which
        # holds us in turn: dropping them lets reference counting free a
        # finished session instead of the cyclic collector.
        self.read_cb = self.write_cb = _nothing
        self.lost_cb = _ignore_lost
        if reset and not self.reset_by_peer:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.sock.close()


def sockaddr_address(addr: Any) -> Address:
    """The :class:`Address` of a socket-module address tuple (no parsing:
    a 4-tuple is IPv6, a 2-tuple IPv4; an IPv6 scope is dropped)."""
    host = addr[0]
    if len(addr) == 4:
        return Address(AddressType.IPV6, host.partition("%")[0], addr[1])
    return Address(AddressType.IPV4, host, addr[1])


_EPOLLIN = 1
_EPOLLOUT = 4
_epoll_cache: dict[int, Any] = {}


def _epoll_state(reactor: object) -> Any:
    """The epoll reactor's poller and bookkeeping, when it is one (else None)."""
    key = id(reactor)
    try:
        return _epoll_cache[key]
    except KeyError:
        pass
    from twisted.internet.epollreactor import EPollReactor

    state = None
    if isinstance(reactor, EPollReactor):
        r: Any = reactor
        state = (r._poller, r._reads, r._writes, r._selectables)
    _epoll_cache[key] = state
    return state


def _tcp_address(addr: Any) -> taddress.IPv4Address | taddress.IPv6Address:
    if len(addr) == 4:
        return taddress.IPv6Address("TCP", addr[0], addr[1], addr[2], addr[3])
    return taddress.IPv4Address("TCP", addr[0], addr[1])


@implementer(ITCPTransport)
class LeanTransport(Conn):
    """The transport of a negotiating session (ITCPTransport where it matters)."""

    disconnecting = False
    connected = True

    def __init__(
        self,
        reactor: IReactorFDSet,
        sock: socket.socket,
        peer: Any,
        host: Any | None,
    ) -> None:
        super().__init__(reactor, sock)
        self._peer = peer
        self._host = host
        self._out = b""
        self.protocol: Any = None
        self.read_cb = self._on_read
        self.write_cb = self._on_write
        self.lost_cb = self._on_lost

    # -- ITransport ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail()
            return
        if sent < len(data):
            self._out = data[sent:]
            self.want_write(True)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.closed:
            return
        self.disconnecting = True
        if not self._out:
            self._finish(_DONE, reset=False)

    def abortConnection(self) -> None:
        if not self.closed:
            self._finish(_LOST, reset=True)

    def loseWriteConnection(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def getPeer(self) -> taddress.IPv4Address | taddress.IPv6Address:
        return _tcp_address(self._peer)

    def getHost(self) -> taddress.IPv4Address | taddress.IPv6Address:
        if self._host is None:
            self._host = self.sock.getsockname()
        return _tcp_address(self._host)

    def socks_addresses(self) -> tuple[Address, Address]:
        """Peer and local address as :class:`Address` values, without parsing."""
        if self._host is None:
            self._host = self.sock.getsockname()
        return sockaddr_address(self._peer), sockaddr_address(self._host)

    def getTcpNoDelay(self) -> bool:
        return bool(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, enabled)

    def getTcpKeepAlive(self) -> bool:
        return bool(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, enabled)

    def getHandle(self) -> socket.socket:
        return self.sock

    # -- IPushProducer ---------------------------------------------------------

    def pauseProducing(self) -> None:
        self.want_read(False)

    def resumeProducing(self) -> None:
        if not self.closed:
            self.want_read(True)

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- reactor events ------------------------------------------------------------

    def _on_read(self) -> None:
        try:
            data = self.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._fail()
            return
        protocol = self.protocol
        if data:
            if protocol is not None:
                protocol.dataReceived(data)
            return
        self.want_read(False)
        half = IHalfCloseableProtocol(protocol, None)
        if half is not None:
            half.readConnectionLost()
        else:
            self._finish(_DONE, reset=False)

    def _on_write(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._fail()
            return
        self._out = self._out[sent:]
        if not self._out:
            self.want_write(False)
            if self.disconnecting:
                self._finish(_DONE, reset=False)

    def _on_lost(self, reason: Failure) -> None:
        self._finish(reason, reset=False)

    def _fail(self) -> None:
        self._finish(_LOST, reset=True)

    def _finish(self, reason: Failure, *, reset: bool) -> None:
        if self.closed:
            return
        self.close(reset=reset)
        self.connected = False
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(reason)

    # -- hand-over ---------------------------------------------------------------------

    def take(self) -> tuple[Conn, bytes]:
        """Give the socket, still registered, to a relay; return unsent bytes.

        The transport is inert afterwards: the relay's callbacks drive the
        descriptor from now on.
        """
        unsent, self._out = self._out, b""
        self.protocol = None
        self.connected = False
        self.read_cb = _nothing
        self.write_cb = _nothing
        self.lost_cb = _ignore_lost
        return self, unsent


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket with TCP_NODELAY.

    :raises OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(511)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@implementer(IListeningPort, IReadDescriptor)
class LeanPort:
    """Accepts connections on a listening socket and starts a session for each."""

    log = Logger()

    def __init__(
        self, reactor: IReactorFDSet, sock: socket.socket, factory: ServerFactory
    ) -> None:
        self.reactor = reactor
        self.sock = sock
        self.fd = sock.fileno()
        self.factory = factory
        self.family = sock.family
        bound = sock.getsockname()
        wildcard = bound[0] in ("0.0.0.0", "::")
        #: the address sessions see as "host" (None: ask the kernel per socket)
        self._host = None if wildcard else bound
        self._bound = bound
        self._listening = False
        self._emfile_logged = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dantex-listener"

    def startListening(self) -> None:
        if not self._listening:
            self._listening = True
            self.reactor.addReader(self)

    def stopListening(self) -> None:
        if self._listening:
            self._listening = False
            self.reactor.removeReader(self)
            self.sock.close()

    def getHost(self) -> taddress.IPv4Address | taddress.IPv6Address:
        return _tcp_address(self._bound)

    def connectionLost(self, reason: Failure) -> None:
        self._listening = False

    def doRead(self) -> None:
        accept = self.sock._accept  # type: ignore[attr-defined]
        family = self.family
        factory = self.factory
        reactor = self.reactor
        host = self._host
        # a factory that says it does not look at the address is spared one
        needs_address = getattr(factory, "needs_address", True)
        for _ in range(_ACCEPT_BATCH):
            try:
                fd, peer = accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._emfile_logged:
                        self._emfile_logged = True
                        self.log.error(
                            "accept() failed: {error}; retrying", error=e.strerror
                        )
                    return
                if e.errno == errno.ECONNABORTED:
                    continue
                raise
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            sock.setblocking(False)
            protocol = factory.buildProtocol(
                _tcp_address(peer) if needs_address else None
            )
            if protocol is None:
                sock.close()
                continue
            transport = LeanTransport(reactor, sock, peer, host)
            transport.protocol = protocol
            transport.want_read(True)  # before connectionMade, which may pause
            protocol.makeConnection(transport)
