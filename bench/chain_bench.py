"""Server chaining: bulk MB/s and setups/s through a parent, dantex vs danted.

    python3 bench/chain_bench.py --seconds 5 --concurrency 16 --megabytes 512

Every proxy under test forwards to the same parent, a danted on 127.0.0.1
(``socksmethod: none``); in one run:

* ``direct``          -- no proxy (the ceiling of this client and origin);
* ``parent-only``     -- the parent danted alone (one hop);
* ``dantex->danted``  -- dantex with ``route { via: <parent> proxyprotocol:
  socks_v5 }`` (splice relay, ``--workers 1`` unless ``--workers``);
* ``danted->danted``  -- danted 1.4 with the same route (its server
  chaining);
* ``dantex->danted (copy)`` -- dantex with ``--relay copy``, for reference.

One setup = TCP connect to the proxy, SOCKS 5 greeting and CONNECT to a
local echo server, one byte there and back, close; ``--concurrency`` at
once, in one-second rounds that alternate between the systems
(``--seconds`` rounds each).  The client closes with a reset (relayed
as one): tens of thousands of orderly closes per run would fill the
ephemeral port range with TIME_WAIT on this shared machine.  Bulk = one
stream of ``--megabytes`` MiB from a local source server through the chain,
read to EOF; the median of ``--repeat`` runs.  The machine is shared (2
cores, other engineers' jobs) and the Python load generator runs on the
same cores: numbers are noisy; compare within one run.  Needs danted (the test extra's
peers).

Not a test: a tool.  Stops its processes by PID when done.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the peers' start functions live in tests/

import bench._pytargets as targets  # noqa: E402
from bench._pytargets import CHUNK, load, serve  # noqa: E402

RULES = """\
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 0/0 to: 0/0 }
"""
DANTED_RULES = """\
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
"""
#: SO_LINGER on, 0 s: close() sends a reset


def parent_route(port: int) -> str:
    """A danted-style route for everything through the parent."""
    return (
        "route {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n"
        f"  via: 127.0.0.1 port = {port}\n  proxyprotocol: socks_v5\n"
        "  method: none\n  command: connect\n}\n"
    )


# -- origins: an echo server and a bulk source, in threads ----------------------


# -- the systems -------------------------------------------------------------------


@contextmanager
def dantex(config: str, workers: int, relay: str) -> Iterator[int]:
    """twistd dante with ``config`` (internal port 0); yields the port."""
    from tests.integration.dantex_server import start_dantex

    text = f"internal: 127.0.0.1 port = 0\nsocksmethod: none\n{RULES}{config}"
    args = ["--workers", str(workers), "--relay", relay]
    with (
        tempfile.TemporaryDirectory() as d,
        start_dantex(text, Path(d), extra_args=args, timeout=30) as server,
    ):
        yield server.port


# -- the client ----------------------------------------------------------------------


def _socks5(proxy: int | None, port: int) -> socket.socket:
    """A blocking connection to 127.0.0.1:``port``, through ``proxy`` if given."""
    if proxy is None:
        return socket.create_connection(("127.0.0.1", port))
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    reply = b""
    while len(reply) < 10:
        reply += s.recv(10 - len(reply))
    if reply[1] != 0:
        raise OSError(f"SOCKS reply {reply[1]}")
    return s


def bulk(proxy: int | None, source: int, megabytes: int) -> float:
    """MB/s of one stream of ``megabytes`` MiB."""
    s = _socks5(proxy, source)
    with s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        start = time.perf_counter()
        s.sendall(b"%d\n" % megabytes)
        total = 0
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while n := s.recv_into(view):
            total += n
        elapsed = time.perf_counter() - start
    if total != megabytes * CHUNK:
        raise RuntimeError(f"short stream: {total} bytes")
    return total / elapsed / 1e6


def run_all(
    systems: list[tuple[str, int | None]], echo: int, source: int, a: argparse.Namespace
) -> None:
    """Bulk for each system in turn; setups in interleaved one-second rounds,
    so that every system meets the same TIME_WAIT backlog (tens of thousands
    of closed loopback connections pile up and slow every connect)."""
    bulk_rates = {}
    for name, port in systems:
        asyncio.run(load(port, echo, 0.5, 2))  # warm-up
        bulk_rates[name] = statistics.median(
            bulk(port, source, a.megabytes) for _ in range(a.repeat)
        )
    done = dict.fromkeys(bulk_rates, 0)
    failed = dict.fromkeys(bulk_rates, 0)
    rounds = max(1, round(a.seconds))
    for _ in range(rounds):
        for name, port in systems:
            ok, bad = asyncio.run(load(port, echo, 1.0, a.concurrency))
            done[name] += ok
            failed[name] += bad
    print(f"{'':24s} {'bulk':>14s} {'setups':>18s}", flush=True)
    for name, _port in systems:
        print(
            f"{name:24s} {bulk_rates[name]:9.0f} MB/s "
            f"{done[name] / rounds:9.0f} setups/s  ({failed[name]} failed)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    a = parser.parse_args()
    from tests.integration.peers import run_danted

    echo = serve(targets.echo)
    source = serve(targets.source)
    with ExitStack() as stack:
        parent = stack.enter_context(run_danted(rules=DANTED_RULES))
        chained = stack.enter_context(
            run_danted(rules=DANTED_RULES, extra_config=parent_route(parent.port))
        )
        splice = stack.enter_context(
            dantex(parent_route(parent.port), a.workers, "auto")
        )
        copy = stack.enter_context(dantex(parent_route(parent.port), a.workers, "copy"))
        run_all(
            [
                ("direct", None),
                ("parent-only", parent.port),
                ("dantex->danted", splice),
                ("danted->danted", chained.port),
                ("dantex->danted (copy)", copy),
            ],
            echo,
            source,
            a,
        )


if __name__ == "__main__":
    main()
