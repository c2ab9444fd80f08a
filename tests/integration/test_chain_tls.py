"""TLS to a parent: danted and tinyproxy behind a TLS terminator (socat with a
throwaway CA), reached by dantex with ``tls: yes`` and ``tls.cafile:``.

The relay then copies through Twisted's TLS transport (no splice): a large
transfer and a half-close (which TLS turns into a close) are checked.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import OPEN_RULES, RunDantex, under_policy
from tests.integration.peers import Danted, Tinyproxy, free_port, require_binary
from tests.integration.peers._process import Daemon, fresh_dir, listening
from tests.integration.peers.origins import INDEX_BODY, TRAILER, Origins
from tests.integration.test_chain import curl, echo_through
from tests.integration.test_client_tls_proxy import make_certificates

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Terminator:
    """socat terminating TLS on ``port`` in front of ``behind``."""

    host: str
    port: int
    ca: Path
    daemon: Daemon


def _terminate_tls(behind: int, directory: Path) -> Daemon:
    socat = under_policy(lambda: require_binary("socat", "socat"))
    port = free_port()
    listen = (
        f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
        "cert=server.pem,key=server.key,verify=0"
    )
    daemon = Daemon("socat", [socat, listen, f"TCP:127.0.0.1:{behind}"], directory)
    daemon.start(lambda: listening(daemon.pid, port), what="listening")
    daemon.port = port  # type: ignore[attr-defined]
    return daemon


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA (ca.pem) and a certificate for 127.0.0.1 it signed, in a directory."""
    under_policy(lambda: require_binary("openssl", "openssl"))
    make_certificates(tmp_path)
    return tmp_path


@pytest.fixture
def tls_danted(danted: Danted, certificates: Path) -> Iterator[Terminator]:
    """danted behind TLS."""
    with fresh_dir("tls-danted") as directory:
        for name in ("server.pem", "server.key"):
            (directory / name).write_bytes((certificates / name).read_bytes())
        daemon = _terminate_tls(danted.port, directory)
        try:
            yield Terminator("127.0.0.1", daemon.port, certificates / "ca.pem", daemon)  # type: ignore[attr-defined]
        finally:
            daemon.stop()


@pytest.fixture
def tls_tinyproxy(tinyproxy: Tinyproxy, certificates: Path) -> Iterator[Terminator]:
    """tinyproxy behind TLS: an HTTPS proxy."""
    with fresh_dir("tls-tinyproxy") as directory:
        for name in ("server.pem", "server.key"):
            (directory / name).write_bytes((certificates / name).read_bytes())
        daemon = _terminate_tls(tinyproxy.port, directory)
        try:
            yield Terminator("127.0.0.1", daemon.port, certificates / "ca.pem", daemon)  # type: ignore[attr-defined]
        finally:
            daemon.stop()


def tls_route(parent: Terminator, protocol: str, cafile: Path | None) -> str:
    ca = f"  tls.cafile: {cafile}\n" if cafile is not None else ""
    return (
        "route {\n  from: 0/0 to: 0/0\n"
        f"  via: {parent.host} port = {parent.port}\n"
        f"  proxyprotocol: {protocol}\n  tls: yes\n{ca}}}\n"
    )


def test_socks5_parent_over_tls_carries_a_large_file(
    dantex: RunDantex, tls_danted: Terminator, danted: Danted, origins: Origins
) -> None:
    """SOCKS 5 over TLS to danted: 4 MiB arrive intact through the copy
    relay over the TLS transport, and danted saw the connect."""
    server = dantex(OPEN_RULES + tls_route(tls_danted, "socks_v5", tls_danted.ca))
    big = curl(server, origins.http_url("large.bin"))
    assert big.returncode == 0, big.stderr
    assert hashlib.sha256(big.stdout).hexdigest() == origins.large_sha256
    assert f"127.0.0.1.{origins.http_port}" in danted.log_text()


def test_https_parent(
    dantex: RunDantex, tls_tinyproxy: Terminator, origins: Origins
) -> None:
    """HTTP CONNECT over TLS to tinyproxy (an HTTPS proxy)."""
    server = dantex(OPEN_RULES + tls_route(tls_tinyproxy, "http", tls_tinyproxy.ca))
    page = curl(server, origins.http_url())
    assert page.returncode == 0, page.stderr
    assert page.stdout == INDEX_BODY
    assert echo_through(server, origins) == b"ping through the chain"


def test_half_close_over_tls_still_delivers_the_answer(
    dantex: RunDantex, tls_danted: Terminator, origins: Origins
) -> None:
    """A client that sends and shuts down its write side still gets the
    reply of a server that answers at EOF (the half-close origin)."""
    server = dantex(OPEN_RULES + tls_route(tls_danted, "socks_v5", tls_danted.ca))
    ncat = subprocess.run(
        ["nc", "-N", "-X", "5", "-x", f"{server.host}:{server.port}",
         origins.host, str(origins.halfclose_port)],
        input=b"count these bytes",
        capture_output=True,
        timeout=20,
        check=False,
    )  # fmt: skip
    assert ncat.returncode == 0, ncat.stderr
    assert ncat.stdout == b"count these bytes" + TRAILER


def test_untrusted_parent_certificate_fails_and_marks_the_route(
    dantex: RunDantex, tls_danted: Terminator, origins: Origins
) -> None:
    """Without tls.cafile the system roots do not know the test CA: the TLS
    handshake fails, nothing reaches the target, the route is blacklisted."""
    server = dantex(OPEN_RULES + tls_route(tls_danted, "socks_v5", None))
    page = curl(server, origins.http_url())
    assert page.returncode != 0
    server.wait_for_log(r"blacklisting route #1")
    server.wait_for_log(r"certificate verify failed")
