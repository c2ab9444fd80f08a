"""squid 5.7 as an HTTP CONNECT upstream, with its own minimal configuration.

No ``deny CONNECT !SSL_ports`` rule, so CONNECT works to any port; no cache.
With auth (Basic, ``basic_ncsa_auth`` over an ``openssl passwd -apr1`` file):
no or wrong credentials -> 407. CONNECT to a closed port -> 503.

Squid drops to user ``proxy`` before writing its pid and logs, so the
directory is chowned to ``proxy``. It takes ~1.7 s to exit after SIGTERM even
with ``shutdown_lifetime 0``; use it session-scoped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.peers._peer import HttpProxyPeer, serving
from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    require_binary,
)

__all__ = ["Squid", "run_squid"]

_NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"


class Squid(HttpProxyPeer):
    """A running squid (its log: output, then ``cache.log`` and
    ``access.log``); stopping it takes ~1.7 s."""


def _apr1(password: str) -> str:
    openssl = require_binary("openssl", "openssl")
    result = subprocess.run(
        [openssl, "passwd", "-apr1", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


def _config(directory: Path, port: int, auth: bool) -> str:
    if auth:
        access = (
            f"auth_param basic program {_NCSA_AUTH} {directory}/passwd\n"
            "auth_param basic children 2 startup=1 idle=1\n"
            "auth_param basic realm dantex\n"
            "acl authed proxy_auth REQUIRED\n"
            "http_access allow authed\n"
        )
    else:
        access = "http_access allow localhost\n"
    return (
        f"http_port 127.0.0.1:{port}\n"
        "visible_hostname dantex-squid\n"
        f"pid_filename {directory}/squid.pid\n"
        f"cache_log stdio:{directory}/cache.log\n"
        f"access_log stdio:{directory}/access.log\n"
        "cache_store_log none\n"
        f"coredump_dir {directory}\n"
        "cache deny all\n"
        "cache_mem 8 MB\n"
        "pinger_enable off\n"
        "dns_nameservers 127.0.0.1\n"
        "shutdown_lifetime 0 seconds\n"
        "http_access deny !localhost\n"
        f"{access}"
        "http_access deny all\n"
    )


@contextmanager
def run_squid(
    username: str | None = None, password: str | None = None
) -> Iterator[Squid]:
    """Run ``squid -N`` on 127.0.0.1 on a free port.

    :param username: with *password*, require Basic proxy auth.
    :raises PeerMissingError: squid (or openssl, for auth) is not installed.
    """
    squid = require_binary("squid", "squid")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    passwd_line = None
    if username is not None and password is not None:
        passwd_line = f"{username}:{_apr1(password)}\n"

    def start() -> Squid:
        port = free_port()
        with fresh_dir("squid") as directory:
            shutil.chown(directory, "proxy", "proxy")
            if passwd_line is not None:
                (directory / "passwd").write_text(passwd_line)
                (directory / "passwd").chmod(0o644)
            (directory / "squid.conf").write_text(
                _config(directory, port, passwd_line is not None)
            )
            daemon = Daemon(
                "squid",
                [squid, "-N", "-f", str(directory / "squid.conf")],
                directory,
                extra_logs=[directory / "cache.log", directory / "access.log"],
            )
            return Squid.launch(daemon, port, username, password)

    with serving(start) as peer:
        yield peer
