"""One socks.conf for Dante's socksify and for dantex's ClientRouter, against
the real danted; failover past a dead gateway; SOCKS5_SERVER from the environment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dantex.client import ClientRouter, load_client_config
from tests.client._live import echo_through, live, reactor
from tests.integration.peers import Danted, free_port, wait_until
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


def socks_conf(danted: Danted, dead_port: int | None) -> str:
    dead = f"""\
route {{
  from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = {dead_port}
  proxyprotocol: socks_v5
  command: connect
}}
"""
    return f"""\
route.maxfail: 1
route.badexpire: 60
{dead if dead_port else ""}route {{
  from: 0.0.0.0/0 to: 0.0.0.0/0 via: {danted.host} port = {danted.port}
  proxyprotocol: socks_v5
  command: connect
}}
"""


def test_socksify_reads_the_same_file(
    danted: Danted,
    origins: Origins,
    tmp_path: Path,
    program: Callable[[str, str], str],
) -> None:
    """Dante's own client accepts the grammar the router is tested with below
    (without the dead route: socksify fails the connect that finds a gateway
    dead, and only the next one uses the other route)."""
    socksify = program("socksify", "dante-client")
    conf = tmp_path / "socks.conf"
    conf.write_text(socks_conf(danted, None))
    env = {**os.environ, "SOCKS_CONF": str(conf), "SOCKS_AUTOADD_LANROUTES": "no"}
    out = subprocess.run(
        [socksify, "curl", "-sS", "--max-time", "10", origins.http_url()],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.stdout == INDEX_BODY, out.stderr
    wait_until(
        lambda: f"127.0.0.1.{origins.http_port}" in danted.log_text(),
        timeout=5,
        what="danted to log socksify's connect",
    )


@live
async def test_router_fails_over_to_danted(
    danted: Danted, origins: Origins, tmp_path: Path
) -> None:
    """The dead first gateway is blacklisted; the connection goes through danted."""
    conf = tmp_path / "socks.conf"
    conf.write_text(socks_conf(danted, free_port()))
    config = load_client_config({"SOCKS_CONF": str(conf)})
    router = ClientRouter(reactor, config, environ={})
    ep = router.endpoint("127.0.0.1", origins.echo_port)
    assert await echo_through(ep, b"failover") == b"failover"
    assert [r.number for r in router.routes_for_host("127.0.0.1", 80)] == [2]


@live
async def test_socks5_server_variable(
    danted_userpass: Danted, origins: Origins
) -> None:
    """SOCKS5_SERVER with SOCKS_USERNAME/SOCKS_PASSWORD reaches an auth danted."""
    d = danted_userpass
    assert d.username is not None and d.password is not None
    env = {
        "SOCKS5_SERVER": f"{d.host}:{d.port}",
        "SOCKS_USERNAME": d.username,
        "SOCKS_PASSWORD": d.password,
    }
    router = ClientRouter(reactor, load_client_config(env), environ=env)
    ep = router.endpoint("localhost", origins.echo_port)
    assert await echo_through(ep, b"from the environment") == b"from the environment"
