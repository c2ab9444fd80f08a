"""Dante's SOCKS server (danted 1.4.2) as a reference upstream and peer.

Quirks of 1.4.2 the default configuration handles (components.md §4):

- ``socksmethod: username`` checks system accounts, so reading
  ``/etc/shadow`` needs ``user.privileged: root``;
- for UDP ASSOCIATE the socks rule's ``from`` is matched against the address
  *in the request* (PySocks sends 0.0.0.0), hence ``from: 0.0.0.0/0``; the
  client rule and the loopback ``internal:`` still keep it loopback-only;
- ``bindreply`` and ``udpreply`` need a rule of their own;
- no SOCKS4a (it connects to 0.0.0.1 and answers 91); SOCKS4 is refused
  with ``username``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.integration.peers._process import (
    Daemon,
    free_port,
    fresh_dir,
    listening,
    require_binary,
    retry_on_bind_failure,
)
from tests.integration.peers._users import ensure_system_user

__all__ = ["DEFAULT_RULES", "SOCKS_PASSWORD", "SOCKS_USER", "Danted", "run_danted"]

#: The system account used for ``socksmethod: username``.
SOCKS_USER = "dantexsocks"
SOCKS_PASSWORD = "dantex-socks-pw"

#: Rules used when the caller gives none: CONNECT, BIND and UDP ASSOCIATE from
#: loopback to anywhere, replies back to loopback, everything logged.
DEFAULT_RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error connect disconnect
}
socks pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: bind connect udpassociate
  log: error connect disconnect iooperation
}
socks pass {
  from: 0.0.0.0/0 to: 127.0.0.0/8
  command: bindreply udpreply
  log: error connect disconnect iooperation
}
"""


@dataclass(frozen=True)
class Danted:
    """A running danted.

    :ivar username: ``None`` unless started with ``auth="username"``.
    :ivar config: the configuration text it was started with.
    """

    host: str
    port: int
    pid: int
    dir: Path
    config: str = field(repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    daemon: Daemon = field(repr=False, compare=False, kw_only=True)

    def log_text(self) -> str:
        """danted's log so far (``logoutput: stderr``)."""
        return self.daemon.log_text()

    def stop(self) -> None:
        """Stop it now (also done when the context exits)."""
        self.daemon.stop()


def _config(port: int, auth: str, external: str, rules: str, extra_config: str) -> str:
    return (
        "logoutput: stderr\n"
        f"internal: 127.0.0.1 port = {port}\n"
        f"external: {external}\n"
        f"socksmethod: {auth}\n"
        "clientmethod: none\n"
        "user.privileged: root\n"
        "user.unprivileged: nobody\n"
        f"{extra_config}\n"
        f"{rules}"
    )


@contextmanager
def run_danted(
    *,
    auth: Literal["none", "username"] = "none",
    rules: str = DEFAULT_RULES,
    extra_config: str = "",
    external: str = "127.0.0.1",
) -> Iterator[Danted]:
    """Run danted on 127.0.0.1 on a free port.

    :param auth: ``"username"`` (RFC 1929 against the system account
        :data:`SOCKS_USER` / :data:`SOCKS_PASSWORD`, created if missing) or
        ``"none"``.
    :param rules: the ``client``/``socks`` rule blocks (default
        :data:`DEFAULT_RULES`).
    :param extra_config: more top-level lines, placed before the rules (e.g.
        ``"timeout.negotiate: 5"``).
    :param external: the ``external:`` address or interface.
    :raises PeerMissingError: danted is not installed.
    """
    danted = require_binary("danted", "dante-server")
    user = password = None
    if auth == "username":
        user = ensure_system_user(SOCKS_USER, SOCKS_PASSWORD)
        password = SOCKS_PASSWORD

    def start() -> Danted:
        port = free_port()
        with fresh_dir("danted") as directory:
            config = _config(port, auth, external, rules, extra_config)
            (directory / "danted.conf").write_text(config)
            daemon = Daemon(
                "danted",
                [danted, "-f", "danted.conf", "-p", str(directory / "danted.pid")],
                directory,
            )
            daemon.start(
                lambda: "running" in daemon.log_text() and listening(daemon.pid, port),
                what="'running' logged and listening",
            )
            return Danted(
                host="127.0.0.1",
                port=port,
                pid=daemon.pid,
                dir=directory,
                config=config,
                username=user,
                password=password,
                daemon=daemon,
            )

    peer = retry_on_bind_failure(start)
    try:
        yield peer
    finally:
        peer.stop()
