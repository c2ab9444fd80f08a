"""Parsing Dante's sockd.conf: accepted forms, and errors that point at the text."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from dantex.config import ConfigErrors, default_config_text, parse
from dantex.config.model import AddressSpecKind, PortSpec

BASE = "internal: 127.0.0.1 port = 1080\nsocksmethod: none\n"
REPO = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse(text, "t.conf")
    return [e.headline() for e in info.value.errors]


def rule_dst(text: str):  # type: ignore[no-untyped-def]
    return (
        parse(BASE + f"socks pass {{ from: 0/0 to: {text} }}\n", "t.conf")
        .socks_rules[0]
        .dst
    )


def test_minimal_config() -> None:
    """internal, socksmethod and one rule of each kind parse into the model."""
    cfg = parse(
        BASE + "client pass { from: 127.0.0.0/8 to: 0/0 }\n"
        "socks block { from: 0/0 to: 10.0.0.0/8 port = 25\n log: connect error }\n",
        "t.conf",
    )
    assert [(i.host, i.port) for i in cfg.internals] == [("127.0.0.1", 1080)]
    assert cfg.socksmethods == ("none",)
    (client,) = cfg.client_rules
    assert client.verdict == "pass" and client.number == 1
    (socks,) = cfg.socks_rules
    assert socks.verdict == "block"
    assert socks.dst.network == ipaddress.ip_network("10.0.0.0/8")
    assert socks.dst.port == PortSpec("eq", 25)
    assert socks.log == frozenset({"connect", "error"})


def test_internal_without_port_listens_on_1080() -> None:
    """Dante's default port for internal: is 1080."""
    cfg = parse("internal: ::1\nsocksmethod: none\n", "t.conf")
    assert [(i.host, i.port) for i in cfg.internals] == [("::1", 1080)]


def test_internal_interface_expands_to_its_addresses() -> None:
    """An interface name in internal: listens on each of its addresses."""
    cfg = parse("internal: lo port = 1081\nsocksmethod: none\n", "t.conf")
    hosts = {i.host for i in cfg.internals}
    assert "127.0.0.1" in hosts


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("0/0", AddressSpecKind.ANY),
        ("0.0.0.0/0", AddressSpecKind.NETWORK),
        ("::/0", AddressSpecKind.NETWORK),
        ("fe80::1/64", AddressSpecKind.NETWORK),
        ("www.example.org", AddressSpecKind.HOSTNAME),
        (".example.org", AddressSpecKind.DOMAIN),
        ("lo", AddressSpecKind.INTERFACE),
    ],
)
def test_address_forms(text: str, kind: AddressSpecKind) -> None:
    """Every Dante address form is recognised."""
    assert rule_dst(text).kind is kind


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("0/0 port = 80", PortSpec("eq", 80)),
        ("0/0 port eq 80", PortSpec("eq", 80)),
        ("0/0 port: 80", PortSpec("eq", 80)),
        ("0/0 port != 80", PortSpec("ne", 80)),
        ("0/0 port ne 80", PortSpec("ne", 80)),
        ("0/0 port >= 1024", PortSpec("ge", 1024)),
        ("0/0 port le 1023", PortSpec("le", 1023)),
        ("0/0 port > 1", PortSpec("gt", 1)),
        ("0/0 port lt 2", PortSpec("lt", 2)),
        ("0/0 port 1-1024", PortSpec("range", 1, 1024)),
        ("0/0 port 1 - 1024", PortSpec("range", 1, 1024)),
        ("0/0 port = http", PortSpec("eq", 80)),
        ("0/0 port = 0x50", PortSpec("eq", 80)),
    ],
)
def test_port_forms(text: str, spec: PortSpec) -> None:
    """Port operators, ranges, hex numbers and service names."""
    assert rule_dst(text).port == spec


def test_ip_without_netmask_is_an_error_with_a_hint() -> None:
    """Dante requires a netmask in rules; the error says how to write one."""
    (err,) = errors_of(BASE + "socks pass { from: 0/0 to: 10.0.0.1 }\n")
    assert err.startswith("t.conf:3:28: error: no netmask has been specified")
    assert "10.0.0.1/32" in err


def test_netmask_must_be_a_bit_count() -> None:
    """/255.0.0.0 is rejected, as in Dante."""
    (err,) = errors_of(BASE + "socks pass { from: 10.0.0.0/255.0.0.0 to: 0/0 }\n")
    assert "must be a number of bits" in err


