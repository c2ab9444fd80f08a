"""redirect to: / redirect from: -- config checks, the rewrite, the source
choice, and what the session asks the connector for."""

from __future__ import annotations

import errno
import socket

import pytest

from dantex.config import ConfigErrors, parse
from dantex.limits.redirect import RedirectError, source, target
from dantex.protocol.address import Address, AddressType
from dantex.server.connector import _bind_in_range
from dantex.testing import memory_session

# RFC 1928 §3: VER=5 NMETHODS=1 METHODS=[00]
GREETING = b"\x05\x01\x00"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=1 10.1.2.3 port 80
CONNECT_V4 = b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50"
# RFC 1928 §4: VER=5 CMD=1 RSV ATYP=3 len=11 "example.org" port 443
CONNECT_NAME = b"\x05\x01\x00\x03\x0bexample.org\x01\xbb"

RULES = """internal: 127.0.0.1 port = 1080
socksmethod: none
client pass {{ from: 0/0 to: 0/0
  {client} }}
socks pass {{ from: 0/0 to: 0/0
  log: connect disconnect error
  {socks} }}
"""


def conf(socks: str = "", client: str = "") -> str:
    return RULES.format(socks=socks, client=client)


def spec(line: str, which: str = "to"):  # type: ignore[no-untyped-def]
    rule = parse(conf(line), "t.conf").socks_rules[0]
    return rule.redirect_to if which == "to" else rule.redirect_from


def error_of(line: str) -> str:
    with pytest.raises(ConfigErrors) as info:
        parse(conf(line), "t.conf")
    (err,) = info.value.errors
    return str(err)


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("redirect to: 10.0.0.0/24", "needs one address, not the network 10.0.0.0/24"),
        ("redirect from: 10.0.0.0/8", "needs one address, not the network"),
        ("redirect to: .example.org", "needs an address, not a domain"),
        ("redirect from: proxy.example.org", "needs an address or an interface"),
        ("redirect to: 10.0.0.1/32 port 80 - 90", "takes one port, not a range"),
        ("redirect from: 10.0.0.1/32 port > 5000", "takes 'port = N' or a range"),
    ],
)
def test_redirects_that_cannot_be_served_are_config_errors(
    line: str, message: str
) -> None:
    """Reported at the address, as file:line:col."""
    err = error_of(line)
    assert err.startswith("t.conf:7:")
    assert message in err


# -- the rewrite and the source ---------------------------------------------------

REQUESTED = Address(AddressType.IPV4, "10.1.2.3", 80)


def test_redirect_to_an_address_and_port() -> None:
    new = target(REQUESTED, spec("redirect to: 127.0.0.1/32 port = 8080"))
    assert (new.type, new.host, new.port) == (AddressType.IPV4, "127.0.0.1", 8080)


def test_redirect_to_without_port_keeps_the_requested_one() -> None:
    assert target(REQUESTED, spec("redirect to: ::1/128")).port == 80
    assert target(REQUESTED, spec("redirect to: ::1/128 port = 0")).port == 80


def test_redirect_to_0_0_changes_only_the_port() -> None:
    new = target(REQUESTED, spec("redirect to: 0/0 port = 3128"))
    assert (new.host, new.port) == ("10.1.2.3", 3128)


def test_redirect_to_a_host_name() -> None:
    new = target(REQUESTED, spec("redirect to: proxy.example.org port = 3128"))
    assert (new.type, new.host, new.port) == (
        AddressType.DOMAIN,
        "proxy.example.org",
        3128,
    )


def test_redirect_from_address_and_ports() -> None:
    one = spec("redirect from: 127.0.0.2/32 port = 5000", "from")
    assert source(one, socket.AF_INET, None) == ("127.0.0.2", (5000, 5000))
    rng = spec("redirect from: 127.0.0.2/32 port 5000 - 5010", "from")
    assert source(rng, socket.AF_INET, "10.0.0.1") == ("127.0.0.2", (5000, 5010))
    keep = spec("redirect from: 0/0 port = 6000", "from")
    assert source(keep, socket.AF_INET, "10.0.0.1") == ("10.0.0.1", (6000, 6000))


