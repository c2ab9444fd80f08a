"""dantex's operations keywords: timeout.shutdown, metrics.internal, and
extension: httpconnect."""

from __future__ import annotations

import pytest

from dantex.config import ConfigErrors, parse

BASE = "internal: 127.0.0.1 port = 1080\n"


def test_timeout_shutdown_is_stored_and_defaults_to_zero() -> None:
    """timeout.shutdown: N is the drain time; without it 0 (close at once)."""
    assert parse(BASE, "x.conf").timeouts.shutdown == 0
    assert parse(BASE + "timeout.shutdown: 30\n", "x.conf").timeouts.shutdown == 30


def test_timeout_shutdown_is_global_only() -> None:
    """A rule cannot carry timeout.shutdown."""
    with pytest.raises(ConfigErrors):
        parse(BASE + "socks pass { from: 0/0 to: 0/0 timeout.shutdown: 3 }\n", "x.conf")


def test_metrics_internal_address_port_and_span() -> None:
    """metrics.internal: IP [port = N]; default port 9464; span kept."""
    c = parse(BASE + "metrics.internal: 127.0.0.1 port = 9999\n", "x.conf")
    assert c.metrics is not None
    assert (c.metrics.host, c.metrics.port) == ("127.0.0.1", 9999)
    assert (c.metrics.span.line, c.metrics.span.col) == (2, 19)
    c = parse(BASE + "metrics.internal: ::1\n", "x.conf")
    assert c.metrics is not None and c.metrics.port == 9464
    assert parse(BASE, "x.conf").metrics is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("metrics.internal: lo\n", "is not an IP address"),
        ("metrics.internal: 127.0.0.1 port > 5\n", "takes 'port = N'"),
    ],
)
def test_metrics_internal_errors(line: str, message: str) -> None:
    """Bad metrics.internal values point at the line."""
    with pytest.raises(ConfigErrors) as e:
        parse(BASE + line, "x.conf")
    assert "x.conf:2:" in e.value.render()
    assert message in e.value.render()


def test_metrics_on_a_public_address_warns() -> None:
    """Metrics have no authentication: a non-loopback address is warned about."""
    c = parse(BASE + "metrics.internal: 0.0.0.0\n", "x.conf")
    assert any("without authentication" in w.message for w in c.warnings)
