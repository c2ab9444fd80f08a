"""microsocks 1.0.3: a minimal SOCKS5 server (CONNECT only).

It has no SOCKS4, no BIND (closes the connection) and answers UDP ASSOCIATE
with reply 0x07; useful as a second, independent SOCKS5 implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    listening,
    require_binary,
    retry_on_bind_failure,
)

__all__ = ["Microsocks", "run_microsocks"]


@dataclass(frozen=True)
class Microsocks:
    """A running microsocks; *username* is ``None`` when it needs no auth."""

    host: str
    port: int
    pid: int
    dir: Path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    def log_text(self) -> str:
        """Its stderr (one line per client connection)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


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
            daemon.start(lambda: listening(daemon.pid, port), what="listening")
            return Microsocks(
                host="127.0.0.1",
                port=port,
                pid=daemon.pid,
                dir=directory,
                username=username,
                password=password,
                daemon=daemon,
            )

    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
