"""The text of Dante's log lines (danted 1.4 §2.12 of the reference).  Pure.

Session records read ``<verdict>(<rule#>): <proto>/<command> <mark>: <text>``
with addresses as ``ip.port`` and ``0.0.0.0.0`` for "unknown"; a client with a
user name is ``method%user@ip.port``.
"""

from __future__ import annotations

import time

from dantex.protocol.address import Address

__all__ = [
    "UNKNOWN",
    "client_text",
    "dante_addr",
    "end_counts",
    "line_prefix",
    "session_line",
]

#: How Dante writes an address it does not know.
UNKNOWN = "0.0.0.0.0"


def dante_addr(address: Address | None) -> str:
    """``ip.port`` (Dante's form), or ``0.0.0.0.0`` for None."""
    if address is None:
        return UNKNOWN
    return f"{address.host}.{address.port}"


def client_text(
    address: Address | None, method: str = "none", user: str | None = None
) -> str:
    """The client as Dante prints it: ``username%alice@127.0.0.1.5000``."""
    text = dante_addr(address)
    return f"{method}%{user}@{text}" if user else text


def session_line(
    verdict: str, rule: int, proto: str, command: str, mark: str, text: str
) -> str:
    """``pass(3): tcp/connect [: <text>``."""
    return f"{verdict}({rule}): {proto}/{command} {mark}: {text}"


def end_counts(
    written_a: int,
    a: str,
    read_a: int,
    written_b: int | None = None,
    b: str = "",
    read_b: int = 0,
) -> str:
    """``W1 -> <a> -> R1[, W2 -> <b> -> R2]`` (W written to that side, R read)."""
    text = f"{written_a} -> {a} -> {read_a}"
    if written_b is not None:
        text += f", {written_b} -> {b} -> {read_b}"
    return text


_cache: tuple[int, str] = (-1, "")


def line_prefix(now: float, program: str, pid: int, level: str) -> str:
    """``Nov 22 04:15:08 (1795320908.021702) dantex[15416]: info: ``."""
    global _cache
    second = int(now)
    if _cache[0] != second:
        _cache = (second, time.strftime("%b %d %H:%M:%S", time.localtime(second)))
    return f"{_cache[1]} ({now:.6f}) {program}[{pid}]: {level}: "


def vis(data: bytes) -> str:
    """Payload bytes as printable text (Dante's ``log: data`` vis-encodes):
    printable ASCII as is, everything else as ``\\n``, ``\\xNN``."""
    out = []
    for b in data:
        if 32 <= b < 127 and b != 0x5C:
            out.append(chr(b))
        elif b == 0x5C:
            out.append("\\\\")
        elif b == 10:
            out.append("\\n")
        elif b == 13:
            out.append("\\r")
        elif b == 9:
            out.append("\\t")
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def io_text(src: str, dst: str, data: bytes, *, payload: bool) -> str:
    """The text of an I/O record: ``<src pair> -> <dst pair> (n)[: payload]``."""
    text = f"{src} -> {dst} ({len(data)})"
    return f"{text}: {vis(data)}" if payload else text
