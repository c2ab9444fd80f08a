"""DantexReactor: events on dantex's own descriptors go straight to their callbacks."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.python.failure import Failure

from dantex.server.lean import Conn
from dantex.server.reactor import DantexReactor


@pytest.fixture
def pair() -> Iterator[tuple[DantexReactor, socket.socket, socket.socket]]:
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield reactor, ours, theirs
    reactor.removeAll()  # type: ignore[no-untyped-call]
    ours.close()
    theirs.close()
    reactor._poller.close()


def test_readable_conn_calls_read_cb(
    pair: tuple[DantexReactor, socket.socket, socket.socket],
) -> None:
    """One poll with a readable Conn calls its read callback once, nothing else."""
    reactor, ours, theirs = pair
    conn = Conn(reactor, ours)
    calls: list[str] = []
    conn.read_cb = lambda: calls.append(ours.recv(100).decode())
    conn.write_cb = lambda: calls.append("write")
    conn.want_read(True)
    theirs.send(b"ping")
    reactor.doPoll(0.5)
    assert calls == ["ping"]


def test_failing_callback_loses_the_conn_not_the_reactor(
    pair: tuple[DantexReactor, socket.socket, socket.socket],
) -> None:
    """A callback that raises ends its descriptor with the error; polling goes on."""
    reactor, ours, theirs = pair
    conn = Conn(reactor, ours)
    lost: list[Failure] = []

    def broken() -> None:
        raise ValueError("boom")

    conn.read_cb = broken
    conn.lost_cb = lost.append
    conn.want_read(True)
    theirs.send(b"x")
    reactor.doPoll(0.5)
    assert [str(f.value) for f in lost] == ["boom"]
    assert ours.fileno() not in reactor._selectables
    reactor.doPoll(0)  # the reactor itself carries on
