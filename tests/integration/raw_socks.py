"""A SOCKS client with hand-written bytes, for provoking exact replies.

Usable in-process (:func:`exchange`) or as a script (``python raw_socks.py
HOST PORT HEX...``) so it can run inside a network namespace; the script
prints each reply as hex on its own line, ``EOF`` when the server closed.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["exchange", "recv_exact", "recv_upto"]


def exchange(
    host: str, port: int, messages: list[bytes], timeout: float = 10.0
) -> list[bytes]:
    """Send each message and read whatever the server answers to it.

    SOCKS replies are short and complete in one read on loopback; an empty
    bytes object means the server closed the connection.
    """
    out: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as s:
        for msg in messages:
            s.sendall(msg)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            out.append(data)
            if not data:
                break
    return out


def recv_upto(s: socket.socket, n: int, *, reads: int = 100) -> bytes:
    """Read until ``n`` bytes or EOF, in at most ``reads`` reads (the
    socket's timeout bounds each one)."""
    data = b""
    for _ in range(reads):
        if len(data) >= n:
            break
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def recv_exact(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; :class:`EOFError` if the peer closes first."""
    data = recv_upto(s, n, reads=max(100, n))
    if len(data) < n:
        raise EOFError(f"closed after {data!r}")
    return data


if __name__ == "__main__":
    replies = exchange(
        sys.argv[1], int(sys.argv[2]), [bytes.fromhex(h) for h in sys.argv[3:]]
    )
    for r in replies:
        print(r.hex() if r else "EOF")
