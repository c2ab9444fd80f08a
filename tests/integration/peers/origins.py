"""Origin servers (HTTP, TCP echo/sink/source/half-close, UDP echo, FTP).

They run in a child process (:mod:`._origins_main`, started with
``sys.executable``), so they never run on, or slow down, the test's reactor;
see that module for each protocol. All listen on 127.0.0.1 on ports
chosen by the kernel; the echo servers also on ``::1``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.peers import _origins_main
from tests.integration.peers._origins_main import FTP_BODY, INDEX_BODY, TRAILER, pattern
from tests.integration.peers._process import Daemon, PeerMissingError, make_dir

__all__ = [
    "FTP_BODY",
    "INDEX_BODY",
    "TRAILER",
    "Origins",
    "pattern",
    "run_origins",
    "sink_reply",
]


def sink_reply(data: bytes) -> bytes:
    """What the sink answers after receiving exactly *data*."""
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode()


@dataclass(frozen=True)
class Origins:
    """The running origin servers.

    :ivar echo6_port: TCP echo on ``::1`` (``None`` if IPv6 is unavailable).
    :ivar udp_echo6_port: likewise for UDP.
    :ivar ftp_port: ``None`` unless started with ``ftp=True``.
    :ivar large_size: size of ``/large.bin`` (``pattern(large_size)``).
    :ivar large_sha256: its SHA-256, hex.
    """

    host: str
    pid: int
    dir: Path
    http_port: int
    echo_port: int
    echo6_port: int | None
    sink_port: int
    source_port: int
    halfclose_port: int
    udp_echo_port: int
    udp_echo6_port: int | None
    ftp_port: int | None
    large_size: int
    large_sha256: str
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    def http_url(self, path: str = "index.html") -> str:
        """URL of a file on the HTTP server (``index.html``, ``large.bin``)."""
        return f"http://{self.host}:{self.http_port}/{path}"

    def ftp_url(self, path: str = "hello.txt") -> str:
        """URL of a file on the FTP server (anonymous)."""
        if self.ftp_port is None:
            raise RuntimeError("origins were started without ftp=True")
        return f"ftp://{self.host}:{self.ftp_port}/{path}"

    def log_text(self) -> str:
        """The child's stdout/stderr (HTTP and FTP request logs, handler errors)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop them now (also done when the context exits)."""
        self.daemon.stop()


@contextmanager
def run_origins(*, large_size: int = 4 << 20, ftp: bool = True) -> Iterator[Origins]:
    """Start every origin server in one child process.

    :param large_size: bytes in ``/large.bin``.
    :param ftp: also run the FTP server.
    :raises PeerMissingError: ``ftp=True`` and pyftpdlib is not importable.
    """
    if ftp and importlib.util.find_spec("pyftpdlib") is None:
        raise PeerMissingError("pyftpdlib is not installed (pip install -e '.[test]')")
    directory = make_dir("origins")
    argv = [sys.executable, "-u", _origins_main.__file__, "--dir", str(directory)]
    argv += ["--large-size", str(large_size)]
    if ftp:
        argv.append("--ftp")
    daemon = Daemon("origins", argv, directory)
    ports_file = directory / "ports.json"
    daemon.start(ports_file.exists, what="ports.json written")
    ports = json.loads(ports_file.read_text())
    peer = Origins(
        host="127.0.0.1",
        pid=daemon.pid,
        dir=directory,
        http_port=ports["http"],
        echo_port=ports["echo"],
        echo6_port=ports["echo6"],
        sink_port=ports["sink"],
        source_port=ports["source"],
        halfclose_port=ports["halfclose"],
        udp_echo_port=ports["udp_echo"],
        udp_echo6_port=ports["udp_echo6"],
        ftp_port=ports["ftp"],
        large_size=large_size,
        large_sha256=ports["large_sha256"],
        daemon=daemon,
    )
    try:
        yield peer
    finally:
        peer.stop()
