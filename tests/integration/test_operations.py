"""Graceful operations with the real server: SIGTERM drains live sessions
(``timeout.shutdown``), with and without workers; privileges are given up
after binding (``--uid``, ``user.unprivileged``); log files are reopened on
SIGHUP after a logrotate-style rename.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from python_socks.sync import Proxy

from tests.integration.conftest import OPEN_RULES, RunDantex, peer_missing
from tests.integration.dantex_server import DantexServer, start_dantex
from tests.integration.peers import PeerMissingError
from tests.integration.peers.origins import Origins

pytestmark = pytest.mark.integration


def tunnel(server: DantexServer, port: int) -> socket.socket:
    proxy = Proxy.from_url(f"socks5://{server.host}:{server.port}")
    sock: socket.socket = proxy.connect(
        dest_host="127.0.0.1", dest_port=port, timeout=10
    )
    sock.settimeout(10)
    return sock


def echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    deadline = time.monotonic() + 10
    while len(got) < len(data) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def exited(pid: int) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie waiting for pytest)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def wait_exit(pid: int, timeout: float) -> float:
    """Seconds until ``pid`` ended; fails after ``timeout``."""
    start = time.monotonic()
    while not exited(pid):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"pid {pid} still running after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - start


def wait_refused(server: DantexServer, timeout: float = 5.0) -> None:
    """Wait (bounded) until new connections to the server are refused."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except ConnectionRefusedError:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the server still accepts after SIGTERM")
        time.sleep(0.05)


def uid_line(pid: int, field: str = "Uid") -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} line")


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_accepting_and_lets_live_sessions_finish(
    dantex: RunDantex, origins: Origins, workers: int
) -> None:
    """After SIGTERM new clients are refused, a live session still relays,
    and the server exits as soon as it ends (well before timeout.shutdown)."""
    server = dantex(settings="timeout.shutdown: 30", workers=workers)
    sock = tunnel(server, origins.echo_port)
    assert echo(sock, b"before") == b"before"
    server.send_signal(signal.SIGTERM)
    wait_refused(server)
    assert echo(sock, b"during the drain") == b"during the drain"
    assert not exited(server.pid)
    sock.close()
    took = wait_exit(server.pid, 15)
    assert took < 15
    server.wait_for_log(r"shutdown: waiting up to 30s for \d+ live session")
    server.wait_for_log(r"shutdown: every session has ended")
    server.wait_for_log(r"tcp/connect \]: .*local client closed")


@pytest.mark.parametrize("workers", [1, 2])
def test_sessions_still_live_after_timeout_shutdown_are_closed(
    dantex: RunDantex, origins: Origins, workers: int
) -> None:
    """A session outliving timeout.shutdown is closed, logged, and we exit."""
    server = dantex(settings="timeout.shutdown: 1", workers=workers)
    sock = tunnel(server, origins.echo_port)
    assert echo(sock, b"x") == b"x"
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert sock.recv(10) == b""  # closed by the server after ~1 s
    assert time.monotonic() - start >= 0.9
    wait_exit(server.pid, 15)
    server.wait_for_log(r"server shutting down \(timeout\.shutdown 1s\)")
    sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_second_sigterm_closes_at_once(
    dantex: RunDantex, origins: Origins, workers: int
) -> None:
    """A second SIGTERM during the drain closes the sessions and we exit,
    without a traceback."""
    server = dantex(settings="timeout.shutdown: 60", workers=workers)
    sock = tunnel(server, origins.echo_port)
    assert echo(sock, b"x") == b"x"
    server.send_signal(signal.SIGTERM)
    server.wait_for_log(r"shutdown: waiting up to 60s")
    server.send_signal(signal.SIGTERM)
    assert sock.recv(10) == b""
    assert wait_exit(server.pid, 15) < 15
    sock.close()
    out = (server.dir / "twistd.out").read_text()
    assert "Traceback" not in out and "Unhandled" not in out, out


def test_without_timeout_shutdown_sessions_are_closed_at_once(
    dantex: RunDantex, origins: Origins
) -> None:
    """The default (0) closes live sessions right away on SIGTERM."""
    server = dantex(workers=1)
    sock = tunnel(server, origins.echo_port)
    server.send_signal(signal.SIGTERM)
    assert sock.recv(10) == b""
    assert wait_exit(server.pid, 10) < 5
    sock.close()


def _free_low_port() -> int:
    for port in range(900, 1000):  # bounded
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 900-999")


@pytest.fixture
def as_root() -> None:
    """Dropping privileges needs root: required like a peer (fails under the
    test command, which runs as root; skips elsewhere)."""
    if os.geteuid() != 0:
        peer_missing(PeerMissingError("root (to drop privileges)"))


@pytest.fixture
def world_readable(tmp_path: Path) -> Iterator[Path]:
    """A directory user nobody can read (pytest's own is root-only)."""
    d = tmp_path / "pub"
    d.mkdir()
    for p in (tmp_path, d):
        p.chmod(0o755)
    yield d


