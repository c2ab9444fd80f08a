"""Graceful stop in memory: drain waits on the clock, then closes the rest."""

from __future__ import annotations

import socket

from twisted.internet.task import Clock

from dantex.server.drain import Drain, drain
from dantex.server.session import State
from dantex.testing import MemorySession, memory_session

OPEN = """
internal: 127.0.0.1 port = 1080
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 127.0.0.0/8 to: 0/0 log: connect disconnect }
"""


def relaying() -> MemorySession:
    m = memory_session(OPEN)
    m.send(b"\x05\x01\x00")
    m.send(b"\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50")
    with socket.create_server(("127.0.0.1", 0)) as server:
        sock = socket.create_connection(server.getsockname())
        server.accept()[0].close()
    m.connector.calls[0].deferred.callback(sock)
    assert m.session.state is State.RELAYING
    return m


def test_no_sessions_fires_at_once() -> None:
    """Nothing live: the stop goes on immediately."""
    fired: list[None] = []
    drain(set(), Clock(), 30, lambda line: None).addCallback(fired.append)
    assert fired == [None]


def test_waits_until_the_last_session_ends() -> None:
    """A session that ends inside timeout.shutdown ends the wait, untouched."""
    m = relaying()
    lines: list[str] = []
    fired: list[None] = []
    clock = Clock()
    d = drain(m.session.runtime.sessions, clock, 30, lines.append)
    d.addCallback(fired.append)
    clock.advance(5)
    assert fired == [] and m.relays[0].aborted is None
    from dantex.server.relay import EndReason

    m.relays[0].end(EndReason("client"))
    clock.advance(1)
    assert fired == [None]
    assert lines[-1] == "shutdown: every session has ended"


def test_closes_what_is_left_after_the_timeout() -> None:
    """At timeout.shutdown the relay is aborted with the reason in its line."""
    m = relaying()
    negotiating = memory_session(OPEN)
    sessions = m.session.runtime.sessions | {negotiating.session}
    live = set(sessions)
    fired: list[None] = []
    clock = Clock()
    drain(live, clock, 2, lambda line: None).addCallback(fired.append)
    clock.pump([0.5] * 3)
    assert fired == []
    clock.pump([0.5] * 3)
    assert fired == [None]
    assert "server shutting down" in str(m.relays[0].aborted)
    assert negotiating.session.state is State.CLOSED
    assert not negotiating.transport.connected


def test_zero_timeout_closes_at_once() -> None:
    """timeout.shutdown 0 (the default): live sessions are closed right away."""
    m = relaying()
    fired: list[None] = []
    drain(m.session.runtime.sessions, Clock(), 0, lambda line: None).addCallback(
        fired.append
    )
    assert fired == [None]
    assert m.relays[0].aborted is not None


def test_close_now_stops_waiting() -> None:
    """A second SIGTERM (close_now) closes what is left before the timeout."""
    m = relaying()
    clock = Clock()
    waiting = Drain(m.session.runtime.sessions, clock, 30, lambda line: None)
    clock.advance(1)
    assert not waiting.done.called
    waiting.close_now()
    assert waiting.done.called
    assert m.relays[0].aborted is not None
    assert not clock.getDelayedCalls()
    waiting.close_now()  # again: nothing more
