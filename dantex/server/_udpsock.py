"""UDP sockets for :mod:`dantex.server.udp`: binding, dissolving a connect,
and the reactor descriptor that drains a socket in batches.

Plain non-blocking sockets watched by the reactor, not ``listenUDP``: the relay
needs ``connect()``/disconnect and explicit port choices, and per datagram it
should cost one ``recvfrom`` and one ``send`` with no address parsing.
"""

from __future__ import annotations

import ctypes
import errno
import secrets
import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "MAX_DATAGRAM",
    "UdpEndpoint",
    "bind_in_range",
    "bind_pinned",
    "disconnect",
    "udp_socket",
]

#: Largest datagram read: the biggest UDP payload plus room to spare.
MAX_DATAGRAM = 65536
#: Datagrams read per readiness event before yielding to the reactor.
_BATCH = 64
#: Random tries in a port range before a sequential search (Dante tries 10).
_RANDOM_TRIES = 10

_libc: ctypes.CDLL | None = None


def udp_socket(family: int) -> socket.socket:
    """A non-blocking, close-on-exec UDP socket."""
    return socket.socket(
        family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )


def bind_in_range(sock: socket.socket, address: str, low: int, high: int) -> None:
    """Bind ``sock`` to a port in ``low``-``high``: random tries, then every port.

    :raises OSError: no port in the range is free (``EADDRINUSE``).
    """
    count = high - low + 1
    for _ in range(min(_RANDOM_TRIES, count)):
        try:
            sock.bind((address, _pick(low, high)))
            return
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    for port in range(low, high + 1):
        try:
            sock.bind((address, port))
            return
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise OSError(errno.EADDRINUSE, "no free ports in range to bind")


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def bind_pinned(sock: socket.socket, address: str) -> bool:
    """Bind ``sock`` to ``address`` and an explicitly chosen ephemeral port.

    Linux keeps a port across a later disconnect only if it was bound by
    number (a port the kernel picked is released by the disconnect), so a
    socket that may be connected and then disconnected needs one.

    :returns: True if pinned; False if it fell back to a kernel-chosen port.
    :raises OSError: the address cannot be bound at all.
    """
    low, high = _ephemeral_range()
    for _ in range(16):
        try:
            sock.bind((address, _pick(low, high)))
            return True
        except OSError as e:
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    sock.bind((address, 0))
    return False


def _pick(low: int, high: int) -> int:
    """A port in ``low``-``high``, unpredictable to others (like the kernel's)."""
    return low + secrets.randbelow(high - low + 1)


def disconnect(sock: socket.socket) -> bool:
    """Dissolve a UDP ``connect()`` (``connect`` to ``AF_UNSPEC``, POSIX).

    Python's ``socket.connect`` cannot express ``AF_UNSPEC``, hence libc.

    :returns: whether the socket is no longer connected.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    unspec = (ctypes.c_ubyte * 16)()  # sa_family = AF_UNSPEC (0), rest zero
    return int(_libc.connect(sock.fileno(), unspec, ctypes.sizeof(unspec))) == 0


Handler = Callable[[bytes, tuple[str, int]], None]


@implementer(IReadDescriptor)
class UdpEndpoint:
    """One UDP socket in the reactor; each datagram goes to ``handler``.

    ``connected`` is the peer ``sock`` is connected to (None if none): the
    handler is then given that address without asking the kernel.  ``lost``
    hears of the reactor dropping the socket (an exception in ``handler``).
    ``held`` stops reading mid-batch (``bandwidth:``, see ._udpshape).
    """

    __slots__ = (
        "closed",
        "connected",
        "fd",
        "handler",
        "held",
        "lost",
        "name",
        "sock",
    )

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        name: str,
        lost: Callable[[Failure], None] | None = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.name = name
        self.lost = lost
        self.connected: tuple[str, int] | None = None
        self.closed = False
        self.held = False

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return f"dantex-udp-{self.name}"

    def doRead(self) -> None:
        handler = self.handler
        connected = self.connected
        if connected is not None:  # the kernel filters: no address to read
            recv = self.sock.recv
            for _ in range(_BATCH):
                if self.closed or self.held:
                    return
                try:
                    data = recv(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    continue  # an ICMP error for an earlier send
                handler(data, connected)
            return
        recvfrom = self.sock.recvfrom
        for _ in range(_BATCH):
            if self.closed or self.held:
                return
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # An ICMP error for an earlier send (ECONNREFUSED ...): the
                # datagram is gone; the socket is fine.
                continue
            handler(data, addr)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped us (``doRead`` raised): tell the owner."""
        if self.lost is not None and not self.closed:
            self.lost(reason)
