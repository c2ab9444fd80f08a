"""An HTTPS proxy: tinyproxy behind a TLS terminator (socat with a throwaway CA
made by openssl), reached with Twisted's TLS and verified with service_identity."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from twisted.internet.ssl import Certificate

from dantex.client import ProxyClosedError, chain
from tests.client._live import echo_through, live, reactor
from tests.integration.conftest import under_policy
from tests.integration.peers import Danted, Tinyproxy, free_port, require_binary
from tests.integration.peers._process import Daemon, fresh_dir, listening
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsProxy:
    """socat terminating TLS on ``port`` in front of an HTTP proxy."""

    host: str
    port: int
    ca_pem: bytes
    daemon: Daemon


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, and a server certificate it signs for IP 127.0.0.1 and localhost."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=dantex test CA", "-days", "2", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1", cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2",
        "-extfile", "san.ext", cwd=directory,
    )  # fmt: skip


@pytest.fixture
def tls_tinyproxy(tinyproxy: Tinyproxy) -> Iterator[TlsProxy]:
    """tinyproxy behind ``socat OPENSSL-LISTEN`` with a CA-signed certificate."""
    socat = under_policy(lambda: require_binary("socat", "socat"))
    under_policy(lambda: require_binary("openssl", "openssl"))
    with fresh_dir("tls-proxy") as directory:
        make_certificates(directory)
        port = free_port()
        listen = (
            f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
            "cert=server.pem,key=server.key,verify=0"
        )
        daemon = Daemon(
            "socat", [socat, listen, f"TCP:127.0.0.1:{tinyproxy.port}"], directory
        )
        daemon.start(lambda: listening(daemon.pid, port), what="listening")
        ca = (directory / "ca.pem").read_bytes()
    try:
        yield TlsProxy("127.0.0.1", port, ca, daemon)
    finally:
        daemon.stop()


@live
async def test_https_proxy_verified_against_its_ca(
    tls_tinyproxy: TlsProxy, origins: Origins
) -> None:
    """CONNECT over TLS to the proxy, its certificate checked for 127.0.0.1."""
    ep = chain(
        reactor,
        [f"https://{tls_tinyproxy.host}:{tls_tinyproxy.port}"],
        "127.0.0.1",
        origins.echo_port,
        tls_trust_root=Certificate.loadPEM(tls_tinyproxy.ca_pem),
    )
    assert await echo_through(ep, b"over tls") == b"over tls"


@live
async def test_https_proxy_behind_a_socks_hop(
    danted: Danted, tls_tinyproxy: TlsProxy, origins: Origins
) -> None:
    """TLS to the proxy also works when the proxy is reached through danted."""
    ep = chain(
        reactor,
        [
            f"socks5://{danted.host}:{danted.port}",
            f"https://{tls_tinyproxy.host}:{tls_tinyproxy.port}",
        ],
        "localhost",
        origins.echo_port,
        tls_trust_root=Certificate.loadPEM(tls_tinyproxy.ca_pem),
    )
    assert await echo_through(ep, b"socks then tls") == b"socks then tls"


@live
async def test_https_proxy_with_an_untrusted_certificate_fails(
    tls_tinyproxy: TlsProxy, origins: Origins
) -> None:
    """Without the CA in the trust root the TLS handshake fails; nothing is sent."""
    ep = chain(
        reactor,
        [f"https://{tls_tinyproxy.host}:{tls_tinyproxy.port}"],
        "127.0.0.1",
        origins.echo_port,
    )
    with pytest.raises(ProxyClosedError) as e:
        await echo_through(ep, b"x")
    assert "certificate verify failed" in str(e.value)


@live
async def test_https_proxy_name_mismatch_fails(
    tls_tinyproxy: TlsProxy, origins: Origins
) -> None:
    """service_identity refuses a certificate that does not name the proxy."""
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
    from twisted.internet.ssl import optionsForClientTLS

    from dantex.client import HTTPConnectEndpoint

    options = optionsForClientTLS(
        "proxy.example", trustRoot=Certificate.loadPEM(tls_tinyproxy.ca_pem)
    )
    tcp = HostnameEndpoint(reactor, tls_tinyproxy.host, tls_tinyproxy.port)
    ep = HTTPConnectEndpoint(
        wrapClientTLS(options, tcp), "127.0.0.1", origins.echo_port
    )
    with pytest.raises(ProxyClosedError):
        await echo_through(ep, b"x")
