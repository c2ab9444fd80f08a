"""The configuration at work in the real `twistd dante`: --check reports,
SIGHUP reloads under load, SIGUSR1 state dumps, and the per-rule log flags."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import run_twistd
from tests.integration.peers.origins import Origins
from tests.integration.raw_socks import recv_upto

pytestmark = pytest.mark.integration

LOOPBACK_CLIENTS = """\
client pass {
  from: 127.0.0.0/8 to: 0/0
  log: error
}
"""


def socks5_connect(host: str, port: int, target_port: int) -> socket.socket:
    """A SOCKS5 CONNECT to 127.0.0.1:target_port (RFC 1928 bytes by hand);
    returns the socket after a success reply, raises on any other reply."""
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + target_port.to_bytes(2, "big"))
    reply = recv_upto(s, 10)
    if reply[1] != 0:
        s.close()
        raise ConnectionRefusedError(f"SOCKS reply {reply[1]:#04x}")
    return s


def echo(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    return recv_upto(s, len(payload))


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# -- --check ---------------------------------------------------------------------


def test_check_reports_every_error_like_a_compiler(tmp_path: Path) -> None:
    """--check: every error as file:line:col, source line, marker; warnings; exit 1."""
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "internal: 127.0.0.1 port = 1080\n"
        "method: none\n"
        "socksmethdo: none\n"
        "socks pass {\n"
        "  from: 0/0 to: 10.0.0.1\n"
        "  libwrap: spawn x\n"
        "}\n"
    )
    out = run_twistd(["dante", "-c", str(conf), "--check"], tmp_path)
    assert out.returncode == 1
    err = out.stderr
    assert f"{conf}:2:1: warning: 'method' is deprecated (use 'socksmethod')" in err
    assert (
        f"{conf}:3:1: error: unknown keyword 'socksmethdo' "
        "(did you mean 'socksmethod'?)" in err
    )
    assert "socksmethdo: none\n^^^^^^^^^^^^" in err
    assert f"{conf}:5:17: error: no netmask has been specified" in err
    assert "  from: 0/0 to: 10.0.0.1\n                ^^^^^^^^" in err
    assert f"{conf}:6:3: error: 'libwrap' is not supported yet" in err
    assert "3 errors in configuration" in err


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    """--check on a good file exits 0 and says so."""
    conf = tmp_path / "good.conf"
    conf.write_text(
        "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
        "socks pass { from: 0/0 to: 0/0 }\n"
    )
    out = run_twistd(["dante", "-c", str(conf), "--check"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout


# -- SIGHUP ---------------------------------------------------------------------------


def test_reload_under_100_sessions_keeps_them_and_applies_new_rules(
    dantex: RunDantex, origins: Origins
) -> None:
    """100 live sessions survive a reload that blocks their target; new ones
    get the new rules (X'02')."""
    srv = dantex(
        LOOPBACK_CLIENTS + "socks pass {\n  from: 0/0 to: 0/0\n  log: error\n}\n"
    )
    sessions = [
        socks5_connect(srv.host, srv.port, origins.echo_port) for _ in range(100)
    ]
    try:
        for i, s in enumerate(sessions):
            assert echo(s, b"before %d" % i) == b"before %d" % i
        conf = srv.dir / "sockd.conf"
        text = conf.read_text()
        blocked = (
            "socks block {\n  from: 0/0 to: 127.0.0.1/32 port = "
            f"{origins.echo_port}\n  log: connect error\n}}\n"
        )
        conf.write_text(text.replace("socks pass {", blocked + "socks pass {"))
        srv.send_signal(signal.SIGHUP)
        srv.wait_for_log(r"SIGHUP \]: config reloaded")
        for i, s in enumerate(sessions):
            assert echo(s, b"after %d" % i) == b"after %d" % i
        with pytest.raises(ConnectionRefusedError, match="0x02"):
            socks5_connect(srv.host, srv.port, origins.echo_port)
        srv.wait_for_log(r"block\(1\): tcp/connect \]: ")
    finally:
        for s in sessions:
            s.close()


def test_bad_reload_keeps_the_config_in_force(
    dantex: RunDantex, origins: Origins
) -> None:
    """A broken file on SIGHUP is logged with its line; the server goes on."""
    srv = dantex(LOOPBACK_CLIENTS + "socks pass {\n  from: 0/0 to: 0/0\n}\n")
    conf = srv.dir / "sockd.conf"
    conf.write_text(conf.read_text() + "socks pass { from: 0/0 to: 10.0.0.1 }\n")
    srv.send_signal(signal.SIGHUP)
    srv.wait_for_log(r"config reload failed; keeping the configuration in force")
    assert re.search(r"sockd\.conf:\d+:\d+: error: no netmask", srv.log_text())
    with socks5_connect(srv.host, srv.port, origins.echo_port) as s:
        assert echo(s, b"still here") == b"still here"


def test_log_file_is_reopened_on_sighup(dantex: RunDantex, origins: Origins) -> None:
    """After the log file is moved away (log rotation), SIGHUP starts a new one."""
    srv = dantex(
        LOOPBACK_CLIENTS + "socks pass {\n  from: 0/0 to: 0/0\n  log: connect\n}\n"
    )
    rotated = srv.log_path.with_suffix(".1")
    srv.log_path.rename(rotated)
    srv.send_signal(signal.SIGHUP)
    wait_until(srv.log_path.exists)
    with socks5_connect(srv.host, srv.port, origins.echo_port) as s:
        echo(s, b"x")
    srv.wait_for_log(r"pass\(1\): tcp/connect \[: ")
    assert "SIGHUP [: reloading config" in rotated.read_text()


# -- SIGUSR1 --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_dumps_counters_and_live_sessions(
    dantex: RunDantex, origins: Origins, workers: int
) -> None:
    """SIGUSR1 logs a header and one line per live session, with byte counts;
    with --workers the supervisor forwards it to every worker."""
    srv = dantex(
        LOOPBACK_CLIENTS + "socks pass {\n  from: 0/0 to: 0/0\n}\n", workers=workers
    )
    if workers > 1:
        for i in range(workers):
            srv.wait_for_log(rf"worker {i} running")
    with socks5_connect(srv.host, srv.port, origins.echo_port) as s:
        assert echo(s, b"0123456789") == b"0123456789"
        srv.send_signal(signal.SIGUSR1)
        m = srv.wait_for_log(
            r"tcp: 127\.0\.0\.1\.(\d+) 127\.0\.0\.1\.\d+ <-> \S+ "
            rf"127\.0\.0\.1\.{origins.echo_port}: age: \d+s, idle: \d+s, "
            r"bytes transferred: 10 <-> 10"
        )
        assert int(m.group(1)) == s.getsockname()[1]
    srv.wait_for_log(r"sessions: a: \d+ c: 1 ")
    if workers > 1:
        srv.wait_for_log(r"info dump: supervisor pid \d+, workers 0:\d+ 1:\d+")
        for i in range(workers):
            srv.wait_for_log(rf"info dump \[: worker {i} pid")


# -- log: flags -----------------------------------------------------------------------


def test_iooperation_data_and_tcpinfo_lines(
    dantex: RunDantex, origins: Origins
) -> None:
    """log: iooperation/data write a '-' line per read with size and payload;
    tcpinfo appends the kernel's TCP_INFO to the disconnect line."""
    srv = dantex(
        LOOPBACK_CLIENTS
        + "socks pass {\n  from: 0/0 to: 0/0\n"
        + "  log: connect disconnect iooperation data tcpinfo\n}\n"
    )
    with socks5_connect(srv.host, srv.port, origins.echo_port) as s:
        assert echo(s, b"ping\n") == b"ping\n"
        client = f"127.0.0.1.{s.getsockname()[1]}"
    lo = r"127\.0\.0\.1"
    target = rf"{lo}\.{origins.echo_port}"
    srv.wait_for_log(
        rf"pass\(1\): tcp/connect -: {re.escape(client)} {lo}\.\d+ -> "
        rf"{lo}\.\d+ {target} \(5\): ping\\n$"
    )
    srv.wait_for_log(
        rf"pass\(1\): tcp/connect -: {target} {lo}\.\d+ -> "
        rf"{lo}\.\d+ {re.escape(client)} \(5\): ping\\n$"
    )
    m = srv.wait_for_log(
        r"tcp/connect \]: 5 -> .* Session duration: \d+s\.  TCP_INFO: "
        r"client: (.*); target: (.*)$"
    )
    assert "rtt: " in m.group(1) and "snd_cwnd: " in m.group(2)
