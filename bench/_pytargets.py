"""Small threaded targets for the standalone Python benches (echo, source).

``bench/run.py`` uses the C targets; these serve the older single-purpose
scripts (``chain_bench.py``, ``limits_bench.py``), which need no compiler.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

#: bytes a source sends per write (and the unit of its request: MiB)
CHUNK = 1 << 20


def serve(handler: Callable[[socket.socket], None]) -> int:
    """A listening socket on 127.0.0.1 served by ``handler(conn)`` per
    connection, each in a daemon thread; returns its port."""
    server = socket.create_server(("127.0.0.1", 0), backlog=1024)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return int(server.getsockname()[1])


def echo(conn: socket.socket) -> None:
    """Send back what arrives until the peer closes."""
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def source(conn: socket.socket) -> None:
    """Read the number of MiB wanted (one line), send that many, close."""
    with conn:
        try:
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(16)
            block = b"\x5a" * CHUNK
            for _ in range(int(line)):
                conn.sendall(block)
        except (OSError, ValueError):
            pass
