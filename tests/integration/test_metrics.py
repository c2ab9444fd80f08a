"""The Prometheus endpoint (``metrics.internal``) scraped with urllib during
real traffic: curl fetches, a blocked request, RFC 1929 successes and
failures, a UDP association; with one process and summed over two workers.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import socks  # PySocks
from prometheus_client.parser import text_string_to_metric_families
from python_socks import ProxyError
from python_socks.sync import Proxy

from tests.integration.conftest import RunDantex
from tests.integration.dantex_server import DantexServer
from tests.integration.peers.origins import INDEX_BODY, Origins

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(server: DantexServer) -> str:
    m = server.wait_for_log(r"serving metrics at (http://127\.0\.0\.1:\d+/metrics)")
    return m[1]


def scrape(url: str) -> Samples:
    """Every sample: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_metric(
    url: str, name: str, at_least: float, timeout: float = 10, **labels: str
) -> Samples:
    """Scrape (bounded) until ``name`` reaches ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if total(samples, name, **labels) >= at_least:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} < {at_least}: {samples}")
        time.sleep(0.1)


def rules(origins: Origins) -> str:
    return (
        "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        f"socks block {{ from: 0/0 to: 0/0 port = {origins.sink_port}\n"
        " log: error }\n"
        "socks pass { from: 0/0 to: 0/0\n log: error disconnect }\n"
    )


def settings(passwd: Path) -> str:
    return (
        "metrics.internal: 127.0.0.1 port = 0\n"
        "socksmethod: username none\n"
        f"username.passwordfile: {passwd}\n"
    )


def curl(server: DantexServer, url: str) -> bytes:
    proxy = f"{server.host}:{server.port}"
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--socks5", proxy, url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return out.stdout


def login(server: DantexServer, password: str, port: int) -> socket.socket:
    proxy = Proxy.from_url(f"socks5://alice:{password}@{server.host}:{server.port}")
    sock: socket.socket = proxy.connect(
        dest_host="127.0.0.1", dest_port=port, timeout=10
    )
    return sock


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_move_with_traffic(
    dantex: RunDantex, origins: Origins, tmp_path: Path, workers: int
) -> None:
    """Sessions, bytes, auth, refusals, UDP and live sessions are counted,
    once, whichever worker served them."""
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:{PLAIN}alice-pw:staff\n")
    server = dantex(rules(origins), settings=settings(passwd), workers=workers)
    url = metrics_url(server)
    before = scrape(url)
    assert total(before, "dantex_sessions_total") == 0

    # a live session is seen while it lasts
    live = login(server, "alice-pw", origins.echo_port)
    live.sendall(b"ping")
    assert live.recv(10) == b"ping"
    wait_metric(url, "dantex_sessions_active", 1)

    n = 6
    for _ in range(n):
        assert curl(server, origins.http_url()) == INDEX_BODY
    with pytest.raises(ProxyError):
        login(server, "wrong", origins.echo_port)
    with pytest.raises(ProxyError):  # socks-rule block (0x02)
        Proxy.from_url(f"socks5://{server.host}:{server.port}").connect(
            dest_host="127.0.0.1", dest_port=origins.sink_port, timeout=10
        )
    with socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.set_proxy(socks.SOCKS5, server.host, server.port)
        u.settimeout(10)
        for i in range(3):
            u.sendto(b"udp-%d" % i, (origins.host, origins.udp_echo_port))
            assert u.recvfrom(2048)[0] == b"udp-%d" % i
    live.close()

    after = wait_metric(url, "dantex_sessions_total", n + 2)
    rule = "2"  # the socks pass rule
    assert total(after, "dantex_sessions_total", command="connect", rule=rule) == n + 1
    assert total(after, "dantex_sessions_total", command="udpassociate") == 1
    body = len(INDEX_BODY)
    out_none = total(after, "dantex_bytes_total", direction="out", user="")
    assert out_none >= n * body  # response headers come on top
    assert total(after, "dantex_bytes_total", direction="in", user="alice") == 4
    assert total(after, "dantex_bytes_total", direction="out", user="alice") == 4
    assert total(after, "dantex_auth_total", method="username", result="success") == 1
    assert total(after, "dantex_auth_total", method="username", result="failure") == 1
    assert total(after, "dantex_refusals_total", reason="socks-rule") == 1
    assert total(after, "dantex_refusals_total", reason="auth") == 1
    assert total(after, "dantex_udp_datagrams_total", outcome="relayed") == 6
    wait_metric(url, "dantex_sessions_total", n + 2)
    deadline = time.monotonic() + 10
    while total(scrape(url), "dantex_sessions_active") != 0:
        assert time.monotonic() < deadline, "live sessions gauge stays up"
        time.sleep(0.1)


def test_metrics_are_off_unless_configured(dantex: RunDantex) -> None:
    """Without metrics.internal nothing serves metrics."""
    server = dantex()
    assert "serving metrics" not in server.log_text()


def test_metrics_listen_on_loopback_and_answer_404_elsewhere(
    dantex: RunDantex,
) -> None:
    """Only /metrics (and /) are served."""
    server = dantex(settings="metrics.internal: 127.0.0.1 port = 0", workers=1)
    url = metrics_url(server)
    assert re.match(r"http://127\.0\.0\.1:\d+/metrics$", url)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    assert e.value.code == 404
