"""dantex's route keywords: paths of parents, credentials, TLS, route.order.

Dante's own route grammar is tested with the parser (tests/config); these
are the additions, and the guarantee that a parent's password never shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dantex.config import parse
from dantex.config.errors import ConfigErrors
from dantex.config.lexer import masked

HEAD = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(HEAD + text, "t.conf")
    return [str(e) for e in info.value.errors]


def test_each_via_starts_a_hop_and_keywords_follow_their_via() -> None:
    """proxyprotocol:/username:/tls: after a via: belong to that parent."""
    cfg = parse(
        HEAD
        + "route {\n from: 0/0 to: 0/0\n proxyprotocol: socks_v5\n"
        + " via: 10.0.0.1 port = 1081\n username: alice\n password: pw\n"
        + " via: proxy.example.net\n proxyprotocol: http\n tls: yes\n"
        + " tls.servername: proxy.example.net\n}\n",
        "t.conf",
    )
    (route,) = cfg.routes
    first, second = route.hops
    assert first.proxyprotocols == frozenset({"socks_v5"}) and first.username == "alice"
    assert first.password == "pw" and not first.tls
    assert second.proxyprotocols == frozenset({"http"}) and second.tls
    assert second.via.name == "proxy.example.net"
    assert second.via.port is not None and second.via.port.low == 443
    assert second.tls_servername == "proxy.example.net"
    # Dante's view of the route is its first parent
    assert route.proxyprotocols == frozenset({"socks_v5"})
    assert route.via == first.via


@pytest.mark.parametrize(
    ("lines", "port"),
    [
        (" proxyprotocol: http\n", 80),
        (" proxyprotocol: http\n tls: yes\n", 443),
        (" proxyprotocol: socks_v5\n tls: yes\n", 1080),
        ("", 1080),
    ],
)
def test_default_parent_ports(lines: str, port: int) -> None:
    """Without port =: 80 for HTTP (443 over TLS), else 1080, as Dante."""
    cfg = parse(
        HEAD + "route {\n from: 0/0 to: 0/0\n via: 10.0.0.1\n" + lines + "}\n", "t"
    )
    via = cfg.routes[0].hops[0].via
    assert via.port is not None and via.port.low == port


def test_password_takes_the_rest_of_its_line() -> None:
    """A password may hold characters Dante's words cannot (! = < >)."""
    cfg = parse(
        HEAD + "route {\n from: 0/0 to: 0/0 via: 10.0.0.1 port = 1080\n"
        " username: u\n password: s3!cr=t <x> # comment\n}\n",
        "t.conf",
    )
    assert cfg.routes[0].hops[0].password == "s3!cr=t <x>"


def test_a_password_never_appears_in_errors_or_reprs() -> None:
    """Messages, source excerpts and reprs show stars instead of a password."""
    (err,) = errors(
        "socks pass { from: 0/0 to: 0/0\n password: hunter2!\n}\n"
        "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1 }\n"
    )
    assert "hunter2" not in err and "password: ********" in err
    cfg = parse(
        HEAD + "route { from: 0/0 to: 0/0 via: 10.0.0.1 port = 1\n"
        " username: u password: hunter2 }\n",
        "t.conf",
    )
    assert "hunter2" not in repr(cfg)
    assert masked("username: u password: pw } # x") == "username: u password: ** } # x"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "from: 0/0 to: 0/0 via: direct\n username: u",
            "is for a parent, not 'via: direct'",
        ),
        (
            "from: 0/0 to: 0/0 via: 10.0.0.1\n via: direct",
            "cannot be part of a path",
        ),
        (
            "from: 0/0 to: 0/0 via: direct\n via: 10.0.0.1",
            "cannot be part of a path",
        ),
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n password: x", "without 'username:'"),
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n tls: maybe", "'yes' or 'no'"),
        (
            "from: 0/0 to: 0/0 via: 10.0.0.1\n username: a\n username: b",
            "a second 'username:'",
        ),
        (
            "from: 0/0 to: 0/0 via: 10.0.0.1\n tls.cafile: /nonexistent/ca.pem",
            "cannot read",
        ),
        (
            "from: 0/0 to: 0/0 via: 10.0.0.1\n proxyprotocol: upnp",
            "UPnP",
        ),
        ("from: 0/0 to: 0/0 via: 10.0.0.1\n username: " + "u" * 256, "255 bytes"),
    ],
)
def test_bad_route_extensions(body: str, message: str) -> None:
    """Each misuse of dantex's route keywords is an error at its line."""
    errs = errors("route {\n " + body + "\n}\n")
    assert any(message in e for e in errs), errs


def test_tls_cafile_is_read_at_load(tmp_path: Path) -> None:
    """tls.cafile names a readable file."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = parse(
        HEAD + f"route {{ from: 0/0 to: 0/0 via: 10.0.0.1\n tls: yes\n"
        f" tls.cafile: {ca}\n}}\n",
        "t.conf",
    )
    assert cfg.routes[0].hops[0].tls_cafile == str(ca)


def test_route_order_setting() -> None:
    """route.order: file (default) or dante; anything else is an error."""
    assert parse(HEAD, "t").route_order == "file"
    assert parse(HEAD + "route.order: dante\n", "t").route_order == "dante"
    (err,) = errors("route.order: protocol\n")
    assert "route.order must be file or dante" in err


def test_keywords_outside_routes_are_refused_where_they_stand() -> None:
    """username:/tls: are route keywords; in a socks-rule they are errors."""
    (err,) = errors("socks pass { from: 0/0 to: 0/0\n tls: yes\n}\n")
    assert "'tls:' is not valid in a socks block" in err


def test_gateway_port_is_a_number_as_danted_wants() -> None:
    """danted refuses service names after via: ("unknown tcp/udp protocol")."""
    (err,) = errors("route { from: 0/0 to: 0/0 via: 10.0.0.1 port = socks }\n")
    assert "a gateway port must be a number, not 'socks'" in err


def test_forwarding_credentials_needs_a_password_method() -> None:
    """method: username passes on a password only some socksmethod asks for
    (danted's check); fixed credentials need none."""
    route = "route { from: 0/0 to: 0/0 via: 10.0.0.1\n method: username\n}\n"
    (err,) = errors(route)
    assert "no global socksmethod asks clients for them" in err
    parse(HEAD.replace("none", "username none") + route, "t.conf")
    parse(
        HEAD + "route { from: 0/0 to: 0/0 via: 10.0.0.1\n method: username\n"
        " username: u\n password: p\n}\n",
        "t.conf",
    )
