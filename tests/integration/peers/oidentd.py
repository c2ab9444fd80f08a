"""oidentd 2.5 (RFC 1413 ident server) on a port other than 113.

Query format: ``"<port on identd's host>, <port on the other end>\\r\\n"``;
for a connection 127.0.0.1:CPORT -> 127.0.0.1:SPORT made by user ``u`` the
query ``"CPORT, SPORT"`` answers ``"CPORT,SPORT:USERID:UNIX:u"`` (no spaces in
replies); an unknown pair answers ``...:ERROR:NO-USER``.

oidentd looks the connection up with the *querier's* address as the remote
end: the query must come from the address the client connected *to* (here
127.0.0.1); from 127.0.0.2 it answers NO-USER.

Note ``-p`` is the port; ``-P`` is "proxy host". It drops to ``nobody`` by
itself after binding.
"""

from __future__ import annotations

import socket
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
from tests.integration.peers._users import ensure_system_user

__all__ = ["IDENT_USER", "Oidentd", "ensure_ident_user", "ident_query", "run_oidentd"]

#: The system account whose connections the tests ask about.
IDENT_USER = "identuser"

# Debian's default policy: nobody may spoof, hide or forward.
_CONFIG = """\
default {
	default {
		deny spoof
		deny spoof_all
		deny spoof_privport
		deny random
		deny random_numeric
		deny numeric
		deny hide
		deny forward
	}
}
"""


def ensure_ident_user(name: str = IDENT_USER) -> str:
    """Create the no-login system user *name* if missing; return *name*."""
    return ensure_system_user(name)


def ident_query(
    host: str, port: int, local_port: int, remote_port: int, timeout: float = 5.0
) -> str:
    """Ask the ident server at *host*:*port* about one connection.

    :param local_port: the connection's port on the identd host.
    :param remote_port: its port on the other end.
    :returns: the reply line without CRLF, e.g.
        ``"40000,8080:USERID:UNIX:identuser"``.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"{local_port}, {remote_port}\r\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


@dataclass(frozen=True)
class Oidentd:
    """A running oidentd."""

    host: str
    port: int
    pid: int
    dir: Path
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    def query(self, local_port: int, remote_port: int) -> str:
        """:func:`ident_query` against this server."""
        return ident_query(self.host, self.port, local_port, remote_port)

    def log_text(self) -> str:
        """Its stderr (``-S -d``: one line per lookup)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


@contextmanager
def run_oidentd() -> Iterator[Oidentd]:
    """Run ``oidentd -i`` on 127.0.0.1 on a free port (not 113).

    :raises PeerMissingError: oidentd is not installed.
    """
    oidentd = require_binary("oidentd", "oidentd")

    def start() -> Oidentd:
        port = free_port()
        with fresh_dir("oidentd") as directory:
            (directory / "oidentd.conf").write_text(_CONFIG)
            argv = [oidentd, "-i", "-S", "-d", "-a", "127.0.0.1", "-p", str(port),
                    "-C", str(directory / "oidentd.conf")]  # fmt: skip
            daemon = Daemon("oidentd", argv, directory)
            daemon.start(lambda: listening(daemon.pid, port), what="listening")
            return Oidentd(
                host="127.0.0.1",
                port=port,
                pid=daemon.pid,
                dir=directory,
                daemon=daemon,
            )

    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
