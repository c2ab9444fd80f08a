"""Server chaining through real parents on loopback, driven by curl and python-socks.

dantex (``twistd -n dante``) with ``route { }`` blocks to danted and
microsocks (with and without authentication), tinyproxy and squid (HTTP
CONNECT, with Basic auth), a path of two parents, TLS to a parent, parents
stopped mid-test (failover, the bad mark and its expiry) and danted's route
order.  Each test checks the parent's own log (or what it saw), so a
request that silently went direct would fail it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from python_socks import ProxyError
from python_socks.sync import Proxy

from tests.integration.conftest import (
    OPEN_RULES,
    PROXY_PASSWORD,
    PROXY_USER,
    RunDantex,
    StartPeer,
)
from tests.integration.dantex_server import DantexServer
from tests.integration.peers import (
    Danted,
    Microsocks,
    Squid,
    Tinyproxy,
    run_danted,
)
from tests.integration.peers.danted import SOCKS_PASSWORD, SOCKS_USER
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration


def curl(
    server: DantexServer, url: str, *extra: str, mode: str = "socks5-hostname"
) -> subprocess.CompletedProcess[bytes]:
    """curl through dantex, bounded in time."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "15", f"--{mode}",
         f"{server.host}:{server.port}", *extra, url],
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip


def echo_through(server: DantexServer, origins: Origins, user: str = "") -> bytes:
    """python-socks tunnel to the echo origin: what comes back for a ping."""
    auth = f"{user}@" if user else ""
    proxy = Proxy.from_url(f"socks5://{auth}{server.host}:{server.port}")
    sock = proxy.connect(
        dest_host=origins.host, dest_port=origins.echo_port, timeout=15
    )
    with sock:
        sock.settimeout(15)
        sock.sendall(b"ping through the chain")
        got = b""
        while len(got) < 22 and (chunk := sock.recv(64)):
            got += chunk
        return got


def route(parent: str, port: int, *lines: str) -> str:
    """A route for everything through ``parent``:``port``."""
    body = "".join(f"  {line}\n" for line in lines)
    return f"route {{\n  from: 0/0 to: 0/0\n  via: {parent} port = {port}\n{body}}}\n"


