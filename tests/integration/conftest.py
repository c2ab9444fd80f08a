"""Fixtures that run the real peers (see :mod:`tests.integration.peers`).

Missing-peer policy, the only skip allowed in the suite: when a program a
fixture needs is not installed, the fixture *fails* if ``DANTEX_REQUIRE_PEERS=1``
(``./test.sh`` sets it, after installing every peer) and skips with the reason
otherwise.

Scopes follow cost and statefulness: squid (1.7 s to stop), slapd, oidentd and
the origin servers are per session; the SOCKS/HTTP proxies are per test so a
test can read a log holding only its own traffic. ``start_peer`` starts any
peer with custom arguments, stopped after the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import pytest

from tests.integration.dantex_server import DantexServer, start_dantex
from tests.integration.peers import (
    Daemon,
    Danted,
    Microsocks,
    Oidentd,
    Origins,
    PeerMissingError,
    Slapd,
    Squid,
    Tinyproxy,
    ensure_ident_user,
    require_binary,
    run_danted,
    run_microsocks,
    run_oidentd,
    run_origins,
    run_slapd,
    run_squid,
    run_tinyproxy,
)

P = ParamSpec("P")
T = TypeVar("T")

REQUIRE_PEERS = "DANTEX_REQUIRE_PEERS"
#: Credentials of the HTTP proxies and microsocks when they require auth.
PROXY_USER = "dxuser"
PROXY_PASSWORD = "dx-proxy-pw"


def peer_missing(error: PeerMissingError) -> NoReturn:
    """The missing-peer policy: fail under DANTEX_REQUIRE_PEERS=1, else skip."""
    if os.environ.get(REQUIRE_PEERS) == "1":
        pytest.fail(
            f"{error} ({REQUIRE_PEERS}=1: every peer is required)", pytrace=False
        )
    pytest.skip(f"peer missing: {error} (with {REQUIRE_PEERS}=1 this fails)")


def under_policy(start: Callable[[], T]) -> T:
    """Return ``start()``, applying :func:`peer_missing` if it raises
    :class:`PeerMissingError` (outside the ``except``, so the report is not
    cluttered with a chained traceback)."""
    try:
        return start()
    except PeerMissingError as e:
        error = e
    peer_missing(error)


class StartPeer:
    """Enter a peer's ``run_*`` context now; leave it at the fixture's teardown."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._daemons: list[Daemon] = []

    def __call__(
        self,
        run: Callable[P, AbstractContextManager[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``start_peer(run_danted, auth="username")`` -> a running ``Danted``."""
        peer = under_policy(lambda: self._stack.enter_context(run(*args, **kwargs)))
        daemon = getattr(peer, "daemon", None)
        if isinstance(daemon, Daemon):
            self._daemons.append(daemon)
        return peer

    def terminate_all(self) -> None:
        """SIGTERM every peer at once (squid needs ~1.7 s to exit); the stack's
        exit then waits for each."""
        for daemon in self._daemons:
            daemon.terminate()


@pytest.fixture
def start_peer() -> Iterator[StartPeer]:
    """Start peers with custom arguments; all are stopped after the test."""
    with ExitStack() as stack:
        yield StartPeer(stack)


@pytest.fixture(scope="session")
def _session_peers() -> Iterator[StartPeer]:
    with ExitStack() as stack:
        peers = StartPeer(stack)
        yield peers
        peers.terminate_all()


@pytest.fixture(scope="session")
def program() -> Callable[[str, str], str]:
    """``program(name, debian_package)`` -> absolute path of a client program,
    under the missing-peer policy."""

    def find(name: str, package: str) -> str:
        return under_policy(lambda: require_binary(name, package))

    return find


@pytest.fixture(scope="session")
def origins(_session_peers: StartPeer) -> Origins:
    """HTTP, TCP echo/sink/source/half-close, UDP echo and FTP origin servers."""
    return _session_peers(run_origins)


@pytest.fixture
def danted(start_peer: StartPeer) -> Danted:
    """danted without authentication (``socksmethod: none``), default rules."""
    return start_peer(run_danted)


@pytest.fixture
def danted_userpass(start_peer: StartPeer) -> Danted:
    """danted with ``socksmethod: username`` (system user ``dantexsocks``)."""
    return start_peer(run_danted, auth="username")


@pytest.fixture
def microsocks(start_peer: StartPeer) -> Microsocks:
    """microsocks without authentication."""
    return start_peer(run_microsocks)


@pytest.fixture
def microsocks_userpass(start_peer: StartPeer) -> Microsocks:
    """microsocks requiring PROXY_USER / PROXY_PASSWORD."""
    return start_peer(run_microsocks, PROXY_USER, PROXY_PASSWORD)


@pytest.fixture
def tinyproxy(start_peer: StartPeer) -> Tinyproxy:
    """tinyproxy without authentication; CONNECT to any port."""
    return start_peer(run_tinyproxy)


@pytest.fixture
def tinyproxy_auth(start_peer: StartPeer) -> Tinyproxy:
    """tinyproxy requiring Basic PROXY_USER / PROXY_PASSWORD."""
    return start_peer(run_tinyproxy, PROXY_USER, PROXY_PASSWORD)


@pytest.fixture(scope="session")
def squid(_session_peers: StartPeer) -> Squid:
    """squid without authentication; CONNECT to any port."""
    return _session_peers(run_squid)


@pytest.fixture(scope="session")
def squid_auth(_session_peers: StartPeer) -> Squid:
    """squid requiring Basic PROXY_USER / PROXY_PASSWORD."""
    return _session_peers(run_squid, PROXY_USER, PROXY_PASSWORD)


@pytest.fixture(scope="session")
def slapd(_session_peers: StartPeer) -> Slapd:
    """slapd with alice/bob and groups, plus StartTLS and LDAPS (``ca_cert``)."""
    return _session_peers(run_slapd, tls=True)


@pytest.fixture(scope="session")
def oidentd(_session_peers: StartPeer) -> Oidentd:
    """oidentd on a free port (not 113)."""
    return _session_peers(run_oidentd)


@pytest.fixture(scope="session")
def ident_user() -> str:
    """Name of the no-login system user ``identuser`` (created if missing)."""
    return under_policy(ensure_ident_user)


# -- dantex itself -------------------------------------------------------------

#: Rules that let loopback clients reach anything, with full logging.
OPEN_RULES = """\
client pass {
  from: 127.0.0.0/8 to: 0/0
  log: error connect disconnect
}
client pass {
  from: ::1/128 to: 0/0
  log: error connect disconnect
}
socks pass {
  from: 0/0 to: 0/0
  log: error connect disconnect
}
"""


class RunDantex:
    """Start ``twistd -n dante`` with a generated config; stopped at teardown."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        self._stack = stack
        self._tmp = tmp
        self._n = 0

    def __call__(
        self,
        rules: str = OPEN_RULES,
        *,
        settings: str = "",
        internal: str = "internal: 127.0.0.1 port = 0",
        extra_args: Sequence[str] = (),
        workers: int | None = None,
        relay: str = "auto",
    ) -> DantexServer:
        self._n += 1
        n_workers = (
            workers
            if workers is not None
            else int(os.environ.get("DANTEX_TEST_WORKERS", "1"))
        )
        config = f"{internal}\nsocksmethod: none\n{settings}\n{rules}"
        args = ["--workers", str(n_workers), "--relay", relay, *extra_args]
        expect = internal.count("internal:")
        return self._stack.enter_context(
            start_dantex(
                config,
                self._tmp / f"dantex{self._n}",
                extra_args=args,
                expect_ports=expect,
            )
        )


@pytest.fixture
def dantex(tmp_path: Path) -> Iterator[RunDantex]:
    """``dantex(rules, settings=..., relay=...)`` starts a real server."""
    with ExitStack() as stack:
        yield RunDantex(stack, tmp_path)