def test_bare_port_without_operator_is_an_error() -> None:
    """`port 80` is a syntax error in Dante; we say to write `port = 80`."""
    (err,) = errors_of(BASE + "socks pass { from: 0/0 to: 0/0 port 80 }\n")
    assert "port = 80" in err


def test_unknown_keyword_suggests_the_right_one() -> None:
    """A typo gets a did-you-mean."""
    (err,) = errors_of(BASE + "socksmethdo: none\n")
    assert (
        "unknown keyword 'socksmethdo'" in err and "did you mean 'socksmethod'" in err
    )


def test_known_but_unimplemented_keyword_is_refused_by_name() -> None:
    """Keywords of later features are refused, never silently ignored."""
    (err,) = errors_of(BASE + "socks pass { from: 0/0 to: 0/0\n libwrap: spawn x }\n")
    assert err == "t.conf:4:2: error: 'libwrap' is not supported yet"


def test_all_errors_are_reported_sorted() -> None:
    """Every error in the file, in order, not just the first."""
    errs = errors_of(
        "internal: 127.0.0.1 port = 1080\nbogus: 1\nsocksmethod: none\n"
        "socks pass { from: 10.0.0.1 to: 0/0 }\nsocks pass { to: 0/0 }\n"
    )
    assert [e.split(":")[1] for e in errs] == ["2", "4", "5"]


def test_error_render_has_source_line_and_marker() -> None:
    """str() of the error shows the line and a caret marker under the span."""
    with pytest.raises(ConfigErrors) as info:
        parse(BASE + "socks pass { from: 0/0 to: 10.0.0.1 }\n", "t.conf")
    text = str(info.value.errors[0])
    assert text.splitlines()[1] == "socks pass { from: 0/0 to: 10.0.0.1 }"
    assert text.splitlines()[2] == " " * 27 + "^" * 8


def test_settings_after_rules_are_refused() -> None:
    """Dante requires all server settings before the first rule."""
    (err,) = errors_of(BASE + "socks pass { from: 0/0 to: 0/0 }\ndebug: 1\n")
    assert "after the first rule" in err


def test_missing_internal_is_an_error() -> None:
    """A config with no internal: cannot serve anything."""
    (err,) = errors_of("socksmethod: none\n")
    assert "no internal address given" in err


def test_wildcard_external_is_refused() -> None:
    """external: 0.0.0.0 is refused, as in Dante."""
    (err,) = errors_of(BASE + "external: 0.0.0.0\n")
    assert "wildcard" in err


def test_old_syntax_warns_with_new_keyword() -> None:
    """method: and bare pass rules still work, with warnings naming the new form."""
    cfg = parse(
        "internal: 127.0.0.1\nmethod: none\npass { from: 0/0 to: 0/0 }\n", "t.conf"
    )
    assert cfg.socksmethods == ("none",)
    assert len(cfg.socks_rules) == 1
    hints = [w.hint for w in cfg.warnings]
    assert "use 'socksmethod'" in hints and "write 'socks pass {'" in hints


def test_client_level_username_is_refused() -> None:
    """clientmethod: username is invalid in Dante (no credentials at that level)."""
    (err,) = errors_of(BASE + "clientmethod: username\n")
    assert "cannot be used at the client level" in err


def test_timeouts_global_and_per_rule() -> None:
    """timeout.* globally and inside rules; timeout.io sets both tcp and udp."""
    cfg = parse(
        BASE.replace("socksmethod", "timeout.io: 60\ntimeout.negotiate: 5\nsocksmethod")
        + "socks pass { from: 0/0 to: 0/0\n timeout.connect: 3 }\n",
        "t.conf",
    )
    assert cfg.timeouts.io_tcp == 60 and cfg.timeouts.io_udp == 60
    assert cfg.timeouts.negotiate == 5
    assert cfg.socks_rules[0].timeouts == {"connect": 3.0}


def test_logoutput_targets() -> None:
    """stderr, stdout, files and syslog/facility are destinations."""
    cfg = parse("logoutput: stderr /var/log/x.log syslog/local3\n" + BASE, "t.conf")
    kinds = [(t.kind, t.path, t.facility) for t in cfg.logoutput]
    assert kinds == [
        ("stderr", None, "daemon"),
        ("file", "/var/log/x.log", "daemon"),
        ("syslog", None, "local3"),
    ]