def wait_for(predicate: object, what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` every 50 ms, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_danted_parent_with_curl_and_python_socks(
    dantex: RunDantex, danted: Danted, origins: Origins
) -> None:
    """A Dante-style route (socks_v5, method none, command connect): curl and
    python-socks get their bytes, and danted logs dantex's connects."""
    routes = route(
        danted.host, danted.port,
        "proxyprotocol: socks_v5", "method: none", "command: connect",
    )  # fmt: skip
    server = dantex(OPEN_RULES + routes)
    page = curl(server, origins.http_url())
    assert page.returncode == 0, page.stderr
    assert page.stdout == INDEX_BODY
    assert echo_through(server, origins) == b"ping through the chain"
    server.wait_for_log(r"serverchain: route #1 \(socks_v5 127\.0\.0\.1\.\d+\)")
    wait_for(
        lambda: danted.log_text().count(f"127.0.0.1.{origins.echo_port}") >= 1,
        "danted's log of the echo connect",
    )


def test_route_redirect_from_reaches_danted_from_that_address(
    dantex: RunDantex, danted: Danted, origins: Origins
) -> None:
    """redirect from: in the route: danted logs dantex's connection as
    coming from 127.0.0.2 and the port the route names."""
    with socket.socket() as probe:  # a port free on 127.0.0.2
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    routes = route(
        danted.host, danted.port,
        "proxyprotocol: socks_v5", "method: none",
        f"redirect from: 127.0.0.2/32 port = {port}",
    )  # fmt: skip
    server = dantex(OPEN_RULES + routes)
    assert echo_through(server, origins) == b"ping through the chain"
    wait_for(
        lambda: f"127.0.0.2.{port} " in danted.log_text(),
        "danted's log of a client at 127.0.0.2",
    )


def test_danted_parent_with_fixed_credentials(
    dantex: RunDantex, start_peer: StartPeer, origins: Origins
) -> None:
    """username:/password: in the route log dantex in to danted (RFC 1929);
    without them danted refuses and the client hears why."""
    parent = start_peer(run_danted, auth="username")
    with_creds = route(
        parent.host, parent.port, "proxyprotocol: socks_v5",
        f"username: {SOCKS_USER}", f"password: {SOCKS_PASSWORD}",
    )  # fmt: skip
    server = dantex(OPEN_RULES + with_creds)
    page = curl(server, origins.http_url())
    assert page.returncode == 0, page.stderr
    wait_for(
        lambda: f"username%{SOCKS_USER}@" in parent.log_text(),
        "danted's log naming the user",
    )
    assert SOCKS_PASSWORD not in server.log_text()
    without = dantex(OPEN_RULES + route(parent.host, parent.port))
    refused = curl(without, origins.http_url(), mode="socks5")
    assert refused.returncode == 97, refused.stderr  # 0x02: not allowed
    without.wait_for_log(r"no acceptable authentication method")


def test_client_credentials_are_passed_on_to_danted(
    dantex: RunDantex, start_peer: StartPeer, origins: Origins, tmp_path: Path
) -> None:
    """method: username: dantex checks the client's password, then logs in
    to danted with the same credentials (danted 1.4.2 itself fails here)."""
    parent = start_peer(run_danted, auth="username")
    passwd = tmp_path / "users"
    passwd.write_text(f"{SOCKS_USER}:{{PLAIN}}{SOCKS_PASSWORD}\n")
    routes = route(
        parent.host, parent.port, "proxyprotocol: socks_v5", "method: username"
    )
    settings = f"socksmethod: username\nusername.passwordfile: {passwd}\n"
    server = dantex(OPEN_RULES + routes, settings=settings)
    page = curl(
        server, origins.http_url(), "--proxy-user", f"{SOCKS_USER}:{SOCKS_PASSWORD}"
    )
    assert page.returncode == 0, page.stderr
    assert page.stdout == INDEX_BODY
    wait_for(
        lambda: f"username%{SOCKS_USER}@" in parent.log_text(),
        "danted's log naming the forwarded user",
    )
    assert SOCKS_PASSWORD not in server.log_text()


@pytest.mark.parametrize("auth", [False, True])
def test_microsocks_parent(
    dantex: RunDantex,
    microsocks: Microsocks,
    microsocks_userpass: Microsocks,
    origins: Origins,
    auth: bool,
) -> None:
    """microsocks as the parent, without and with fixed credentials."""
    parent = microsocks_userpass if auth else microsocks
    lines = ["proxyprotocol: socks_v5"]
    if auth:
        lines += [f"username: {PROXY_USER}", f"password: {PROXY_PASSWORD}"]
    server = dantex(OPEN_RULES + route(parent.host, parent.port, *lines))
    assert echo_through(server, origins) == b"ping through the chain"
    wait_for(lambda: parent.log_text() != "", "microsocks's log of a client")
    assert PROXY_PASSWORD not in server.log_text()


@pytest.mark.parametrize("auth", [False, True])
def test_tinyproxy_parent(
    dantex: RunDantex,
    tinyproxy: Tinyproxy,
    tinyproxy_auth: Tinyproxy,
    origins: Origins,
    auth: bool,
) -> None:
    """HTTP CONNECT through tinyproxy, with Basic credentials when it wants them."""
    parent = tinyproxy_auth if auth else tinyproxy
    lines = ["proxyprotocol: http"]
    if auth:
        lines += [f"username: {PROXY_USER}", f"password: {PROXY_PASSWORD}"]
    server = dantex(OPEN_RULES + route(parent.host, parent.port, *lines))
    page = curl(server, origins.http_url())
    assert page.returncode == 0, page.stderr
    assert page.stdout == INDEX_BODY
    wait_for(lambda: "CONNECT" in parent.log_text(), "tinyproxy's CONNECT line")


def test_squid_parent_with_basic_auth_and_its_refusal(
    dantex: RunDantex, squid: Squid, squid_auth: Squid, origins: Origins
) -> None:
    """squid with Basic credentials tunnels; squid without credentials answers
    407 (told to the client as 0x02); a closed port behind squid is 503,
    told as 0x05 'connection refused'."""
    lines = ["proxyprotocol: http", f"username: {PROXY_USER}"]
    good = dantex(
        OPEN_RULES
        + route(squid_auth.host, squid_auth.port, *lines, f"password: {PROXY_PASSWORD}")
    )
    assert echo_through(good, origins) == b"ping through the chain"
    bare = dantex(OPEN_RULES + route(squid_auth.host, squid_auth.port, lines[0]))
    with pytest.raises(ProxyError) as info:
        echo_through(bare, origins)
    assert info.value.error_code == 2
    plain = dantex(OPEN_RULES + route(squid.host, squid.port, lines[0]))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        proxy = Proxy.from_url(f"socks5://{plain.host}:{plain.port}")
        with pytest.raises(ProxyError) as info:
            proxy.connect(dest_host="127.0.0.1", dest_port=port, timeout=15)
    assert info.value.error_code == 5


def test_path_of_two_parents(
    dantex: RunDantex, danted: Danted, tinyproxy: Tinyproxy, origins: Origins
) -> None:
    """One route through danted then tinyproxy: danted connects to tinyproxy,
    tinyproxy to the origin, the client gets the page."""
    routes = (
        "route {\n  from: 0/0 to: 0/0\n"
        f"  via: {danted.host} port = {danted.port}\n  proxyprotocol: socks_v5\n"
        f"  via: {tinyproxy.host} port = {tinyproxy.port}\n  proxyprotocol: http\n}}\n"
    )
    server = dantex(OPEN_RULES + routes)
    page = curl(server, origins.http_url())
    assert page.returncode == 0, page.stderr
    assert page.stdout == INDEX_BODY
    wait_for(
        lambda: f"127.0.0.1.{tinyproxy.port}" in danted.log_text(),
        "danted's connect to tinyproxy",
    )
    wait_for(
        lambda: f"127.0.0.1:{origins.http_port}" in tinyproxy.log_text(),
        "tinyproxy's CONNECT to the origin",
    )


def test_stopped_parent_fails_over_and_is_skipped_until_badexpire(
    dantex: RunDantex, start_peer: StartPeer, origins: Origins
) -> None:
    """Parent A is stopped mid-test: the next request fails over to B and A
    is blacklisted; while marked, A's port sees no connection at all; after
    route.badexpire it is tried again."""
    a = start_peer(run_danted)
    b = start_peer(run_danted)
    server = dantex(
        OPEN_RULES + route(a.host, a.port, "proxyprotocol: socks_v5")
        + route(b.host, b.port, "proxyprotocol: socks_v5"),
        settings="route.badexpire: 2\n",
        workers=1,  # bad marks are per worker process
    )  # fmt: skip
    assert echo_through(server, origins) == b"ping through the chain"
    assert f"127.0.0.1.{origins.echo_port}" in a.log_text()
    a.stop()
    assert echo_through(server, origins) == b"ping through the chain"
    server.wait_for_log(r"blacklisting route #1 for 2s")
    # A's port, now a plain listener: it must stay unvisited while A is bad
    with socket.create_server(("127.0.0.1", a.port)) as watcher:
        watcher.settimeout(0.2)
        marked = time.monotonic()
        assert echo_through(server, origins) == b"ping through the chain"
        with pytest.raises(TimeoutError):
            watcher.accept()
        assert time.monotonic() - marked < 2, "the check must run while A is bad"
        time.sleep(max(0.0, marked + 2.1 - time.monotonic()))
        watcher.settimeout(15)
        box: list[bytes] = []
        import threading

        thread = threading.Thread(
            target=lambda: box.append(echo_through(server, origins))
        )
        thread.start()
        visitor, _ = watcher.accept()  # tried again after badexpire
        visitor.close()  # ... and broken again: B takes over
        thread.join(20)
    assert box == [b"ping through the chain"]
    assert b.log_text().count(f"127.0.0.1.{origins.echo_port}") >= 3


def test_all_parents_down_is_network_unreachable(
    dantex: RunDantex, start_peer: StartPeer, origins: Origins
) -> None:
    """Every route's parent unreachable: the client gets 0x03 and the log
    lists each route's failure."""
    a = start_peer(run_danted)
    port = a.port
    a.stop()
    server = dantex(OPEN_RULES + route("127.0.0.1", port, "proxyprotocol: socks_v5"))
    with pytest.raises(ProxyError) as info:
        echo_through(server, origins)
    assert info.value.error_code == 3
    server.wait_for_log(r"serverchain failed: route #1: .*could not connect")


def test_dante_route_order_puts_direct_first(
    dantex: RunDantex, danted: Danted, origins: Origins
) -> None:
    """A catch-all direct route after a parent: file order uses the parent;
    route.order: dante goes direct (danted's own order), the parent unused."""
    routes = route(danted.host, danted.port, "proxyprotocol: socks_v5") + (
        "route { from: 0/0 to: 0/0 via: direct }\n"
    )
    in_file_order = dantex(OPEN_RULES + routes)
    assert echo_through(in_file_order, origins) == b"ping through the chain"
    wait_for(lambda: "tcp/connect ]" in danted.log_text(), "danted's session end")
    seen = danted.log_text().count("tcp/connect [")
    as_danted = dantex(OPEN_RULES + routes, settings="route.order: dante\n")
    assert echo_through(as_danted, origins) == b"ping through the chain"
    time.sleep(0.3)
    assert danted.log_text().count("tcp/connect [") == seen