def test_twistd_uid_binds_a_low_port_first_then_runs_as_nobody(
    as_root: None, world_readable: Path, origins: Origins
) -> None:
    """twistd --uid nobody: port < 1024 bound as root, then every id is nobody's
    and the server still serves."""
    port = _free_low_port()
    config = f"internal: 127.0.0.1 port = {port}\nsocksmethod: none\n{OPEN_RULES}"
    with ExitStack() as stack:
        server = stack.enter_context(
            start_dantex(
                config,
                world_readable / "d",
                extra_args=["--workers", "1"],
                twistd_args=["--uid", "nobody", "--gid", "nogroup"],
            )
        )
        assert server.port == port
        nobody = 65534
        assert uid_line(server.pid) == [nobody] * 4
        assert uid_line(server.pid, "Gid") == [nobody] * 4
        sock = tunnel(server, origins.echo_port)
        assert echo(sock, b"as nobody") == b"as nobody"
        sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_user_unprivileged_sets_the_effective_user(
    as_root: None, world_readable: Path, origins: Origins, workers: int
) -> None:
    """user.unprivileged: nobody: effective uid nobody (saved root, as Dante),
    low port bound first, sessions served; each worker does the same."""
    port = _free_low_port()
    config = (
        f"internal: 127.0.0.1 port = {port}\nuser.unprivileged: nobody\n"
        f"socksmethod: none\n{OPEN_RULES}"
    )
    with ExitStack() as stack:
        server = stack.enter_context(
            start_dantex(
                config, world_readable / "d", extra_args=["--workers", str(workers)]
            )
        )
        server.wait_for_log(r"running as user nobody" if workers == 1 else "worker")
        pids = [server.pid]
        if workers > 1:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
            deadline = time.monotonic() + 10
            while len(children.read_text().split()) < workers:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.05)
            pids = [int(p) for p in children.read_text().split()]
            deadline = time.monotonic() + 10
            while server.log_text().count("running as user nobody") < workers:
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.05)
        for pid in pids:
            real, effective, saved, _fs = uid_line(pid)
            assert (real, effective, saved) == (0, 65534, 0)
        for _ in range(2 * workers):
            sock = tunnel(server, origins.echo_port)
            assert echo(sock, b"ok") == b"ok"
            sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_log_file_is_reopened_on_sighup_after_rename(
    dantex: RunDantex, origins: Origins, workers: int
) -> None:
    """logrotate: rename the file, SIGHUP, new lines go to a new file (each
    worker's too)."""
    server = dantex(workers=workers)
    if workers > 1:  # a worker still starting ignores SIGHUP
        server.wait_for_log(rf"worker {workers - 1} running")
        server.wait_for_log(r"worker 0 running")
    sock = tunnel(server, origins.echo_port)
    sock.close()
    server.wait_for_log(r"tcp/connect \]")
    rotated = server.log_path.with_name("dantex.log.1")
    server.log_path.rename(rotated)
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    # every process (supervisor and workers) says so in the new file
    reloads = workers + (1 if workers > 1 else 0)
    while (
        not server.log_path.exists()
        or server.log_text().count("SIGHUP ]: config reloaded") < reloads
    ):
        assert time.monotonic() < deadline, "no new log file after SIGHUP"
        time.sleep(0.05)
    sock = tunnel(server, origins.echo_port)
    sock.close()
    server.wait_for_log(r"tcp/connect \]")
    old = rotated.read_text()
    assert "SIGHUP [: reloading config" in old
    assert old.count("tcp/connect ]") == 1
    assert server.log_text().count("tcp/connect ]") == 1


def _open_files(pid: int) -> list[str]:
    """The soft and hard ``Max open files`` of ``pid`` (from /proc)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3:5]
    raise AssertionError("no Max open files line")


@pytest.mark.parametrize("workers", [1, 2])
def test_open_files_soft_limit_is_raised_to_the_hard_limit(
    tmp_path: Path, workers: int
) -> None:
    """Started with 256 open files allowed (hard limit 4096), the server and
    its workers can use 4096, and the log says so once."""
    config = f"internal: 127.0.0.1 port = 0\nsocksmethod: none\n{OPEN_RULES}"
    with start_dantex(
        config,
        tmp_path,
        prefix=["prlimit", "--nofile=256:4096", "--"],
        extra_args=["--workers", str(workers)],
    ) as server:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        workers_pids = [int(p) for p in children.read_text().split()]
        assert len(workers_pids) == (workers if workers > 1 else 0)
        for pid in [server.pid, *workers_pids]:
            assert _open_files(pid) == ["4096", "4096"]
        log = server.log_text()
        assert log.count("open files limit raised from 256 to 4096") == 1


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no chance to stop its workers: they see
    their lifeline close and stop on their own, freeing the port."""
    config = f"internal: 127.0.0.1 port = 0\nsocksmethod: none\n{OPEN_RULES}"
    with start_dantex(config, tmp_path, extra_args=["--workers", "2"]) as server:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
        workers = [int(p) for p in children.read_text().split()]
        assert len(workers) == 2
        os.kill(server.pid, signal.SIGKILL)
        for pid in workers:
            wait_exit(pid, 10)
        wait_refused(server)
