"""redirect to:/from:, timeouts and monitor alarms on real sockets.

Real dantex servers (``twistd -n dante``) and the origin servers on loopback;
every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import socks  # PySocks
from python_socks.sync import Proxy

from tests.integration.conftest import OPEN_RULES, RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.origins import INDEX_BODY, Origins, pattern

pytestmark = pytest.mark.integration


def tunnel(server: DantexServer, host: str, port: int) -> socket.socket:
    """A blocking socket tunnelled through dantex (SOCKS 5, python-socks)."""
    proxy = Proxy.from_url(f"socks5://{server.host}:{server.port}")
    sock: socket.socket = proxy.connect(dest_host=host, dest_port=port, timeout=10)
    sock.settimeout(10)
    return sock


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rules(extra: str) -> str:
    return f"""\
client pass {{ from: 127.0.0.0/8 to: 0/0
  log: error connect disconnect }}
socks pass {{ from: 0/0 to: 0/0
  log: error connect disconnect
  {extra} }}
"""


# -- redirect -------------------------------------------------------------------


def test_redirect_to_sends_curls_request_to_another_server(
    dantex: RunDantex, origins: Origins
) -> None:
    """curl asks for a port where nothing listens; the rule sends it to the
    HTTP origin, whose page comes back; the log names the new target."""
    server = dantex(
        rules(f"redirect to: 127.0.0.1/32 port = {origins.http_port}"), workers=1
    )
    nowhere = closed_port()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "--socks5",
            f"{server.host}:{server.port}",
            f"http://127.0.0.1:{nowhere}/index.html",
        ],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == INDEX_BODY
    server.wait_for_log(
        rf"pass\(1\): tcp/connect \]: .* 127\.0\.0\.1\.{origins.http_port} -> \d+: "
        r"(local client|remote peer) closed"
    )


@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_redirect_from_picks_source_address_and_port(
    dantex: RunDantex, origins: Origins, relay: str
) -> None:
    """The outbound connection comes from 127.0.0.2 and a port of the range."""
    low = closed_port()
    low = min(low, 65000)
    server = dantex(
        rules(f"redirect from: 127.0.0.2/32 port {low} - {low + 20}"),
        workers=1,
        relay=relay,
    )
    with tunnel(server, "127.0.0.1", origins.echo_port) as s:
        s.sendall(b"hello")
        assert s.recv(10) == b"hello"
    found = server.wait_for_log(
        r"tcp/connect \[: .* -> 127\.0\.0\.2\.(\d+) 127\.0\.0\.1\."
        + str(origins.echo_port)
    )
    assert low <= int(found.group(1)) <= low + 20


# -- timeouts ---------------------------------------------------------------------


@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_io_timeout_closes_an_idle_session_with_danteds_reason(
    dantex: RunDantex, origins: Origins, relay: str
) -> None:
    """Idle for the socks-rule's timeout.io: closed, 'i/o timeout' logged."""
    server = dantex(rules("timeout.io: 1"), relay=relay, workers=1)
    with tunnel(server, "127.0.0.1", origins.echo_port) as s:
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        started = time.monotonic()
        assert s.recv(10) == b""
        assert 0.5 < time.monotonic() - started < 8
    server.wait_for_log(
        r"pass\(1\): tcp/connect \]: 4 -> .* -> 4, 4 -> .* -> 4: "
        r"i/o timeout\.  Session duration: \ds"
    )


@pytest.mark.parametrize("relay", ["splice", "copy"])
def test_tcp_fin_wait_closes_a_half_closed_session(
    dantex: RunDantex, origins: Origins, relay: str
) -> None:
    """The target sends its bytes and closes; the client keeps its half open.
    After timeout.tcp_fin_wait the session is closed with danted's reason."""
    server = dantex(OPEN_RULES, settings="timeout.tcp_fin_wait: 1", relay=relay)
    with tunnel(server, "127.0.0.1", origins.source_port) as s:
        s.sendall(b"5\n")
        got = b""
        while len(got) < 5:  # bounded: recv times out after 10 s
            data = s.recv(10)
            assert data
            got += data
        assert got == pattern(5)
        assert s.recv(10) == b""  # the target's EOF, passed on
        started = time.monotonic()
        server.wait_for_log(r"tcp-fin-wait timeout\.  Session duration", timeout=8)
        assert time.monotonic() - started < 8
    assert "remote peer closed" not in server.log_text()


# -- monitors ---------------------------------------------------------------------


def test_data_alarm_raises_when_idle_and_clears_on_traffic(
    dantex: RunDantex, origins: Origins
) -> None:
    """Nothing received from clients for a period: alarm; traffic: cleared."""
    monitor = "monitor { from: 0/0 to: 0/0\n  internal.alarm.data.recv: 0 in 1\n}\n"
    server = dantex(OPEN_RULES + monitor, workers=1)
    server.wait_for_log(
        r"warning: monitor\(1\): alarm/data \[: 0/0 -> 0/0 internal\.recv: "
        r"0/0 in 1s\.  Session count: 0"
    )
    with tunnel(server, "127.0.0.1", origins.echo_port) as s:
        for _ in range(15):  # 1.5 s of traffic: at least one whole period
            s.sendall(b"x")
            assert s.recv(10) == b"x"
            time.sleep(0.1)
        server.wait_for_log(
            r"warning: monitor\(1\): alarm/data \]: 0/0 -> 0/0 internal\.recv: "
            r"\d+/0 in 1s\.  Session count: 1\.  Alarm duration: \d+s"
        )


