"""Dante's socket options: compiled from the configuration, set on real
sockets (read back with getsockopt), and where a session asks for them."""

from __future__ import annotations

import socket
import struct

import pytest

from dantex.config import parse
from dantex.server.context import Policy
from dantex.server.sockopts import Compiled, apply, compile_options
from dantex.testing import MemoryLog, memory_session

HEAD = "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n"
RULES = "client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 0/0 }\n"


def options(text: str, side: str) -> tuple[Compiled, ...]:
    return compile_options(parse(HEAD + text + RULES, "t.conf").socket_options, side)


def test_options_are_compiled_per_side_in_file_order() -> None:
    text = (
        "external.tcp.tcp_nodelay: 1\ninternal.socket.so_rcvbuf: 16384\n"
        "external.ip.ip_tos.dscp: ef\nexternal.ip.10: 2\n"
    )
    ext = options(text, "external")
    assert [(o.name, o.level, o.number, o.value, o.only) for o in ext] == [
        ("external.tcp.tcp_nodelay", socket.IPPROTO_TCP, socket.TCP_NODELAY, 1, "tcp"),
        ("external.ip.ip_tos.dscp", socket.IPPROTO_IP, socket.IP_TOS, 46 << 2, ""),
        ("external.ip.10", socket.IPPROTO_IP, 10, 2, ""),
    ]
    assert [o.name for o in options(text, "internal")] == ["internal.socket.so_rcvbuf"]


def test_options_are_set_on_tcp_and_udp_sockets_of_both_families() -> None:
    """Read back from the kernel: buffer sizes (doubled by Linux), TCP_NODELAY
    on TCP only, UDP_CORK on UDP only, ip_tos as IPV6_TCLASS on IPv6."""
    text = (
        "external.socket.so_rcvbuf: 16384\nexternal.tcp.tcp_nodelay: 1\n"
        "external.udp.udp_cork: 1\nexternal.ip.ip_tos: 0x10\n"
    )
    compiled = options(text, "external")
    log = MemoryLog()
    for family, ip in ((socket.AF_INET, socket.IPPROTO_IP), (socket.AF_INET6, 41)):
        tos = socket.IP_TOS if family == socket.AF_INET else 67  # IPV6_TCLASS
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            apply(tcp, compiled, log.warning)
            assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 32768
            assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert tcp.getsockopt(ip, tos) == 0x10
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            apply(udp, compiled, log.warning)
            assert udp.getsockopt(socket.IPPROTO_UDP, 1) == 1  # UDP_CORK
            assert udp.getsockopt(ip, tos) == 0x10
    assert log.lines == []


def test_a_refused_option_is_logged_once_and_the_socket_still_used() -> None:
    """TCP_MAXSEG below the kernel's minimum (88) is EINVAL."""
    compiled = options("external.tcp.tcp_maxseg: 1\n", "external")
    log = MemoryLog()
    for _ in range(2):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            apply(s, compiled, log.warning)
    assert log.lines == [
        (
            "warning",
            "socket option external.tcp.tcp_maxseg: 1 refused on a IPv4 TCP "
            "socket: Invalid argument",
        )
    ]


def test_policy_puts_the_rules_options_after_the_global_ones() -> None:
    text = (
        HEAD
        + "external.socket.so_sndbuf: 8192\n"
        + "client pass { from: 0/0 to: 0/0 }\n"
        + "socks pass { from: 0/0 to: 0/0\n external.socket.so_sndbuf: 16384 }\n"
    )
    config = parse(text, "t.conf")
    policy = Policy(config, None)  # type: ignore[arg-type]
    rule = config.socks_rules[0]
    assert [o.value for o in policy.socket_options("external", rule)] == [8192, 16384]
    assert [o.value for o in policy.socket_options("external")] == [8192]
    assert policy.socket_options("internal", rule) == ()
    plain = Policy(parse(HEAD + RULES, "t.conf"), None)  # type: ignore[arg-type]
    assert plain.socket_options("external", plain.config.socks_rules[0]) == ()


def test_connect_asks_for_the_global_and_socks_rule_options() -> None:
    m = memory_session(
        HEAD
        + "external.tcp.tcp_nodelay: 1\n"
        + "client pass { from: 0/0 to: 0/0 }\n"
        + "socks pass { from: 0/0 to: 0/0\n external.ip.ip_ttl: 9 }\n"
    )
    assert m.send(b"\x05\x01\x00") == b"\x05\x00"  # RFC 1928 §3
    # RFC 1928 §4: CONNECT 10.1.2.3:80
    m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03" + struct.pack("!H", 80))
    (call,) = m.connector.calls
    assert [(o.name, o.value) for o in call.options] == [
        ("external.tcp.tcp_nodelay", 1),
        ("external.ip.ip_ttl", 9),
    ]


@pytest.mark.parametrize(
    "line", ["internal.socket.so_linger: 5", "external.tcp.tcp_md5sig: 1"]
)
def test_options_that_take_a_structure_are_refused(line: str) -> None:
    from dantex.config import ConfigErrors

    with pytest.raises(ConfigErrors, match="not supported yet"):
        parse(HEAD + line + "\n" + RULES, "t.conf")
