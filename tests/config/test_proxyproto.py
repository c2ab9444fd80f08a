"""``internal.proxyprotocol`` and ``internal.proxyprotocol.from`` (dantex)."""

from __future__ import annotations

import pytest

from dantex.config import ConfigErrors, parse

BASE = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(BASE + text, "t.conf")
    return [e.headline() for e in info.value.errors]


def test_both_settings_parse() -> None:
    """Versions and networks (several lines add up, host addresses get /32)."""
    cfg = parse(
        BASE + "internal.proxyprotocol: v2 v1\n"
        "internal.proxyprotocol.from: 127.0.0.1 10.0.0.0/8\n"
        "internal.proxyprotocol.from: ::1\n",
        "t.conf",
    )
    assert cfg.internal_proxyprotocol == frozenset({"v1", "v2"})
    assert cfg.internal_proxyprotocol_from == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")


def test_off_by_default() -> None:
    """Without the settings no listener expects a header."""
    cfg = parse(BASE, "t.conf")
    assert cfg.internal_proxyprotocol == frozenset()
    assert cfg.internal_proxyprotocol_from == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "internal.proxyprotocol: v2\n",
            "t.conf:3:1: error: internal.proxyprotocol without "
            "internal.proxyprotocol.from",
        ),
        (
            "internal.proxyprotocol.from: 127.0.0.1\n",
            "t.conf:3:1: error: internal.proxyprotocol.from without "
            "internal.proxyprotocol",
        ),
        (
            "internal.proxyprotocol: v3\ninternal.proxyprotocol.from: 10.0.0.1\n",
            "t.conf:3:25: error: unknown PROXY version 'v3'",
        ),
        (
            "internal.proxyprotocol: v2\ninternal.proxyprotocol.from: 10.0.0.1/8\n",
            "t.conf:4:30: error: bad internal.proxyprotocol.from address '10.0.0.1/8'",
        ),
        (
            "internal.proxyprotocol: v2\ninternal.proxyprotocol.from: lb.example\n",
            "t.conf:4:30: error: bad internal.proxyprotocol.from address 'lb.example'",
        ),
    ],
)
def test_errors_point_at_the_text(text: str, message: str) -> None:
    """Half a configuration or a bad value is an error at its place."""
    assert any(e.startswith(message) for e in errors_of(text)), errors_of(text)


def test_rule_proxyprotocol_keyword_is_unrelated() -> None:
    """Dante's socks-rule ``proxyprotocol:`` (SOCKS versions) still parses."""
    cfg = parse(
        BASE + "socks pass { from: 0/0 to: 0/0 proxyprotocol: socks_v5 }\n", "t.conf"
    )
    assert cfg.socks_rules[0].proxyprotocols == frozenset({"socks_v5"})
    assert cfg.internal_proxyprotocol == frozenset()
