"""Generated rule sets under danted and `twistd dante`: the same verdict for
every request.

A seeded generator writes client- and socks-rules from the subset both
parsers share (networks with bit masks, every port operator, ranges,
``command: connect``, ``proxyprotocol:``, pass and block, one keyword per
line), then the same SOCKS 4 and 5 CONNECT requests (bytes written by hand
from RFC 1928 and the SOCKS 4 text) go to both servers from two client
addresses.  Targets are loopback ports that are open (the echo origin) or
closed, so a passed request answers 0x00 or 0x05 and a blocked one 0x02
(SOCKS 4: 90 / 91); a client-rule block closes without a reply.
"""

from __future__ import annotations

import random
import socket

import pytest

from tests.integration.conftest import RunDantex, StartPeer
from tests.integration.peers.danted import run_danted
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration

Request = tuple[str, str, int, str]  # version, target host, port, client source


def _port_test(rng: random.Random, ports: list[int]) -> str:
    p = rng.choice(ports)
    op = rng.choice(
        ["=", "eq", "!=", "ne", ">=", "ge", "<=", "le", ">", "gt", "<", "lt"]
    )
    if rng.random() < 0.25:
        low, high = sorted((rng.choice(ports), rng.choice(ports)))
        return f" port {low}-{high}" if rng.random() < 0.5 else f" port {low} - {high}"
    return f" port {op} {p}"


def generate(seed: int, ports: list[int]) -> str:
    """Client-rules then socks-rules, deterministic for ``seed``."""
    rng = random.Random(seed)
    nets = ["127.0.0.0/8", "127.0.0.1/32", "127.0.0.2/32", "127.0.0.0/30", "0.0.0.0/0"]
    text = [
        "client block {\n  from: 127.0.0.3/32 to: 0.0.0.0/0\n  log: connect\n}\n",
        "client pass {\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error\n}\n",
    ]
    for _ in range(rng.randint(6, 14)):
        verdict = rng.choice(["pass", "block"])
        src = rng.choice(nets)
        dst = rng.choice(nets[:-1]) + (
            _port_test(rng, ports) if rng.random() < 0.7 else ""
        )
        lines = [f"  from: {src} to: {dst}"]
        if rng.random() < 0.3:
            lines.append(f"  proxyprotocol: {rng.choice(['socks_v4', 'socks_v5'])}")
        if rng.random() < 0.2:
            lines.append("  command: connect")
        lines.append("  log: connect error")
        text.append(f"socks {verdict} {{\n" + "\n".join(lines) + "\n}\n")
    return "".join(text)


def requests(seed: int, ports: list[int]) -> list[Request]:
    rng = random.Random(seed * 7919)
    out: list[Request] = []
    for _ in range(40):
        out.append(
            (
                rng.choice(["4", "5"]),
                rng.choice(["127.0.0.1", "127.0.0.2"]),
                rng.choice(ports),
                rng.choice(["127.0.0.1", "127.0.0.2", "127.0.0.3"]),
            )
        )
    return out


def ask(host: str, port: int, request: Request) -> str:
    """One CONNECT; the reply code, or 'closed' when the server closed first."""
    try:
        return _ask(host, port, request)
    except (ConnectionResetError, BrokenPipeError):
        return "closed"


def _ask(host: str, port: int, request: Request) -> str:
    version, target, tport, source = request
    with socket.create_connection(
        (host, port), timeout=10, source_address=(source, 0)
    ) as s:
        try:
            if version == "5":
                s.sendall(b"\x05\x01\x00")
                if s.recv(2) != b"\x05\x00":
                    return "closed"
                s.sendall(
                    b"\x05\x01\x00\x01"
                    + socket.inet_aton(target)
                    + tport.to_bytes(2, "big")
                )
                reply = s.recv(10)
                return f"{reply[1]:#04x}" if len(reply) >= 2 else "closed"
            s.sendall(
                b"\x04\x01"
                + tport.to_bytes(2, "big")
                + socket.inet_aton(target)
                + b"u\x00"
            )
            reply = s.recv(8)
            return str(reply[1]) if len(reply) >= 2 else "closed"
        except (ConnectionResetError, BrokenPipeError):
            return "closed"  # a client-rule block: the server resets


@pytest.mark.parametrize("seed", [2, 3])
def test_generated_rules_same_verdicts(
    seed: int, dantex: RunDantex, start_peer: StartPeer, origins: Origins
) -> None:
    """Every request gets the same reply code from danted and from dantex (and
    the set exercises both verdicts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])
    ports = sorted({origins.echo_port, origins.http_port, closed})
    rules = generate(seed, ports)
    reqs = requests(seed, ports)
    danted = start_peer(run_danted, rules=rules)
    ours = dantex(rules, settings="external: 127.0.0.1")
    mismatches = [
        (r, ask(danted.host, danted.port, r), ask(ours.host, ours.port, r))
        for r in reqs
    ]
    outcomes = {m[1] for m in mismatches}
    assert {"0x02", "0x00"} <= outcomes or {"0x02", "0x05"} <= outcomes, outcomes
    mismatches = [m for m in mismatches if m[1] != m[2]]
    assert not mismatches, f"rules:\n{rules}\n(request, danted, dantex): {mismatches}"
