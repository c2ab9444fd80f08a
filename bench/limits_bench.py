"""Resource control: what limits cost in setups/s and in bulk transfers.

    python3 bench/limits_bench.py --seconds 5 --concurrency 16

Setups/s (one setup = connect, SOCKS 5 greeting + CONNECT to a local echo
server, one byte there and back, close with a reset), in interleaved
one-second rounds, for:

* ``no limits``        -- a client-rule and a socks-rule, nothing else;
* ``unlimited rule``   -- the same rules matched, but the file also holds a
  socks-rule with ``session.max`` and ``bandwidth`` that the traffic never
  matches (what an unlimited rule costs: it should be nothing);
* ``session.max rule`` -- the matched socks-rule has ``session.max`` and
  ``session.throttle`` high enough never to refuse (the cost of counting);
* ``session.max rule, 2 workers`` -- the same with ``--workers 2``: the
  counters are in the shared file under ``lockf``.

Bulk: one stream of ``--megabytes`` MiB, unlimited (splice relay) and under
``bandwidth:`` of ``--rate`` bytes/s (copy relay + shaper): the rate reached
and the server's CPU seconds per MB (from /proc).  The machine is shared;
compare within one run.  Not a test: a tool.  Stops its processes by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bench._pytargets as targets  # noqa: E402
from bench._pytargets import CHUNK, load, serve  # noqa: E402

CLIENT = "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
PASS = "socks pass { from: 0/0 to: 0/0 }\n"
UNMATCHED = "socks pass { from: 10.0.0.0/8 to: 0/0 session.max: 1 bandwidth: 1000 }\n"
COUNTED = (
    "socks pass { from: 0/0 to: 0/0 session.max: 1000000 "
    "session.throttle: 1000000/1 }\n"
)


@contextmanager
def dantex(rules: str, workers: int = 1) -> Iterator[tuple[int, int]]:
    """twistd dante serving ``rules``; yields (port, pid)."""
    from tests.integration.dantex_server import start_dantex

    config = f"internal: 127.0.0.1 port = 0\nsocksmethod: none\n{rules}"
    with (
        tempfile.TemporaryDirectory() as d,
        start_dantex(
            config, Path(d), extra_args=["--workers", str(workers)], timeout=30
        ) as server,
    ):
        yield server.port, server.pid


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children that have ended."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def bulk(proxy: int, pid: int, source: int, megabytes: int) -> tuple[float, float]:
    """(MB/s, server CPU seconds per MB) of one stream of ``megabytes`` MiB."""
    s = socket.create_connection(("127.0.0.1", proxy))
    with s:
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01")
        s.sendall(source.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 12:
            reply += s.recv(12 - len(reply))
        cpu = _cpu_seconds(pid)
        start = time.perf_counter()
        s.sendall(b"%d\n" % megabytes)
        total = 0
        buf = bytearray(1 << 20)
        while n := s.recv_into(buf):
            total += n
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(pid) - cpu
    return total / elapsed / 1e6, cpu / (total / 1e6)


def _check_cost() -> float:
    """Microseconds the session spends per call asking whether a rule without
    limits has any (it asks twice per session: client- and socks-rule)."""
    import timeit

    from dantex.config import parse
    from dantex.limits.sessions import limited

    cfg = parse("internal: 127.0.0.1 port = 1\nsocksmethod: none\n" + PASS, "b")
    rule = cfg.socks_rules[0]
    n = 200_000
    return min(timeit.repeat(lambda: limited(rule), number=n, repeat=5)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--rate", type=int, default=20_000_000)
    a = parser.parse_args()
    print(f"{'limited(rule), unlimited rule':30s} {_check_cost():7.3f} us per call")
    echo, source = serve(targets.echo), serve(targets.source)
    with ExitStack() as stack:
        systems = {
            "no limits": stack.enter_context(dantex(CLIENT + PASS)),
            "unlimited rule": stack.enter_context(dantex(CLIENT + UNMATCHED + PASS)),
            "session.max rule": stack.enter_context(dantex(CLIENT + COUNTED)),
            "session.max rule, 2 workers": stack.enter_context(
                dantex(CLIENT + COUNTED, workers=2)
            ),
        }
        for port, _pid in systems.values():
            asyncio.run(load(port, echo, 0.5, 2))  # warm-up
        done = dict.fromkeys(systems, 0)
        failed = dict.fromkeys(systems, 0)
        rounds = max(1, round(a.seconds))
        for _ in range(rounds):
            for name, (port, _pid) in systems.items():
                ok, bad = asyncio.run(load(port, echo, 1.0, a.concurrency))
                done[name] += ok
                failed[name] += bad
        for name in systems:
            print(
                f"{name:30s} {done[name] / rounds:7.0f} setups/s  "
                f"({failed[name]} failed)",
                flush=True,
            )
        shaped = f"socks pass {{ from: 0/0 to: 0/0 bandwidth: {a.rate} }}\n"
        port, pid = systems["no limits"]
        rate, cpu = bulk(port, pid, source, a.megabytes)
        print(
            f"{'bulk, no limits (splice)':30s} {rate:7.1f} MB/s  "
            f"{cpu * 1e3:.2f} ms CPU/MB"
        )
        port, pid = stack.enter_context(dantex(CLIENT + shaped))
        mb = max(1, min(a.megabytes, round(a.rate * 3 / CHUNK)))
        rate, cpu = bulk(port, pid, source, mb)
        print(
            f"{f'bulk, bandwidth: {a.rate}':30s} {rate:7.1f} MB/s  "
            f"{cpu * 1e3:.2f} ms CPU/MB ({mb} MiB)"
        )


if __name__ == "__main__":
    main()
