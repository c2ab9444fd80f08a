"""The splice relay on real loopback sockets and a real DantexReactor."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from dantex.server.reactor import DantexReactor
from dantex.server.relay import EndReason
from dantex.server.splice import PipePool, SpliceRelay

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@pytest.fixture
def made() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def tcp_pair(made: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """(connecting side, accepted side) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b = listener.accept()[0]
    made.extend((a, b))
    return a, b


def test_a_reset_client_is_not_reset_again_and_the_target_is(
    made: list[socket.socket],
) -> None:
    """The client resets: the relay ends with its error, sends the target a
    reset, and marks the client's socket as reset by its peer (closing it
    needs no SO_LINGER of ours)."""
    client, client_side = tcp_pair(made)
    target_side, target = tcp_pair(made)
    for s in (client_side, target_side):
        s.setblocking(False)
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    ended: list[EndReason] = []
    relay = SpliceRelay(
        reactor, reactor, PipePool(), client_side, target_side, ended.append
    )
    relay.start()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    client.close()
    for _ in range(500):  # bounded: 500 polls of at most 10 ms
        if ended:
            break
        reactor.doPoll(0.01)
    assert [(r.side, r.error) for r in ended] == [
        ("client", "Connection reset by peer")
    ]
    assert relay._client.reset_by_peer and not relay._target.reset_by_peer
    target.settimeout(5)
    with pytest.raises(ConnectionResetError):
        target.recv(1)