def test_redirect_from_of_the_wrong_family_fails() -> None:
    v6 = spec("redirect from: ::1/128", "from")
    with pytest.raises(RedirectError, match="cannot reach an IPv4 target"):
        source(v6, socket.AF_INET, None)


def test_redirect_from_an_interface_takes_its_address() -> None:
    lo = spec("redirect from: lo", "from")
    assert source(lo, socket.AF_INET, None) == ("127.0.0.1", None)


# -- the session ------------------------------------------------------------------


def test_session_connects_to_the_redirected_target_and_logs_it() -> None:
    """The connector gets the new address; log lines show it."""
    m = memory_session(conf("redirect to: 127.0.0.9/32 port = 8080"))
    m.send(GREETING)
    m.send(CONNECT_V4)
    (call,) = m.connector.calls
    assert call.sockaddr == ("127.0.0.9", 8080)
    call.deferred.errback(OSError(errno.ECONNREFUSED, "Connection refused"))
    assert any("127.0.0.9.8080" in x for x in m.log.messages())


def test_redirect_to_of_a_host_name_request_skips_the_matched_ip() -> None:
    """An IP rule that matched the requested name does not pick the address."""
    m = memory_session(
        conf("redirect to: 127.0.0.9/32").replace(
            "socks pass { from: 0/0 to: 0/0", "socks pass { from: 0/0 to: 10.0.0.0/8"
        ),
        forward={"example.org": ("10.9.9.9",)},
    )
    m.send(GREETING)
    m.send(CONNECT_NAME)
    (call,) = m.connector.calls
    assert call.sockaddr == ("127.0.0.9", 443)


def test_client_rule_redirect_is_inherited_and_socks_rule_wins() -> None:
    m = memory_session(conf(client="redirect from: 127.0.0.3/32 port = 7000"))
    m.send(GREETING)
    m.send(CONNECT_V4)
    (call,) = m.connector.calls
    assert (call.source, call.source_ports) == ("127.0.0.3", (7000, 7000))
    m = memory_session(
        conf(
            socks="redirect from: 127.0.0.4/32",
            client="redirect from: 127.0.0.3/32 port = 7000",
        )
    )
    m.send(GREETING)
    m.send(CONNECT_V4)
    (call,) = m.connector.calls
    assert (call.source, call.source_ports) == ("127.0.0.4", None)


def test_redirect_from_of_the_wrong_family_refuses_with_0x08() -> None:
    m = memory_session(conf("redirect from: ::1/128"))
    m.send(GREETING)
    # VER=5 REP=8 (address type not supported) RSV ATYP=1 0.0.0.0:0
    assert m.send(CONNECT_V4) == b"\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00"
    assert not m.connector.calls


# -- binding in a port range (real sockets) ------------------------------------


def test_bind_in_range_skips_a_port_in_use() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        taken = min(probe.getsockname()[1], 65000)
    with socket.create_server(("127.0.0.1", taken)) as busy:
        assert busy.getsockname()[1] == taken
        with socket.socket() as sock:
            _bind_in_range(sock, socket.AF_INET, "127.0.0.1", (taken, taken + 50))
            host, got = sock.getsockname()
            assert host == "127.0.0.1" and taken < got <= taken + 50
        with socket.socket() as sock, pytest.raises(OSError) as info:
            _bind_in_range(sock, socket.AF_INET, "127.0.0.1", (taken, taken))
        assert info.value.errno == errno.EADDRINUSE


def test_redirect_on_a_rule_that_also_passes_bind_or_udp_warns() -> None:
    """A redirect rule not limited to CONNECT says at start-up what it skips."""
    text = "redirect to: 10.0.0.9/32 port = 8080"
    warned = [
        str(w)
        for w in parse(conf(text), "t.conf").warnings
        if "redirect applies to CONNECT only" in str(w)
    ]
    assert len(warned) == 1 and warned[0].startswith("t.conf:5:1: warning")
    only_connect = parse(conf(text + "\n  command: connect"), "t.conf")
    assert not [w for w in only_connect.warnings if "CONNECT only" in str(w)]
