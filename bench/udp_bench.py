#!/usr/bin/env python3
"""UDP round trips per second: direct, through dantex, through danted, one run.

A UDP echo server runs in its own process; the client (another process per
measurement) keeps ``--window`` datagrams in flight through one UDP
ASSOCIATE (or straight to the echo for "direct") and counts round trips for
``--duration`` seconds, after a warm-up.  Every system runs once per round,
the order rotating from round to round; the table shows medians over the
rounds and the ratio to direct.  Stdlib only; Linux; danted must be
installed for the danted column (``--systems`` to leave it out).

    python3 bench/udp_bench.py                      # 3 rounds, 5 s each
    python3 bench/udp_bench.py --rounds 1 --duration 2 --window 1,8

Numbers from a shared 2-core machine are noisy: the client, the proxy and
the echo compete for the same cores.  Compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
print(s.getsockname()[1], flush=True)
recvfrom, sendto = s.recvfrom, s.sendto
while True:
    data, peer = recvfrom(65536)
    sendto(data, peer)
"""

RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error
}
socks pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: connect udpassociate
  log: error
}
socks pass {
  from: 0.0.0.0/0 to: 127.0.0.0/8
  command: udpreply
  log: error
}
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--systems", default="direct,dantex,danted")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds not counted")
    p.add_argument("--window", default="1,8", help="datagrams in flight (comma list)")
    p.add_argument("--size", type=int, default=64, help="payload bytes")
    p.add_argument(
        "--dantex-dir", type=Path, default=REPO, help="checkout to run dantex from"
    )
    p.add_argument("--workers", type=int, default=1, help="dantex --workers")
    p.add_argument("--relay", default="auto", help="dantex --relay")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--client", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the client (runs in its own process) ------------------------------------------


def _associate(proxy: tuple[str, int]) -> tuple[socket.socket, tuple[str, int]]:
    """RFC 1928: no-auth greeting, UDP ASSOCIATE for 0.0.0.0:0; the relay."""
    c = socket.create_connection(proxy, timeout=10)
    c.sendall(b"\x05\x01\x00")
    if c.recv(2) != b"\x05\x00":
        raise SystemExit("proxy refused the greeting")
    c.sendall(b"\x05\x03\x00\x01" + b"\x00" * 6)
    reply = b""
    while len(reply) < 10:
        chunk = c.recv(10 - len(reply))
        if not chunk:
            raise SystemExit("proxy closed the control connection")
        reply += chunk
    if reply[1] != 0 or reply[3] != 1:
        raise SystemExit(f"UDP ASSOCIATE refused: {reply.hex()}")
    return c, (socket.inet_ntoa(reply[4:8]), struct.unpack("!H", reply[8:10])[0])


def client_main(argv: list[str]) -> None:
    """``--client MODE PROXY_PORT ECHO_PORT WINDOW SIZE WARMUP DURATION``."""
    mode, proxy_port, echo_port, window, size, warmup, duration = argv
    echo = ("127.0.0.1", int(echo_port))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    payload = b"x" * int(size)
    control = None
    if mode == "direct":
        datagram, to = payload, echo
    else:
        control, to = _associate(("127.0.0.1", int(proxy_port)))
        header = b"\x00\x00\x00\x01" + socket.inet_aton(echo[0])
        datagram = header + struct.pack("!H", echo[1]) + payload
    u.connect(to)
    u.setblocking(False)
    send, recv = u.send, u.recv
    in_flight = count = lost = 0
    counting_from = time.monotonic() + float(warmup)
    base: tuple[int, float] | None = None  # (count, time) when counting began
    while True:
        while in_flight < int(window):
            send(datagram)
            in_flight += 1
        if not select.select([u], [], [], 0.2)[0]:
            lost += in_flight  # nothing for 200 ms: count them lost, go on
            in_flight = 0
            continue
        while True:
            try:
                recv(65536)
            except BlockingIOError:
                break
            in_flight -= 1
            count += 1
        now = time.monotonic()
        if base is None and now >= counting_from:
            base = (count, now)
        elif base is not None and now >= base[1] + float(duration):
            break
    assert base is not None
    rtps = (count - base[0]) / (now - base[1])
    if control is not None:
        control.close()
    print(json.dumps({"rtps": rtps, "lost": lost}))


