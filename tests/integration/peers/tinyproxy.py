"""tinyproxy 1.11: an HTTP proxy used as an HTTP CONNECT upstream.

The configuration has no ``ConnectPort`` line, so CONNECT is allowed to every
port (a single ``ConnectPort`` line would turn on a whitelist). With
``BasicAuth``: no credentials -> 407; *wrong* credentials on CONNECT -> 401
(a tinyproxy quirk); right ones -> tunnel.
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

__all__ = ["Tinyproxy", "run_tinyproxy"]


@dataclass(frozen=True)
class Tinyproxy:
    """A running tinyproxy; *username* is ``None`` when it needs no auth."""

    host: str
    port: int
    pid: int
    dir: Path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    @property
    def url(self) -> str:
        """``http://host:port`` (no credentials)."""
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Its log (stdout: no ``LogFile`` is configured)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


@contextmanager
def run_tinyproxy(
    username: str | None = None,
    password: str | None = None,
    *,
    extra_config: str = "",
) -> Iterator[Tinyproxy]:
    """Run tinyproxy in the foreground on 127.0.0.1 on a free port.

    :param username: with *password*, require Basic proxy auth.
    :param extra_config: more configuration lines appended at the end.
    :raises PeerMissingError: tinyproxy is not installed.
    """
    tinyproxy = require_binary("tinyproxy", "tinyproxy")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")

    def start() -> Tinyproxy:
        port = free_port()
        with fresh_dir("tinyproxy") as directory:
            lines = [
                f"Port {port}",
                "Listen 127.0.0.1",
                "Timeout 60",
                "MaxClients 100",
                "Allow 127.0.0.1",
                "LogLevel Info",
                "DisableViaHeader Yes",
            ]
            if username is not None:
                lines.append(f"BasicAuth {username} {password}")
            (directory / "tinyproxy.conf").write_text("\n".join([*lines, extra_config]))
            daemon = Daemon(
                "tinyproxy",
                [tinyproxy, "-d", "-c", str(directory / "tinyproxy.conf")],
                directory,
            )
            daemon.start(lambda: listening(daemon.pid, port), what="listening")
            return Tinyproxy(
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
