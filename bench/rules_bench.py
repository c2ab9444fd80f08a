"""Time rule evaluation: ``RuleSet.match_socks`` with N socks-rules.

    python3 bench/rules_bench.py --rules 1000

Builds a configuration of N socks block rules, each for its own /24 and
port (the worst realistic case: nothing shares a prefix), followed by one
pass rule, then times a request that reaches the final pass rule (every block
rule must be ruled out first), one that hits the first rule, and one for an
IPv6 target, against N = 1 as the baseline.  Also times compiling the rules
(done once per configuration and reload).  Timings are per call, best of
several rounds; on a shared 2-core machine they are noisy.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from dantex.config import parse
from dantex.protocol.address import Address
from dantex.rules import RuleSet, SocksFacts

HEAD = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"


def config_text(n: int) -> str:
    """N block rules on distinct /24 networks, then one pass rule."""
    lines = [HEAD]
    for i in range(n):
        net = f"10.{(i >> 8) & 255}.{i & 255}.0/24"
        lines.append(
            f"socks block {{\n  from: 0/0 to: {net} port = {1 + i % 60000}\n}}\n"
        )
    lines.append("socks pass {\n  from: 0/0 to: 0/0\n}\n")
    return "".join(lines)


def per_call(fn: Callable[[], object], rounds: int = 5, number: int = 2000) -> float:
    """Best per-call time in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def facts(target: str, port: int) -> SocksFacts:
    return SocksFacts(
        Address.from_host("192.0.2.7", 40000),
        Address.from_host(target, port),
        "connect",
        "socks_v5",
    )


def measure(n: int) -> dict[str, float]:
    text = config_text(n)
    start = time.perf_counter()
    config = parse(text, f"<{n} rules>")
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    rules = RuleSet(config)
    compiled = time.perf_counter() - start
    last = facts("203.0.113.9", 443)
    first = facts("10.0.0.1", 1)
    v6 = facts("2001:db8::1", 443)
    assert rules.match_socks(last).number == n + 1
    assert rules.match_socks(first).number == 1
    return {
        "parse ms": parsed * 1e3,
        "compile ms": compiled * 1e3,
        "last rule us": per_call(lambda: rules.match_socks(last)),
        "first rule us": per_call(lambda: rules.match_socks(first)),
        "ipv6 us": per_call(lambda: rules.match_socks(v6)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000, help="rules (N)")
    args = parser.parse_args()
    base = measure(1)
    big = measure(args.rules)
    print(f"{'':14} {'N=1':>10} {f'N={args.rules}':>10}")
    for key in base:
        print(f"{key:14} {base[key]:10.2f} {big[key]:10.2f}")


if __name__ == "__main__":
    main()
