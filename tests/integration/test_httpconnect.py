"""HTTP CONNECT on the SOCKS port (``extension: httpconnect``) with real curl.

curl ``--proxy http://... --proxytunnel`` to the local HTTP origin, with and
without ``--proxy-user``; SOCKS keeps working on the same port.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


def curl_http(
    server: DantexServer, url: str, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "--proxy",
            f"http://{server.host}:{server.port}",
            "--proxytunnel",
            *extra,
            url,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_curl_tunnels_through_http_connect_and_socks_on_the_same_port(
    dantex: RunDantex, origins: Origins
) -> None:
    """curl -p gets the page through CONNECT; socks5 works on that port too."""
    server = dantex(settings="extension: httpconnect")
    out = curl_http(server, origins.http_url())
    assert out.returncode == 0, out.stderr
    assert out.stdout == INDEX_BODY
    server.wait_for_log(
        rf"pass\(1\): tcp/connect \]: .* 127\.0\.0\.1\.{origins.http_port} -> "
    )
    socks = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "--socks5",
            f"{server.host}:{server.port}",
            origins.http_url(),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert socks.stdout == INDEX_BODY, socks.stderr


def test_blocked_target_is_403(dantex: RunDantex, origins: Origins) -> None:
    """A socks-rule block reaches curl as 403."""
    rules = (
        "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        f"socks block {{ from: 0/0 to: 0/0 port = {origins.http_port} "
        "log: error }\n"
        "socks pass { from: 0/0 to: 0/0 }\n"
    )
    server = dantex(rules, settings="extension: httpconnect")
    out = curl_http(server, origins.http_url())
    assert out.returncode != 0
    assert b"403" in out.stderr


def test_unreachable_target_is_502(dantex: RunDantex) -> None:
    """A refused connect reaches curl as 502."""
    server = dantex(settings="extension: httpconnect")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        out = curl_http(server, f"http://127.0.0.1:{port}/")
    assert out.returncode != 0
    assert b"502" in out.stderr


@pytest.mark.parametrize("methods", ["username", "username none"])
def test_proxy_user_is_checked_like_rfc1929(
    dantex: RunDantex, origins: Origins, tmp_path: Path, methods: str
) -> None:
    """socksmethod username (or username none with a user: rule): no
    credentials 407, wrong 407, right 200."""
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:{PLAIN}alice-pw:staff\n")
    rules = (
        "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        "socks pass { from: 0/0 to: 0/0\n user: alice\n log: connect error }\n"
    )
    server = dantex(
        rules,
        settings=(
            f"socksmethod: {methods}\nextension: httpconnect\n"
            f"username.passwordfile: {passwd}"
        ),
    )
    none = curl_http(server, origins.http_url())
    assert none.returncode != 0 and b"407" in none.stderr
    wrong = curl_http(server, origins.http_url(), "--proxy-user", "alice:nope")
    assert wrong.returncode != 0 and b"407" in wrong.stderr
    right = curl_http(server, origins.http_url(), "--proxy-user", "alice:alice-pw")
    assert right.returncode == 0, right.stderr
    assert right.stdout == INDEX_BODY
    server.wait_for_log(r"username%alice@127\.0\.0\.1")
    assert "alice-pw" not in server.log_text()
    assert "nope" not in server.log_text()


def test_without_the_extension_http_is_not_served(
    dantex: RunDantex, origins: Origins
) -> None:
    """By default (a Dante config) an HTTP client is closed without a reply."""
    server = dantex()
    out = curl_http(server, origins.http_url())
    assert out.returncode != 0
    server.wait_for_log(r"unknown SOCKS version 67")