def test_udp_monitor_watches_a_pysocks_association_not_tcp(
    dantex: RunDantex, origins: Origins
) -> None:
    """protocol: udp -- TCP traffic leaves its alarm raised; a PySocks UDP
    association sending to a real UDP socket clears it, counted as sent to
    the target, as one session."""
    monitor = (
        "monitor { from: 0/0 to: 127.0.0.0/8 protocol: udp\n"
        "  external.alarm.data.send: 0 in 1\n}\n"
    )
    server = dantex(OPEN_RULES + monitor, workers=1)
    raised = (
        r"warning: monitor\(1\): alarm/data \[: 0/0 -> 127\.0\.0\.0/8 "
        r"external\.send: 0/0 in 1s\.  Session count: 0"
    )
    server.wait_for_log(raised)
    with tunnel(server, "127.0.0.1", origins.echo_port) as s:
        for _ in range(15):  # 1.5 s of TCP traffic: a whole period
            s.sendall(b"x")
            assert s.recv(10) == b"x"
            time.sleep(0.1)
    assert "alarm/data ]" not in server.log_text()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target,
        socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        target.bind(("127.0.0.1", 0))
        target.settimeout(10)
        client.set_proxy(socks.SOCKS5, server.host, server.port)
        client.settimeout(10)
        for _ in range(15):  # 1.5 s of datagrams: a whole period
            client.sendto(b"ping", target.getsockname())
            assert target.recvfrom(100)[0] == b"ping"
            time.sleep(0.1)
        found = server.wait_for_log(
            r"warning: monitor\(1\): alarm/data \]: 0/0 -> 127\.0\.0\.0/8 "
            r"external\.send: (\d+)/0 in 1s\.  Session count: 1\.  "
            r"Alarm duration: \d+s"
        )
    assert int(found.group(1)) % 4 == 0 and int(found.group(1)) >= 4  # payloads


def test_disconnect_alarm_counts_sessions_closed_by_targets(
    dantex: RunDantex, origins: Origins
) -> None:
    """Four targets close their sessions: the external disconnect alarm fires."""
    monitor = "monitor { from: 0/0 to: 0/0\n  external.alarm.disconnect: 2/1 in 2\n}\n"
    server = dantex(OPEN_RULES + monitor, workers=1)
    for _ in range(4):
        with tunnel(server, "127.0.0.1", origins.source_port) as s:
            s.sendall(b"3\n")
            while s.recv(10):  # bounded by the 10 s timeout and the 3 bytes
                pass
    found = server.wait_for_log(
        r"warning: monitor\(1\): alarm/disconnect \]: 0/0 -> 0/0 external: "
        r"(\d+)/(\d+) disconnects during last 2s\.  Session count: \d+",
        timeout=8,
    )
    assert int(found.group(1)) >= 2
    assert re.search(r"remote peer closed", server.log_text())


def test_sighup_drops_raised_alarms_silently_and_starts_over(
    dantex: RunDantex,
) -> None:
    """After a reload the alarm is raised anew, with no clear line between."""
    import signal

    monitor = "monitor { from: 0/0 to: 0/0\n  alarm.data: 0 in 1\n}\n"
    server = dantex(OPEN_RULES + monitor, workers=1)
    raised = r"monitor\(1\): alarm/data \[: 0/0 -> 0/0 internal/external: 0/0 in 1s"
    server.wait_for_log(raised)
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"SIGHUP \]: config reloaded")
    deadline = time.monotonic() + 8
    while len(re.findall(raised, server.log_text())) < 2:  # bounded by deadline
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.1)
    assert "alarm/data ]" not in server.log_text()


def test_two_workers_monitor_every_session_together(
    dantex: RunDantex, origins: Origins
) -> None:
    """--workers 2: one worker raises the alarms, over both workers' sessions.
    Idle: one 'no data' line (not one per worker); traffic through the other
    worker clears it, with that worker's session counted."""
    monitor = "monitor { from: 0/0 to: 0/0\n  internal.alarm.data.recv: 0 in 1\n}\n"
    server = dantex(OPEN_RULES + monitor, workers=2)
    raised = re.compile(r"\[(\d+)\]: warning: monitor\(1\): alarm/data \[: ")
    found = server.wait_for_log(raised.pattern)
    alarming = int(found.group(1))
    time.sleep(1.5)  # more periods: still one line, from one worker
    assert len(raised.findall(server.log_text())) == 1
    # the workers share the listening socket: with the alarming one stopped,
    # the other serves the tunnel
    os.kill(alarming, signal.SIGSTOP)
    try:
        s = socket.create_connection((server.host, server.port), timeout=10)
        s.sendall(b"\x05\x01\x00")  # VER=5, one method: no authentication
        assert s.recv(2) == b"\x05\x00"
        # CONNECT 127.0.0.1:echo (RFC 1928 §4)
        s.sendall(
            b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", origins.echo_port)
        )
        assert s.recv(10)[:2] == b"\x05\x00"
    finally:
        os.kill(alarming, signal.SIGCONT)
    with s:
        for _ in range(25):  # 2.5 s of traffic through the other worker
            s.sendall(b"x")
            assert s.recv(10) == b"x"
            time.sleep(0.1)
        cleared = server.wait_for_log(
            r"\[(\d+)\]: warning: monitor\(1\): alarm/data \]: 0/0 -> 0/0 "
            r"internal\.recv: \d+/0 in 1s\.  Session count: 1\.  Alarm duration"
        )
    assert int(cleared.group(1)) == alarming
    served = re.search(r"\[(\d+)\]: info: pass\(1\): tcp/connect \[", server.log_text())
    assert served is not None and int(served.group(1)) != alarming
