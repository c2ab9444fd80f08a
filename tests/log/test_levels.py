"""<side>.log.<level>.error: which failures are logged again, at what level,
from the ErrorLevels table to the session's lines (in memory)."""

from __future__ import annotations

import errno

from twisted.python.failure import Failure

from dantex.config.errors import Span
from dantex.config.model import ErrorLogSpec
from dantex.log.levels import ErrorLevels, errno_of
from dantex.server.relay import EndReason
from tests.server.test_session import CONNECT_V4, OPEN, connected_socket, negotiated

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
    m = negotiated("external.log.warning.error: econnrefused\n" + OPEN)
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "Connection refused"))
    )
    ends = [x for x in m.log.lines if "tcp/connect ]" in x[1]]
    assert [level for level, _ in ends] == ["info", "warning"]
    assert ends[0][1] == ends[1][1]
    assert ends[1][1].endswith(": remote peer error (Connection refused)")


def test_a_relay_error_on_the_client_side_is_logged_on_the_internal_side() -> None:
    m = negotiated(
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
    m = negotiated()
    m.send(CONNECT_V4)
    m.connector.calls[0].deferred.errback(
        Failure(OSError(errno.ECONNREFUSED, "Connection refused"))
    )
    assert {level for level, _ in m.log.lines} == {"info"}
