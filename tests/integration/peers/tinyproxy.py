"""tinyproxy 1.11: an HTTP proxy used as an HTTP CONNECT upstream.

The configuration has no ``ConnectPort`` line, so CONNECT is allowed to every
port (a single ``ConnectPort`` line would turn on a whitelist). With
``BasicAuth``: no credentials -> 407; *wrong* credentials on CONNECT -> 401
(a tinyproxy quirk); right ones -> tunnel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.peers._peer import HttpProxyPeer, serving
from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    require_binary,
)

__all__ = ["Tinyproxy", "run_tinyproxy"]


class Tinyproxy(HttpProxyPeer):
    """A running tinyproxy (its log: stdout, no ``LogFile`` is configured)."""


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
            return Tinyproxy.launch(daemon, port, username, password)

    with serving(start) as peer:
        yield peer
