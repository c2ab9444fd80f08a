"""Resource control on real sockets: bandwidth measured at the receiver,
session.max refusals with Dante's reply and log line, per-user limits with
password users, limits shared by --workers 2, and conf/limits.conf as is."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import bcrypt
import pytest
import socks  # PySocks

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import REPO, DantexServer, start_dantex
from tests.integration.peers.origins import Origins
from tests.integration.raw_socks import recv_upto

pytestmark = pytest.mark.integration

RATE = 100_000  # bytes per second
WARMUP = 1.0  # seconds skipped before measuring (the first burst)
WINDOW = 5.0  # seconds measured

CLIENT = "client pass {\n  from: 127.0.0.0/8 to: 0/0\n  log: error\n}\n"


def socks_rule(extra: str) -> str:
    return (
        CLIENT
        + f"socks pass {{\n  from: 0/0 to: 0/0\n  {extra}\n"
        + "  log: error connect disconnect\n}\n"
    )


def socks5(
    server: DantexServer,
    port: int,
    user: str | None = None,
    password: str = "",
) -> tuple[int, socket.socket]:
    """CONNECT to 127.0.0.1:port (RFC 1928, RFC 1929 bytes by hand): (REP, socket)."""
    s = socket.create_connection((server.host, server.port), timeout=10)
    if user is None:
        s.sendall(b"\x05\x01\x00")  # VER=5 NMETHODS=1 NO AUTH
        assert recv_upto(s, 2) == b"\x05\x00"
    else:
        s.sendall(b"\x05\x01\x02")  # VER=5 NMETHODS=1 USERNAME/PASSWORD
        assert recv_upto(s, 2) == b"\x05\x02"
        u, p = user.encode(), password.encode()
        s.sendall(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
        assert recv_upto(s, 2) == b"\x01\x00"
    # VER=5 CMD=CONNECT RSV ATYP=IPv4 127.0.0.1 PORT
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
    reply = recv_upto(s, 10)
    assert len(reply) == 10 and reply[0] == 5, reply
    return reply[1], s


class Origin:
    """A TCP server in a thread: each accepted socket is handed to the test."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        return conn

    def close(self) -> None:
        self.listener.close()


def _blast(sock: socket.socket, stop: threading.Event) -> None:
    """Write as fast as the other side takes it until ``stop`` (bounded)."""
    block = bytes(65536)
    sock.settimeout(0.5)
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            sock.send(block)
        except TimeoutError:
            continue
        except OSError:
            return


def measure(sock: socket.socket) -> float:
    """Bytes/s arriving on ``sock`` during WINDOW seconds after WARMUP."""
    sock.settimeout(5)
    first = sock.recv(65536)
    assert first
    start = time.monotonic() + WARMUP
    end = start + WINDOW
    counted = 0
    while True:
        data = sock.recv(65536)
        now = time.monotonic()
        if not data or now >= end:
            break
        if now >= start:
            counted += len(data)
    assert now >= end, "the stream ended early"
    return counted / WINDOW


