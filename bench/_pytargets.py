"""Targets and a setup load for the standalone Python benches.

``bench/run.py`` uses the C targets; these serve the older single-purpose
scripts (``chain_bench.py``, ``limits_bench.py``), which need no compiler.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable

#: bytes a source sends per write (and the unit of its request: MiB)
CHUNK = 1 << 20
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


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


async def one_setup(proxy: int | None, echo: int) -> bool:
    """Connect (through SOCKS 5 at ``proxy``, or straight to ``echo`` when
    None), CONNECT to the echo, one byte there and back, close with a reset."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy or echo)
    try:
        if proxy is not None:
            writer.write(
                b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01"
                + echo.to_bytes(2, "big")
            )
            if await reader.readexactly(2) != b"\x05\x00":
                return False
            if (await reader.readexactly(10))[1] != 0:
                return False
        writer.write(b"x")
        return await reader.readexactly(1) == b"x"
    finally:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # close with a reset: no TIME_WAIT left behind
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        writer.close()


async def load(
    proxy: int | None, echo: int, seconds: float, conc: int
) -> tuple[int, int]:
    """``conc`` clients doing :func:`one_setup` for ``seconds``: (done, failed)."""
    return await run_load(lambda: one_setup(proxy, echo), seconds, conc)


async def run_load(
    setup: Callable[[], Awaitable[bool]], seconds: float, conc: int
) -> tuple[int, int]:
    """``conc`` clients each awaiting ``setup()`` in turn for ``seconds``:
    (done, failed); a setup taking over 10 s counts as failed."""
    done = failed = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, failed
        while time.monotonic() < deadline:
            try:
                ok = await asyncio.wait_for(setup(), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                ok = False
            if ok:
                done += 1
            else:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    return done, failed
