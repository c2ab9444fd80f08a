"""<side>.log.<level>.error and .tcp.disabled/.tcp.enabled: which failures
are logged again and which TCP options are reported, at what level, from the
tables to the session's lines (in memory) and a real connection's TCP_INFO."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from twisted.python.failure import Failure

from dantex.config.errors import Span
from dantex.config.model import ErrorLogSpec
from dantex.log.levels import ErrorLevels, errno_of, tcp_option_lines
from dantex.log.tcpinfo import negotiated, read
from dantex.server.relay import EndReason
from tests.server.test_session import CONNECT_V4, OPEN, connected_socket
from tests.server.test_session import negotiated as negotiated_session

SPAN = Span("t.conf", 1, 1, 1)


def spec(side: str, level: str, *values: str) -> ErrorLogSpec:
    return ErrorLogSpec(side, level, "error", values, SPAN)


def test_errno_names_groups_and_sides() -> None:
    levels = ErrorLevels(
        [
            spec("external", "warning", "econnrefused"),
            spec("external", "error", "no-route"),
            spec("internal", "notice", "system-any"),
            spec("external", "alert", "dns-any"),
        ]
    )
    refused = "remote peer error (Connection refused)"
    assert levels.levels("external", refused) == ["warning"]
    assert levels.levels("external", "No route to host") == ["error"]
    assert levels.levels("external", "Network is unreachable") == ["error"]
    assert levels.levels("internal", "Connection reset by peer") == ["notice"]
    assert levels.levels("internal", refused) == ["notice"]
    assert levels.levels("external", "Connection reset by peer") == []
    assert levels.levels("external", "could not resolve 'x.test'") == ["alert"]
    assert levels.levels("internal", "client closed during negotiation") == []


def test_getaddrinfo_names_match_any_failed_resolution() -> None:
    levels = ErrorLevels([spec("external", "warning", "eai_noname")])
    assert levels.levels("external", "could not resolve: Name or service not known")
    assert levels.levels("external", "Connection refused") == []


def test_error_texts_back_to_errno() -> None:
    assert errno_of("Connection refused") == errno.ECONNREFUSED
    assert errno_of("remote peer error (Connection reset by peer)") == errno.ECONNRESET
    assert errno_of("connect timed out") == errno.ETIMEDOUT
    assert errno_of("no rules matched") is None
    assert not ErrorLevels([])


def test_a_refused_connect_is_logged_again_at_the_level_named() -> None:
    """external.log.warning.error: econnrefused -- the connect's failure line
    comes once at info (log: error) and once more at warning."""
    m = negotiated_session("external.log.warning.error: econnrefused\n" + OPEN)
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "Connection refused"))
    )
    ends = [x for x in m.log.lines if "tcp/connect ]" in x[1]]
    assert [level for level, _ in ends] == ["info", "warning"]
    assert ends[0][1] == ends[1][1]
    assert ends[1][1].endswith(": remote peer error (Connection refused)")


def test_a_relay_error_on_the_client_side_is_logged_on_the_internal_side() -> None:
    m = negotiated_session(
        "internal.log.error.error: econnreset\nexternal.log.error.error: econnreset\n"
        + OPEN
    )
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.callback(connected_socket())
    (relay,) = m.relays
    relay.end(EndReason("client", "Connection reset by peer"))
    (line,) = [message for level, message in m.log.lines if level == "error"]
    assert line.startswith("pass(1): tcp/connect ]: 127.0.0.1.40000 127.0.0.1.1080 -> ")
    assert line.endswith(": local client error (Connection reset by peer)")
    m.relays[0].end(EndReason("target", "Connection reset by peer"))  # ended once
    assert len([1 for level, _ in m.log.lines if level == "error"]) == 1


def test_without_the_setting_nothing_is_logged_twice() -> None:
    m = negotiated_session()
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "Connection refused"))
    )
    assert {level for level, _ in m.log.lines} == {"info"}


def tcp_info(options: int) -> bytes:
    """A TCP_INFO prefix (linux/tcp.h): state, ca_state, retransmits, probes,
    backoff, options, then the rest zero."""
    return bytes([1, 0, 0, 0, 0, options]) + bytes(98)


def test_negotiated_options_come_from_tcpi_options() -> None:
    # TCPI_OPT_TIMESTAMPS 1, SACK 2, WSCALE 4, ECN 8
    assert negotiated(tcp_info(1 | 2 | 4)) == frozenset(
        {"timestamps", "sack", "wscale"}
    )
    assert negotiated(tcp_info(8)) == frozenset({"ecn"})
    assert negotiated(None) is None and negotiated(b"\x01") is None


def test_a_loopback_connection_negotiates_what_the_sysctls_allow() -> None:
    """Read from a real connection: SACK, timestamps and window scaling are
    on by default; ECN only when net.ipv4.tcp_ecn asks for it (1)."""
    sysctl = {
        name: Path(f"/proc/sys/net/ipv4/tcp_{name}").read_text().strip()
        for name in ("sack", "timestamps", "window_scaling", "ecn")
    }
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        server.accept()[0].close()
        found = negotiated(read(client))
    assert found is not None
    assert ("sack" in found) is (sysctl["sack"] == "1")
    assert ("timestamps" in found) is (sysctl["timestamps"] == "1")
    assert ("wscale" in found) is (sysctl["window_scaling"] == "1")
    assert ("ecn" in found) is (sysctl["ecn"] == "1")


def test_tcp_option_lines_per_side_and_state() -> None:
    specs = [
        ErrorLogSpec("external", "warning", "tcp.disabled", ("ecn", "sack"), SPAN),
        ErrorLogSpec("internal", "notice", "tcp.enabled", ("sack", "ecn"), SPAN),
        ErrorLogSpec("internal", "info", "tcp.disabled", ("sack",), SPAN),
    ]
    both = frozenset({"sack", "timestamps", "wscale"})
    assert tcp_option_lines(specs, both, both) == [
        ("warning", "TCP options not negotiated on the external side: ecn"),
        ("notice", "TCP options negotiated on the internal side: sack"),
    ]
    assert tcp_option_lines(specs, None, None) == []


def test_a_relays_tcp_options_are_logged_at_its_end() -> None:
    m = negotiated_session(
        "external.log.warning.tcp.disabled: ecn\n"
        "internal.log.notice.tcp.enabled: sack\n" + OPEN
    )
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.callback(connected_socket())
    (relay,) = m.relays
    assert relay.keep_tcpinfo and not relay.want_tcpinfo
    relay.tcp_info = (tcp_info(2 | 1), tcp_info(2 | 1))  # sack, timestamps
    relay.end(EndReason("target"))
    lines = [(lv, x) for lv, x in m.log.lines if lv in ("warning", "notice")]
    assert [lv for lv, _ in lines] == ["warning", "notice"]
    assert lines[0][1].startswith("pass(1): tcp/connect -: 127.0.0.1.40000 ")
    assert lines[0][1].endswith(
        ": TCP options not negotiated on the external side: ecn"
    )
    assert lines[1][1].endswith(": TCP options negotiated on the internal side: sack")
