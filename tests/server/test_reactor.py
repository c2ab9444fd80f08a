"""DantexReactor: events on dantex's own descriptors go straight to their callbacks."""

from __future__ import annotations

import os
import socket
import weakref
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


class _Poller:
    """Stands in for the epoll object: answers from a script, records timeouts."""

    def __init__(self, answers: list[list[tuple[int, int]]]) -> None:
        self.answers = answers
        self.timeouts: list[float] = []

    def poll(self, timeout: float, most: int) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        return self.answers.pop(0) if self.answers else []

    def close(self) -> None:
        pass


def test_after_activity_the_reactor_polls_awake_before_sleeping() -> None:
    """Once events came, an empty poll is retried without sleeping for a moment."""
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    real = reactor._poller
    fake = _Poller([[(999, 1)]])  # one batch (for an unknown fd), then nothing
    reactor._poller = fake
    try:
        reactor.doPoll(5.0)  # the batch
        assert fake.timeouts == [0]
        fake.timeouts.clear()
        reactor.doPoll(5.0)  # nothing: spin with poll(0), then sleep
        assert fake.timeouts[-1] == 5.0
        assert fake.timeouts.count(0) >= 2
        fake.timeouts.clear()
        reactor.doPoll(5.0)  # idle since: straight to sleep
        assert fake.timeouts == [0, 5.0]
    finally:
        reactor._poller = real
        real.close()


def test_after_a_busy_poll_the_reactor_sleeps_without_spinning() -> None:
    """A poll that returned many events means queued work, not a conversation
    waiting for its next message: the next empty poll sleeps at once."""
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    real = reactor._poller
    fake = _Poller([[(999, 1), (998, 1), (997, 1)]])  # three events (unknown fds)
    reactor._poller = fake
    try:
        reactor.doPoll(5.0)
        fake.timeouts.clear()
        reactor.doPoll(5.0)
        assert fake.timeouts == [0, 5.0]
    finally:
        reactor._poller = real
        real.close()


def test_closed_conn_lets_go_of_its_driver(
    pair: tuple[DantexReactor, socket.socket, socket.socket],
) -> None:
    """After close() the callbacks' owner is freed by reference counting alone."""
    reactor, ours, _theirs = pair

    class Driver:
        def __init__(self, conn: Conn) -> None:
            self.conn = conn
            conn.read_cb = self.on_read

        def on_read(self) -> None:
            pass

    conn = Conn(reactor, socket.socket(fileno=os.dup(ours.fileno())))
    driver = Driver(conn)
    gone = weakref.ref(driver)
    conn.close()
    del driver, conn
    assert gone() is None
