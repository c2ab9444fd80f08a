"""The same Dante config under danted and under `twistd dante`: same behaviour.

Each scenario runs against both servers with one rule text; where the quirk
list says dantex differs on purpose (4A, unknown command/ATYP), it is tested
elsewhere, not here.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest

from tests.integration.conftest import RunDantex, StartPeer
from tests.integration.peers.danted import run_danted
from tests.integration.peers.origins import INDEX_BODY, TRAILER, Origins
from tests.integration.raw_socks import exchange

pytestmark = pytest.mark.integration


class Server(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...

    def log_text(self) -> str: ...


def rules(blocked_port: int) -> str:
    """Rules in the common subset of both parsers (one keyword per line)."""
    return f"""\
client pass {{
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error connect disconnect
}}
socks block {{
  from: 0.0.0.0/0 to: 127.0.0.1/32 port = {blocked_port}
  log: connect error
}}
socks pass {{
  from: 0.0.0.0/0 to: 0.0.0.0/0
  log: error connect disconnect
}}
"""


@pytest.fixture(params=["danted", "dantex"])
def server(
    request: pytest.FixtureRequest,
    start_peer: StartPeer,
    dantex: RunDantex,
    origins: Origins,
) -> Iterator[Server]:
    """The same rules served by danted or by dantex (external 127.0.0.1 for both)."""
    text = rules(origins.echo_port)
    if request.param == "danted":
        yield start_peer(run_danted, rules=text)
    else:
        srv = dantex(text, settings="external: 127.0.0.1")
        yield srv


def wait_log(server: Server, pattern: str) -> None:
    import time

    deadline = time.monotonic() + 5
    while not re.search(pattern, server.log_text(), re.M):
        assert time.monotonic() < deadline, (
            f"{pattern!r} not in log:\n{server.log_text()[-2000:]}"
        )
        time.sleep(0.05)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_curl_socks5_fetch(server: Server, origins: Origins) -> None:
    """A SOCKS5 fetch succeeds and the session is logged in Dante's format."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "--socks5",
            f"{server.host}:{server.port}",
            origins.http_url(),
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == INDEX_BODY
    port = origins.http_port
    lo = r"127\.0\.0\.1\."
    client, proxy, target = rf"{lo}\d+", rf"{lo}{server.port}", rf"{lo}{port}"
    wait_log(
        server,
        rf"pass\(2\): tcp/connect \[: {client} {proxy} -> {lo}\d+ {target}$",
    )
    wait_log(
        server,
        rf"pass\(2\): tcp/connect \]: \d+ -> {client} {proxy} -> \d+, "
        rf"\d+ -> {lo}\d+ {target} -> \d+: .*\.  Session duration: \d+s$",
    )


def test_blocked_target_gets_02(server: Server, origins: Origins) -> None:
    """A socks block rule answers X'02' and logs block(1)."""
    request = (
        b"\x05\x01\x00\x01"
        + socket.inet_aton("127.0.0.1")
        + origins.echo_port.to_bytes(2, "big")
    )
    r = exchange(server.host, server.port, [b"\x05\x01\x00", request])
    assert r[0] == b"\x05\x00"
    assert r[1][:2] == b"\x05\x02"
    wait_log(server, r"block\(1\): tcp/connect \]: 127\.0\.0\.1\.\d+ ")


def test_refused_target_gets_05(server: Server) -> None:
    """A closed port answers X'05'."""
    request = (
        b"\x05\x01\x00\x01"
        + socket.inet_aton("127.0.0.1")
        + closed_port().to_bytes(2, "big")
    )
    r = exchange(server.host, server.port, [b"\x05\x01\x00", request])
    assert r[1][:2] == b"\x05\x05"


def test_no_acceptable_method_gets_ff(server: Server) -> None:
    """Offering only GSS-API to a `socksmethod: none` server gets X'FF'."""
    r = exchange(server.host, server.port, [b"\x05\x01\x01"])
    assert r[0] == b"\x05\xff"


@pytest.mark.parametrize(("target", "code"), [("ok", 0x5A), ("closed", 0x5B)])
def test_socks4_connect(
    server: Server, origins: Origins, target: str, code: int
) -> None:
    """SOCKS 4: CD=90 for a granted CONNECT, CD=91 for a refused one."""
    port = origins.echo_port if target == "ok" else closed_port()
    # The blocked rule covers echo_port: use the HTTP port for "ok".
    if target == "ok":
        port = origins.http_port
    request = (
        b"\x04\x01"
        + port.to_bytes(2, "big")
        + socket.inet_aton("127.0.0.1")
        + b"me\x00"
    )
    r = exchange(server.host, server.port, [request])
    assert r[0][:2] == bytes((0, code))


def test_half_close(server: Server, origins: Origins) -> None:
    """Half-close passes through both servers the same way."""
    from python_socks.sync import Proxy

    proxy = Proxy.from_url(f"socks5://{server.host}:{server.port}")
    with proxy.connect(
        dest_host="127.0.0.1", dest_port=origins.halfclose_port, timeout=10
    ) as s:
        s.settimeout(10)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data == b"abc" + TRAILER


Check = Callable[[Server, Origins], None]
