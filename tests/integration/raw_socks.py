"""A SOCKS client with hand-written bytes, for provoking exact replies.

Usable in-process (:func:`exchange`) or as a script (``python raw_socks.py
HOST PORT HEX...``) so it can run inside a network namespace; the script
prints each reply as hex on its own line, ``EOF`` when the server closed.
"""

from __future__ import annotations

import socket
import sys

__all__ = ["exchange"]


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


if __name__ == "__main__":
    replies = exchange(
        sys.argv[1], int(sys.argv[2]), [bytes.fromhex(h) for h in sys.argv[3:]]
    )
    for r in replies:
        print(r.hex() if r else "EOF")
