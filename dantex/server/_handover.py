"""Taking a connected socket away from its Twisted TCP transport.

After negotiation the splice relay drives the client's socket itself.  The
transport is taken out of the reactor, its file descriptor detached (so the
transport can never close it), and any bytes it had not yet sent are handed
over with the socket.
"""

from __future__ import annotations

import socket

from twisted.internet import tcp

__all__ = ["can_take_socket", "take_socket"]


def can_take_socket(transport: object) -> bool:
    """Whether ``transport`` is a plain TCP transport we can detach (not TLS)."""
    return type(transport) in (tcp.Server, tcp.Client) and getattr(
        transport, "connected", False
    )


def take_socket(transport: tcp.Connection) -> tuple[socket.socket, bytes]:
    """Detach the socket from ``transport``.

    :returns: a socket object owning the descriptor, and the bytes the
        transport had buffered but not yet written.
    """
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
