"""Take the raw socket out of an established tunnel (for splice relays).

After a proxy handshake over plain TCP, the connected socket can leave
Twisted: :func:`detach_socket` hands back a duplicate of it and closes the
transport's own descriptor without shutting the connection down, so that,
for example, dantex's server can relay with ``splice(2)`` through a parent
proxy.  Tunnels whose first hop is TLS have no usable socket.
"""

from __future__ import annotations

import socket
from typing import Any

from dantex.client._negotiate import Tunnel

__all__ = ["detach_socket"]


def detach_socket(tunnel: Tunnel) -> socket.socket | None:
    """The tunnel's connected socket, now owned by the caller.

    Call it from the Deferred's callback (or later), before any data was
    written to the tunnel.  The transport stops reading and writing and is
    closed without ``shutdown(2)``; the application's protocol then sees
    ``connectionLost``.  Bytes already received after the proxy's reply are in
    ``tunnel.leftover`` (they are not in the socket any more).

    :returns: a non-blocking socket, or ``None`` when the transport is not a
        plain TCP connection (TLS to the first hop) or still has bytes to
        write (the socket is then left alone).
    """
    transport: Any = tunnel.transport
    handle = transport.getHandle()
    if not isinstance(handle, socket.socket) or handle.type != socket.SOCK_STREAM:
        return None
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(
        transport, "offset", 0
    )
    if pending > 0 or getattr(transport, "_tempDataLen", 0) > 0:
        return None
    sock = handle.dup()
    sock.setblocking(False)
    transport.stopReading()
    transport.stopWriting()
    # Twisted's tcp.Connection closes without shutdown(2) when this is false
    # (as for adopted sockets): the duplicate keeps the connection open.
    transport._shouldShutdown = False
    transport.loseConnection()
    return sock