# -- the systems under test -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, done: object, proc: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while not done():  # type: ignore[operator]
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start within {limit:g}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def echo_server() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        _stop(proc)


@contextmanager
def dantex(tmp: Path, args: argparse.Namespace) -> Iterator[int]:
    log = tmp / "dantex.log"
    conf = tmp / "dantex.conf"
    conf.write_text(
        f"logoutput: {log}\ninternal: 127.0.0.1 port = 0\n"
        f"external: 127.0.0.1\nsocksmethod: none\n{RULES}"
    )
    twistd = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"
    env = {**os.environ, "PYTHONPATH": str(args.dantex_dir)}
    proc = subprocess.Popen(
        [sys.executable, twistd, "-n", "--pidfile=", "dante", "-c", str(conf),
         "--workers", str(args.workers), "--relay", args.relay],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    port: list[int] = []

    def listening() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(r"listening on 127\.0\.0\.1\.(\d+)", text)
        if m and "running" in text:
            port.append(int(m.group(1)))
            return True
        return False

    try:
        _wait("dantex", listening, proc, 20)
        yield port[0]
    finally:
        _stop(proc)


@contextmanager
def danted(tmp: Path) -> Iterator[int]:
    binary = shutil.which("danted", path="/usr/sbin:/usr/bin:/sbin")
    if binary is None:
        raise SystemExit("danted is not installed (apt-get install dante-server)")
    port = _free_port()
    conf = tmp / "danted.conf"
    conf.write_text(
        f"logoutput: {tmp}/danted.log\ninternal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\nsocksmethod: none\nclientmethod: none\n"
        "user.privileged: root\nuser.unprivileged: nobody\n" + RULES
    )
    proc = subprocess.Popen(
        [binary, "-f", str(conf), "-p", str(tmp / "danted.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait("danted", listening, proc, 20)
        yield port
    finally:
        _stop(proc)


def measure(
    mode: str, proxy: int, echo: int, window: int, args: argparse.Namespace
) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", mode, str(proxy), str(echo),
         str(window), str(args.size), str(args.warmup), str(args.duration)],
        capture_output=True, timeout=args.warmup + args.duration + 60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{mode} client failed: {out.stderr.decode()[-500:]}")
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.client:
        client_main(args.client)
        return
    systems = [s for s in args.systems.split(",") if s]
    windows = [int(w) for w in args.window.split(",")]
    results: dict[str, dict[int, list[float]]] = {
        s: {w: [] for w in windows} for s in systems
    }
    with tempfile.TemporaryDirectory(prefix="dantex-udp-bench-") as tmpname:
        tmp = Path(tmpname)
        with echo_server() as echo, ExitStack() as stack:
            ports = {"direct": 0}
            if "dantex" in systems:
                ports["dantex"] = stack.enter_context(dantex(tmp, args))
            if "danted" in systems:
                ports["danted"] = stack.enter_context(danted(tmp))
            for r in range(args.rounds):
                order = systems[r % len(systems) :] + systems[: r % len(systems)]
                for window in windows:
                    for system in order:
                        res = measure(system, ports[system], echo, window, args)
                        results[system][window].append(res["rtps"])
                        print(
                            f"round {r + 1} window {window:>3} {system:>7}: "
                            f"{res['rtps']:>9.0f} round trips/s"
                            + (f" ({res['lost']:.0f} lost)" if res["lost"] else ""),
                            file=sys.stderr,
                        )
    print(report(results, windows, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(
    results: dict[str, dict[int, list[float]]],
    windows: list[int],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"UDP round trips/s, {args.size}-byte payload, median of {args.rounds} "
        f"round(s) of {args.duration:g} s (dantex --workers {args.workers} "
        f"--relay {args.relay}); [min-max] over the rounds",
        "",
        "| in flight | " + " | ".join(results) + " |",
        "|---" * (len(results) + 1) + "|",
    ]
    direct = results.get("direct")
    for w in windows:
        cells = []
        for system, by_window in results.items():
            runs = by_window[w]
            median = statistics.median(runs)
            cell = f"{median:,.0f}"
            if direct is not None and system != "direct":
                cell += f" ({median / statistics.median(direct[w]):.2f}x)"
            if len(runs) > 1:  # the spread shows how noisy the machine was
                cell += f" [{min(runs):,.0f}-{max(runs):,.0f}]"
            cells.append(cell)
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
