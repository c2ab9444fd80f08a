"""microsocks 1.0.3: a minimal SOCKS5 server (CONNECT only).

It has no SOCKS4, no BIND (closes the connection) and answers UDP ASSOCIATE
with reply 0x07; useful as a second, independent SOCKS5 implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.peers._peer import ProxyPeer, serving
from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    require_binary,
)

__all__ = ["Microsocks", "run_microsocks"]


class Microsocks(ProxyPeer):
    """A running microsocks (its log: stderr, a line per client connection)."""


@contextmanager
def run_microsocks(
    username: str | None = None, password: str | None = None
) -> Iterator[Microsocks]:
    """Run microsocks on 127.0.0.1 on a free port.

    :param username: with *password*, require RFC 1929 authentication.
    :raises PeerMissingError: microsocks is not installed.
    """
    microsocks = require_binary("microsocks", "microsocks")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")

    def start() -> Microsocks:
        port = free_port()
        with fresh_dir("microsocks") as directory:
            argv = [microsocks, "-i", "127.0.0.1", "-p", str(port)]
            if username is not None and password is not None:
                argv += ["-u", username, "-P", password]
            secrets = () if password is None else (password,)
            daemon = Daemon("microsocks", argv, directory, secrets=secrets)
            return Microsocks.launch(daemon, port, username, password)

    with serving(start) as peer:
        yield peer
