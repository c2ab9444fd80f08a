"""The runnable example in examples/ fetches a page through a real two-hop chain."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.dantex_server import REPO
from tests.integration.peers import Danted, Tinyproxy, free_port
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "fetch_through_chain.py"


def run_example(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_example_fetches_through_two_hops(
    danted: Danted, tinyproxy: Tinyproxy, origins: Origins
) -> None:
    """danted then tinyproxy: the page arrives, and both proxies saw it."""
    out = run_example(
        origins.http_url(),
        f"socks5://{danted.host}:{danted.port}",
        f"http://{tinyproxy.host}:{tinyproxy.port}",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == INDEX_BODY
    assert f"127.0.0.1.{tinyproxy.port}" in danted.log_text()


def test_example_names_the_failing_hop(danted: Danted) -> None:
    """A dead second hop is reported in one line naming it, exit status 1."""
    dead = free_port()
    out = run_example(
        "http://127.0.0.1:9/",
        f"socks5://{danted.host}:{danted.port}",
        f"http://127.0.0.1:{dead}",
    )
    assert out.returncode == 1
    line = out.stderr.decode().strip()
    assert line == (
        f"socks5 127.0.0.1:{danted.port} -> 127.0.0.1:{dead}: "
        "SOCKS5 reply 0x05 (connection refused)"
    )
