"""``log: tcpinfo``: the kernel's TCP_INFO for a socket, as one log field.

Linux's ``struct tcp_info`` starts with 8 one-byte fields followed by 32-bit
counters (``tcpi_rto`` ... ``tcpi_total_retrans``); only that stable prefix
is read.  On other systems (or a closed socket) the block says "unavailable".
"""

from __future__ import annotations

import socket
import struct

__all__ = ["describe", "negotiated", "read"]

_LAYOUT = struct.Struct("=8B24I")
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
#: (label, index into the unpacked tuple) of what the log line shows.
_FIELDS = (
    ("state", 0),
    ("retransmits", 2),
    ("rto", 8),
    ("snd_mss", 10),
    ("rcv_mss", 11),
    ("unacked", 12),
    ("lost", 14),
    ("retrans", 15),
    ("pmtu", 21),
    ("rtt", 23),
    ("rttvar", 24),
    ("snd_ssthresh", 25),
    ("snd_cwnd", 26),
    ("total_retrans", 31),
)
_STATES = {
    1: "established",
    2: "syn-sent",
    3: "syn-recv",
    4: "fin-wait1",
    5: "fin-wait2",
    6: "time-wait",
    7: "close",
    8: "close-wait",
    9: "last-ack",
    10: "listen",
    11: "closing",
}


def read(sock: socket.socket | None) -> bytes | None:
    """Raw TCP_INFO of ``sock``, or None when it cannot be had."""
    if sock is None:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _LAYOUT.size)
    except (OSError, ValueError):
        return None


#: ``tcpi_options`` bits (linux/tcp.h) by Dante's names for them
_OPTION_BITS = {"timestamps": 1, "sack": 2, "wscale": 4, "ecn": 8}


def negotiated(raw: bytes | None) -> frozenset[str] | None:
    """The TCP options the connection negotiated (``ecn``, ``sack``,
    ``timestamps``, ``wscale``), or None when TCP_INFO could not be had."""
    if raw is None or len(raw) < 6:
        return None
    bits = raw[5]  # tcpi_options
    return frozenset(name for name, bit in _OPTION_BITS.items() if bits & bit)


def describe(raw: bytes | None) -> str:
    """``state: established, rto: 204000, ..., rtt: 31us, ...``."""
    if raw is None or len(raw) < _LAYOUT.size:
        return "unavailable"
    values = _LAYOUT.unpack(raw[: _LAYOUT.size])
    parts = []
    for label, index in _FIELDS:
        value = values[index]
        if label == "state":
            parts.append(f"state: {_STATES.get(value, value)}")
        elif label in ("rto", "rtt", "rttvar"):
            parts.append(f"{label}: {value}us")
        else:
            parts.append(f"{label}: {value}")
    return ", ".join(parts)
