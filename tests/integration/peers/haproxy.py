"""haproxy 2.6 in TCP mode, configured by the caller's frontend/backend text.

The fixture writes ``global`` (log to stderr, admin socket in the temp dir)
and ``defaults`` (``mode tcp``, ``option tcplog``, short connect timeout); the
caller gives the rest as a :class:`string.Template`: ``$port`` (or
``$port0``, ``$port1``, ... for several frontends) are free ports chosen here,
``$dir`` is the temp dir. Example::

    frontend fe
      bind 127.0.0.1:$port
      default_backend be
    backend be
      default-server inter 200ms fall 2 rise 1
      server b1 127.0.0.1:8001 check send-proxy-v2

Health checks on a ``send-proxy-v2`` server carry a PROXY v2 *LOCAL* header
(command 0x20, no addresses); a PROXY-aware backend must accept it.
Readiness is the admin socket answering, so the fixture never opens a
connection through a frontend (backends see only the caller's traffic and
haproxy's health checks).
"""

from __future__ import annotations

import csv
import socket
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.peers._process import (
    POLL_INTERVAL,
    Daemon,
    free_port,
    fresh_dir,
    require_binary,
    retry_on_bind_failure,
)

__all__ = ["Haproxy", "admin_command", "run_haproxy"]

_HEAD = """\
global
  log stderr format raw local0 info
  stats socket {dir}/admin.sock mode 600 level admin
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 2s
  timeout client 30s
  timeout server 30s
"""


def admin_command(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """Send one command to haproxy's admin socket and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@dataclass(frozen=True)
class Haproxy:
    """A running haproxy.

    :ivar port: the first frontend port (``$port`` / ``$port0``).
    :ivar ports: all frontend ports, in ``$port0``, ``$port1``... order.
    :ivar admin_socket: the stats socket (``level admin``).
    """

    host: str
    port: int
    ports: tuple[int, ...]
    pid: int
    dir: Path
    admin_socket: Path
    config: str = field(repr=False)
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    def command(self, command: str) -> str:
        """Run an admin-socket command (``show stat``, ``disable server b/s``...)."""
        return admin_command(self.admin_socket, command)

    def show_stat(self) -> list[dict[str, str]]:
        """``show stat`` as rows keyed by column name (``pxname``, ``svname``,
        ``status``, ``check_status``, ``stot``...)."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(line for line in text.splitlines() if line))

    def server_state(self, backend: str, server: str) -> str | None:
        """The ``status`` column of one server (``UP``, ``DOWN``, ``UP 1/2``,
        ``MAINT``, ``no check``...), or ``None`` if there is no such row."""
        for row in self.show_stat():
            if row["pxname"] == backend and row["svname"] == server:
                return row["status"]
        return None

    def wait_server_state(
        self, backend: str, server: str, state: str, timeout: float = 10.0
    ) -> None:
        """Poll ``show stat`` every 100 ms until the server's status is *state*.

        :raises TimeoutError: with the last status seen.
        """
        deadline = time.monotonic() + timeout
        while (seen := self.server_state(backend, server)) != state:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"haproxy {backend}/{server} is {seen!r}, not {state!r},"
                    f" after {timeout} s"
                )
            time.sleep(POLL_INTERVAL)

    def log_text(self) -> str:
        """Its stderr (one ``tcplog`` line per connection, check transitions)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


def _admin_answers(path: Path) -> bool:
    try:
        return "Name: HAProxy" in admin_command(path, "show info", timeout=1.0)
    except OSError:
        return False


@contextmanager
def run_haproxy(body: str, *, frontends: int = 1) -> Iterator[Haproxy]:
    """Run ``haproxy -db`` with the fixture's head plus *body*.

    :param body: frontend/backend sections, a :class:`string.Template` using
        ``$port`` (= ``$port0``), ``$port1``... and ``$dir``.
    :param frontends: how many free ports to allocate.
    :raises PeerMissingError: haproxy is not installed.
    """
    haproxy = require_binary("haproxy", "haproxy")

    def start() -> Haproxy:
        ports = tuple(free_port() for _ in range(frontends))
        with fresh_dir("haproxy") as directory:
            values = {f"port{i}": str(p) for i, p in enumerate(ports)}
            values.update(port=str(ports[0]), dir=str(directory))
            sections = string.Template(body).substitute(values)
            config = _HEAD.format(dir=directory) + sections
            (directory / "haproxy.cfg").write_text(config)
            admin = directory / "admin.sock"
            daemon = Daemon("haproxy", [haproxy, "-db", "-f", "haproxy.cfg"], directory)
            daemon.start(lambda: _admin_answers(admin), what="admin socket answers")
            return Haproxy(
                host="127.0.0.1",
                port=ports[0],
                ports=ports,
                pid=daemon.pid,
                dir=directory,
                admin_socket=admin,
                config=config,
                daemon=daemon,
            )

    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
