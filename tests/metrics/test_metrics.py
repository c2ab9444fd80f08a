"""The metrics hooks in memory: counted at session end and on refusal."""

from __future__ import annotations

import errno
import socket

from prometheus_client import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from dantex.metrics import SessionMetrics
from dantex.server.relay import EndReason
from dantex.server.session import SocksSession
from dantex.testing import MemorySession, memory_session

CONF = """
internal: 127.0.0.1 port = 1080
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 }
socks block { from: 0/0 to: 10.9.9.9/32 }
socks pass { from: 127.0.0.0/8 to: 0/0 }
"""
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: CONNECT 10.1.2.3:80 / 10.9.9.9:80
CONNECT = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
BLOCKED = b"\x05\x01\x00\x01\x0a\x09\x09\x09\x00\x50"


def metered() -> tuple[MemorySession, SessionMetrics, CollectorRegistry]:
    m = memory_session(CONF)
    registry = CollectorRegistry()
    metrics = SessionMetrics(registry)
    m.session.runtime.metrics = metrics
    m.session.runtime.on_session_end.append(metrics.session_ended)
    return m, metrics, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_relayed_session_is_counted_once_at_its_end() -> None:
    """sessions_total and bytes_total move when the relay ends, not before."""
    m, _metrics, registry = metered()
    m.send(GREETING)
    m.send(CONNECT + b"early")
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    m.connector.calls[0].deferred.callback(sock)
    labels = {"command": "connect", "rule": "2"}
    assert value(registry, "dantex_sessions_total", **labels) == 0
    m.relays[0].end(EndReason("client"))
    assert value(registry, "dantex_sessions_total", **labels) == 1
    # FakeRelay.counts(): the leftover as read from the client and written
    assert value(
        registry, "dantex_bytes_total", direction="in", rule="2", user=""
    ) == len(b"early")
    sock.close()


def test_refusals_by_reason() -> None:
    """A socks-rule block and a refused connect are counted by reason."""
    m, _metrics, registry = metered()
    m.send(GREETING)
    m.send(BLOCKED)
    assert value(registry, "dantex_refusals_total", reason="socks-rule") == 1
    m, _metrics, registry = metered()
    m.send(GREETING)
    m.send(CONNECT)
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "refused"))
    )
    assert value(registry, "dantex_refusals_total", reason="connection-refused") == 1


def test_client_rule_block_and_protocol_error() -> None:
    """A client-rule block and a bad version byte are refusals too."""
    m, _metrics, registry = metered()
    session = SocksSession(m.session.policy, m.session.runtime)
    transport = StringTransportWithDisconnection(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 1080),
        peerAddress=IPv4Address("TCP", "10.0.0.1", 4000),
    )
    transport.protocol = session
    session.makeConnection(transport)  # type: ignore[no-untyped-call]
    assert value(registry, "dantex_refusals_total", reason="client-rule") == 1
    m, _metrics, registry = metered()
    m.send(b"\x07")
    assert value(registry, "dantex_refusals_total", reason="protocol-error") == 1


def test_route_health_gauge_follows_the_marks() -> None:
    """dantex_route_up is 1 for a usable route and 0 while it is marked bad."""
    text = CONF + (
        "route {\n from: 0/0 to: 0/0 via: 127.0.0.1 port = 1\n"
        " proxyprotocol: socks_v5\n command: connect\n method: none\n}\n"
    )
    m = memory_session(text)
    registry = CollectorRegistry()
    metrics = SessionMetrics(registry)
    runtime, policy = m.session.runtime, m.session.policy
    metrics.refresh(runtime, policy)
    assert value(registry, "dantex_route_up", route="#1") == 1
    assert value(registry, "dantex_sessions_active") == 1  # this session
    assert policy.routes is not None
    key = policy.routes._routes[0].key
    assert runtime.route_marks.failed(key, 1, 60)
    metrics.refresh(runtime, policy)
    assert value(registry, "dantex_route_up", route="#1") == 0


class _Flaky:
    """A collector that fails ``failures`` times, then yields nothing."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def collect(self) -> list[object]:
        if self.failures:
            self.failures -= 1
            raise ValueError("read a half-written entry")
        return []


def _get(registry: CollectorRegistry) -> tuple[int, bytes]:
    from twisted.web.test.requesthelper import DummyRequest

    from dantex.metrics.serve import MetricsResource

    request = DummyRequest([b"metrics"])
    request.path = b"/metrics"  # type: ignore[attr-defined]
    body = MetricsResource(registry).render_GET(request)  # type: ignore[arg-type]
    return request.responseCode or 200, body


def test_scrape_retries_a_read_that_failed_once() -> None:
    """A worker file caught mid-write is read again; persistent failure is a 503."""
    registry = CollectorRegistry()
    registry.register(_Flaky(1))  # type: ignore[arg-type]
    assert _get(registry)[0] == 200
    broken = CollectorRegistry()
    broken.register(_Flaky(10))  # type: ignore[arg-type]
    assert _get(broken) == (503, b"metrics temporarily unavailable\n")
