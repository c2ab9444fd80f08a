"""Cost of the operations features on connection setups: metrics and HTTP CONNECT.

    python3 bench/ops_bench.py --seconds 5 --concurrency 16

Three dantex servers (``--workers 1``, splice relay) run side by side:

* ``socks5``           -- plain configuration;
* ``socks5+metrics``   -- the same with ``metrics.internal`` (every session
  end adds to the counters);
* ``http+metrics``     -- the metrics server driven with HTTP CONNECT
  (``extension: httpconnect``) instead of SOCKS 5.

One setup = TCP connect, SOCKS 5 greeting + CONNECT (or one CONNECT head),
one byte to a local echo server and back, close with a reset (orderly closes
would fill the ephemeral range with TIME_WAIT).  ``--concurrency`` at once,
one-second rounds alternating between the systems, ``--seconds`` rounds
each; the median setups/s is printed.  The machine is shared: compare
within one run.

Not a test: a tool.  Stops its processes by PID when done.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.dantex_server import DantexServer, start_dantex  # noqa: E402

RULES = """
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 0/0 to: 0/0 }
"""


@contextmanager
def echo_server() -> Iterator[int]:
    """A local asyncio-free echo: one thread, blocking accept loop."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0), backlog=1024)
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        srv.close()
        t.join(2)


async def one_setup(proxy: tuple[str, int], echo_port: int, http: bool) -> None:
    reader, writer = await asyncio.open_connection(*proxy)
    if http:
        head = f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode()
        writer.write(head)
        await reader.readuntil(b"\r\n\r\n")
    else:
        writer.write(
            b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01"
            + struct.pack("!H", echo_port)
        )
        await reader.readexactly(2 + 10)
    writer.write(b"x")
    await reader.readexactly(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def round_of(
    proxy: tuple[str, int], echo_port: int, http: bool, concurrency: int
) -> int:
    done = 0
    deadline = time.monotonic() + 1.0

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await one_setup(proxy, echo_port, http)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        echo_port = stack.enter_context(echo_server())
        base = "internal: 127.0.0.1 port = 0\nsocksmethod: none\n"
        plain: DantexServer = stack.enter_context(
            start_dantex(base + RULES, tmp / "plain", extra_args=["--workers", "1"])
        )
        metered: DantexServer = stack.enter_context(
            start_dantex(
                base
                + "extension: httpconnect\nmetrics.internal: 127.0.0.1 port = 0\n"
                + RULES,
                tmp / "metrics",
                extra_args=["--workers", "1"],
            )
        )
        systems = [
            ("socks5", (plain.host, plain.port), False),
            ("socks5+metrics", (metered.host, metered.port), False),
            ("http+metrics", (metered.host, metered.port), True),
        ]
        results: dict[str, list[int]] = {name: [] for name, _, _ in systems}
        for _ in range(args.seconds):
            for name, proxy, http in systems:
                n = asyncio.run(round_of(proxy, echo_port, http, args.concurrency))
                results[name].append(n)
        for name, counts in results.items():
            print(f"{name:16} {statistics.median(counts):8.0f} setups/s  {counts}")


if __name__ == "__main__":
    main()