@contextmanager
def blasting(socks: list[socket.socket]) -> Iterator[None]:
    stop = threading.Event()
    threads = [threading.Thread(target=_blast, args=(s, stop)) for s in socks]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def measure_all(socks: list[socket.socket]) -> list[float]:
    """Measure several receivers at once (threads), in the same window."""
    rates = [0.0] * len(socks)

    def run(i: int) -> None:
        rates[i] = measure(socks[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WARMUP + WINDOW + 20)
    return rates


def download_rates(pairs: list[tuple[socket.socket, socket.socket]]) -> list[float]:
    """Each tunnel's download rate, the origin sides sending all at once;
    the tunnels are closed afterwards."""
    with blasting([far for _c, far in pairs]):
        rates = measure_all([client for client, _f in pairs])
    for client, far in pairs:
        client.close()
        far.close()
    return rates


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.close()


def open_streams(
    server: DantexServer,
    origin: Origin,
    n: int,
    user: str | None = None,
    password: str = "",
) -> list[tuple[socket.socket, socket.socket]]:
    """n tunnels to ``origin``: (client side, origin side) pairs."""
    pairs = []
    for _ in range(n):
        rep, client = socks5(server, origin.port, user, password)
        assert rep == 0
        pairs.append((client, origin.accept()))
    return pairs


def test_bandwidth_upload_then_download(dantex: RunDantex, origin: Origin) -> None:
    """bandwidth: 100000 holds within 10% uploading, then downloading."""
    server = dantex(socks_rule(f"bandwidth: {RATE}"))
    ((client, far),) = open_streams(server, origin, 1)
    with blasting([client]):
        up = measure(far)
    client.close()  # its buffered bytes must not share the download's bucket
    far.close()
    server.wait_for_log(r"pass\(1\): tcp/connect \]: ")
    ((client2, far2),) = open_streams(server, origin, 1)
    with blasting([far2]):
        down = measure(client2)
    for s in (client2, far2):
        s.close()
    assert up == pytest.approx(RATE, rel=0.10)
    assert down == pytest.approx(RATE, rel=0.10)


def test_bandwidth_is_shared_by_the_rules_sessions(
    dantex: RunDantex, origin: Origin
) -> None:
    """Two concurrent downloads under one rule add up to the rule's rate."""
    server = dantex(socks_rule(f"bandwidth: {RATE}"))
    pairs = open_streams(server, origin, 2)
    rates = download_rates(pairs)
    assert sum(rates) == pytest.approx(RATE, rel=0.10)
    assert min(rates) > RATE * 0.25, rates  # both got a fair part


def test_bandwidth_shapes_udp_associate(dantex: RunDantex) -> None:
    """A PySocks UDP client sending many times bandwidth: 100000: the
    destination receives the rule's rate (within 10%), the rest is dropped
    by the kernel while the association does not read."""
    server = dantex(socks_rule(f"bandwidth: {RATE}"))
    stop = threading.Event()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        sink.bind(("127.0.0.1", 0))
        client.set_proxy(socks.SOCKS5, server.host, server.port)
        client.settimeout(10)
        payload, to = bytes(1000), sink.getsockname()
        client.sendto(payload, to)  # the association is made here

        def send() -> None:  # about 3 MB/s: 30 times the rate
            deadline = time.monotonic() + WARMUP + WINDOW + 20
            while not stop.is_set() and time.monotonic() < deadline:
                for _ in range(3):
                    client.sendto(payload, to)
                time.sleep(0.001)

        sender = threading.Thread(target=send)
        sender.start()
        try:
            rate = measure(sink)
        finally:
            stop.set()
            sender.join(10)
    # each datagram is charged with its 10-byte SOCKS header
    assert rate == pytest.approx(RATE * 1000 / 1010, rel=0.10)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def admitted(
    server: DantexServer, port: int, user: str | None = None, password: str = ""
) -> socket.socket | None:
    rep, s = socks5(server, port, user, password)
    if rep == 0:
        return s
    # RFC 1928 REP=2: connection not allowed by ruleset; then the server closes
    assert rep == 2
    assert s.recv(1) == b""
    s.close()
    return None


def test_session_max_refuses_third_and_admits_after_one_ends(
    dantex: RunDantex, origins: Origins
) -> None:
    """session.max: 2 -> the 3rd concurrent session gets REP=2 and the log
    says 'session limit reached (2/2 slot in use)'; after one ends, a new one
    is admitted."""
    server = dantex(socks_rule("session.max: 2"))
    first = admitted(server, origins.echo_port)
    second = admitted(server, origins.echo_port)
    assert first is not None and second is not None
    assert admitted(server, origins.echo_port) is None
    server.wait_for_log(
        r"block\(1\): tcp/connect \]: .*: session limit reached \(2/2 slot in use\)"
    )
    first.close()
    server.wait_for_log(r"pass\(1\): tcp/connect \]: .*local client closed")
    third = admitted(server, origins.echo_port)
    assert third is not None
    third.sendall(b"ping")
    assert recv_upto(third, 4) == b"ping"
    for s in (second, third):
        s.close()


def test_session_throttle(dantex: RunDantex, origins: Origins) -> None:
    """session.throttle: 2/60 -> the 3rd new session in a minute is refused
    with Dante's 'session rate limit reached' text."""
    server = dantex(socks_rule("session.throttle: 2/60"))
    held = [admitted(server, origins.echo_port) for _ in range(2)]
    assert all(held)
    assert admitted(server, origins.echo_port) is None
    server.wait_for_log(
        r"session rate limit reached \(already accepted 2 new clients during "
        r"the last \d+s\.  Current client count: 2\)"
    )
    for s in held:
        assert s is not None
        s.close()


PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "users.passwd"
    lines = [
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}"
        for u, p in PASSWORDS.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_per_user_session_limit_and_bandwidth(
    dantex: RunDantex, origin: Origin, origins: Origins, passwd: Path
) -> None:
    """session.state.key: user with state.max 1: alice and bob one session
    each; bandwidth.state.key: user gives each user the rule's rate."""
    server = dantex(
        socks_rule(
            f"bandwidth: {RATE}\n  bandwidth.state.key: user\n"
            "  session.state.key: user\n  session.state.max: 1"
        ),
        settings=f"socksmethod: username\nusername.passwordfile: {passwd}\n",
    )
    alice = open_streams(server, origin, 1, user="alice", password="alice-pw")
    bob = open_streams(server, origin, 1, user="bob", password="bob-pw")
    again = admitted(server, origins.echo_port, user="alice", password="alice-pw")
    assert again is None
    server.wait_for_log(r"username%alice@.*session limit reached \(1/1 slot in use\)")
    pairs = alice + bob
    rates = download_rates(pairs)
    assert rates == [pytest.approx(RATE, rel=0.10)] * 2
    assert "alice-pw" not in server.log_text()


def _worker_pids(supervisor: int) -> list[int]:
    """The supervisor's children (the workers this test's server started)."""
    path = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    return [int(p) for p in path.read_text().split()]


def test_session_max_holds_across_two_workers(
    dantex: RunDantex, origins: Origins
) -> None:
    """With --workers 2, session.max: 2 admits 2 of 8 concurrent sessions
    (per-process counting would admit up to 4); killing the worker that holds
    a session frees its slot."""
    server = dantex(socks_rule("session.max: 2"), workers=2)
    wait_until(lambda: len(_worker_pids(server.pid)) == 2, timeout=10)
    with ExitStack() as stack:
        results = [admitted(server, origins.echo_port) for _ in range(8)]
        held = [s for s in results if s is not None]
        for s in held:
            stack.callback(s.close)
        assert len(held) == 2
        line = server.wait_for_log(r"\[(\d+)\]: info: pass\(1\): tcp/connect \[")
        worker = int(line.group(1))
        assert worker in _worker_pids(server.pid)
        os.kill(worker, signal.SIGKILL)
        server.wait_for_log(r"worker \d died")
        wait_until(lambda: admitted_and_closed(server, origins.echo_port), 10)


def test_bandwidth_is_shared_across_two_workers(
    dantex: RunDantex, origin: Origin
) -> None:
    """With --workers 2 the rule's bucket is one: tunnels served by both
    workers add up to the rule's rate."""
    server = dantex(socks_rule(f"bandwidth: {RATE}"), workers=2)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    opened = re.compile(r"\[(\d+)\]: info: pass\(1\): tcp/connect \[")
    pairs += open_streams(server, origin, 1)
    wait_until(lambda: len(opened.findall(server.log_text())) == 1)
    (first,) = opened.findall(server.log_text())
    # The workers share the listening socket and a free one takes the next
    # connection: with the first one stopped, the other must serve it.
    os.kill(int(first), signal.SIGSTOP)
    try:
        pairs += open_streams(server, origin, 1)
    finally:
        os.kill(int(first), signal.SIGCONT)
    wait_until(lambda: len(opened.findall(server.log_text())) == 2)
    assert len(set(opened.findall(server.log_text()))) == 2
    rates = download_rates(pairs)
    assert sum(rates) == pytest.approx(RATE, rel=0.10)


def admitted_and_closed(server: DantexServer, port: int) -> bool:
    s = admitted(server, port)
    if s is None:
        return False
    s.close()
    return True


def test_sample_limits_conf_runs_unchanged(
    tmp_path: Path, origin: Origin, origins: Origins
) -> None:
    """conf/limits.conf, with only its port and log destination replaced,
    starts, warns about maxsessions, and its limits hold: 4 sessions per
    address, then REP=2; 100 KiB/s on a download."""
    text = (REPO / "conf" / "limits.conf").read_text()
    log = tmp_path / "srv" / "dantex.log"
    text = text.replace("logoutput: stderr", f"logoutput: {log}")
    text = text.replace("port = 1080", "port = 0")
    with start_dantex(text, tmp_path / "srv") as server:
        assert re.search(r"'maxsessions' is deprecated", _startup_text(server))
        held = [admitted(server, origins.echo_port) for _ in range(4)]
        assert all(held)
        assert admitted(server, origins.echo_port) is None
        server.wait_for_log(r"session limit reached \(4/4 slot in use\)")
        for s in held:
            assert s is not None
            s.close()
        server.wait_for_log(r"(local client closed.*\n.*){4}", timeout=10)
        ((client, far),) = open_streams(server, origin, 1)
        with blasting([far]):
            down = measure(client)
        client.close()
        far.close()
    assert down == pytest.approx(102400, rel=0.10)


def _startup_text(server: DantexServer) -> str:
    return server.log_text() + (server.dir / "twistd.out").read_text(errors="replace")
