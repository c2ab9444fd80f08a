"""Taking a negotiated client connection away from its transport for the relay.

A :class:`~dantex.server.lean.LeanTransport` hands over its registered
descriptor as is.  A Twisted TCP transport (used when a session is served by
Twisted's own port, e.g. in embedding applications) is taken out of the
reactor, its file descriptor detached so the transport can never close it,
and any bytes it had not yet sent are handed over with the socket.
"""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorFDSet

from dantex.server.lean import Conn, LeanTransport

__all__ = ["take_client"]


def take_client(transport: object, reactor: IReactorFDSet) -> tuple[Conn, bytes]:
    """The client's descriptor and the bytes its transport had not yet sent.

    :raises TypeError: the transport is not plain TCP (e.g. TLS): its bytes
        cannot be relayed by the kernel.
    """
    if isinstance(transport, LeanTransport):
        return transport.take()
    if type(transport) in (tcp.Server, tcp.Client) and getattr(
        transport, "connected", False
    ):
        sock, unsent = _detach(transport)  # type: ignore[arg-type]
        return Conn(reactor, sock), unsent
    raise TypeError(f"cannot relay a {type(transport).__name__} connection")


def _detach(transport: tcp.Connection) -> tuple[socket.socket, bytes]:
    transport.stopReading()
    transport.stopWriting()
    unsent = bytes(transport.dataBuffer[transport.offset :]) + b"".join(
        transport._tempDataBuffer
    )
    old: socket.socket = transport.socket
    family = old.family
    fd = old.detach()
    # Make the transport inert: writes become no-ops, no close reaches the fd.
    transport.connected = False
    transport.disconnected = True
    transport.dataBuffer = b""
    transport._tempDataBuffer = []
    transport._tempDataLen = 0
    return socket.socket(family, socket.SOCK_STREAM, fileno=fd), unsent
