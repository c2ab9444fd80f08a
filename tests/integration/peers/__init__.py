"""Real peers for integration tests: each started in its own temp dir on a free
127.0.0.1 port, owned through its PID, stopped with SIGTERM.

Every ``run_*`` is a context manager yielding a frozen object with at least
``host``, ``port``, ``pid``, ``dir``, ``log_text()`` and ``stop()``; it raises
:class:`PeerMissingError` when the program is not installed (the conftest turns
that into a failure under ``DANTEX_REQUIRE_PEERS=1``, a skip otherwise).
"""

from tests.integration.peers._process import (
    Daemon,
    DaemonError,
    PeerMissingError,
    free_port,
    port_open,
    require_binary,
    wait_until,
)
from tests.integration.peers.danted import Danted, run_danted
from tests.integration.peers.haproxy import Haproxy, run_haproxy
from tests.integration.peers.microsocks import Microsocks, run_microsocks
from tests.integration.peers.oidentd import Oidentd, ensure_ident_user, run_oidentd
from tests.integration.peers.origins import Origins, run_origins
from tests.integration.peers.slapd import Slapd, run_slapd
from tests.integration.peers.squid import Squid, run_squid
from tests.integration.peers.tinyproxy import Tinyproxy, run_tinyproxy

__all__ = [
    "Daemon",
    "DaemonError",
    "Danted",
    "Haproxy",
    "Microsocks",
    "Oidentd",
    "Origins",
    "PeerMissingError",
    "Slapd",
    "Squid",
    "Tinyproxy",
    "ensure_ident_user",
    "free_port",
    "port_open",
    "require_binary",
    "run_danted",
    "run_haproxy",
    "run_microsocks",
    "run_oidentd",
    "run_origins",
    "run_slapd",
    "run_squid",
    "run_tinyproxy",
    "wait_until",
]