def test_embedded_default_is_safe() -> None:
    """The default serves 127.0.0.1:1080 to loopback clients only, no auth;
    BIND and UDP replies may come from anywhere, but only to those clients."""
    cfg = parse(default_config_text(), "<default>")
    assert [(i.host, i.port) for i in cfg.internals] == [("127.0.0.1", 1080)]
    assert cfg.socksmethods == ("none",)
    for rule in cfg.client_rules + cfg.socks_rules:
        replies = rule.commands is not None and rule.commands <= {
            "bindreply",
            "udpreply",
        }
        client_side = rule.dst if replies else rule.src
        assert client_side.network == ipaddress.ip_network("127.0.0.0/8")


@pytest.mark.parametrize(
    "path", sorted((REPO / "conf").glob("sockd*.conf")), ids=lambda p: p.name
)
def test_sample_configs_parse(path: Path) -> None:
    """Every sample in conf/ parses without errors."""
    parse(path.read_text(), str(path))


def test_udp_portrange_in_socks_rules_both_spellings() -> None:
    """udp.portrange takes 'A-B' or 'A - B' in socks rules (as danted 1.4.2)."""
    cfg = parse(
        BASE + "socks pass { from: 0/0 to: 0/0\n udp.portrange: 40000-40100 }\n"
        "socks pass { from: 0/0 to: 0/0\n udp.portrange: 50000 - 50009 }\n",
        "t.conf",
    )
    assert [r.udp_portrange for r in cfg.socks_rules] == [
        (40000, 40100),
        (50000, 50009),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("udp.portrange: 40000", "must be a range like 40000-40100"),
        ("udp.portrange: 5-4", "udp.portrange 5-4 is empty"),
        ("udp.portrange: 0-10", "udp.portrange 0-10 is empty or starts at 0"),
        ("udp.portrange: 1-70000", "port 70000 is out of range"),
    ],
)
def test_udp_portrange_errors(line: str, message: str) -> None:
    """A bad udp.portrange is an error pointing at it."""
    errs = errors_of(BASE + f"socks pass {{ from: 0/0 to: 0/0\n {line} }}\n")
    assert any(message in e for e in errs), errs


def test_udp_portrange_is_refused_in_client_rules() -> None:
    """udp.portrange belongs to socks rules only (danted: syntax error)."""
    errs = errors_of(BASE + "client pass { from: 0/0 to: 0/0\n udp.portrange: 1-2 }\n")
    assert any("only in socks rules" in e for e in errs), errs


def test_connectdst_and_the_refused_bind_extension() -> None:
    """udp.connectdst takes yes or no (default yes); extension: bind is
    refused by name (no Dante 1.4 client asks for it)."""
    assert parse(BASE, "t.conf").udp_connectdst is True
    assert parse(BASE + "udp.connectdst: no\n", "t.conf").udp_connectdst is False
    assert any(
        "must be 'yes' or 'no'" in e
        for e in errors_of(BASE + "udp.connectdst: maybe\n")
    )
    (error,) = errors_of(BASE + "extension: bind\n")
    assert error.startswith("t.conf:3:12: error: extension 'bind' is not supported yet")
    assert any(
        "unknown extension 'foo'" in e for e in errors_of(BASE + "extension: foo\n")
    )


def test_advertise_addresses_one_per_family() -> None:
    """internal/external.advertise take one IP literal per family, no wildcard."""
    cfg = parse(
        BASE + "external.advertise: 203.0.113.5\nexternal.advertise: 2001:db8::5\n"
        "internal.advertise: 198.51.100.7\n",
        "t.conf",
    )
    assert cfg.external_advertise == ("203.0.113.5", "2001:db8::5")
    assert cfg.internal_advertise == ("198.51.100.7",)
    errs = errors_of(
        BASE + "external.advertise: 0.0.0.0\ninternal.advertise: example.com\n"
        "internal.advertise: 192.0.2.1\ninternal.advertise: 192.0.2.2\n"
    )
    assert any("is a wildcard" in e for e in errs), errs
    assert any("takes an IP address" in e for e in errs), errs
    assert any("a second IPv4 address" in e for e in errs), errs
