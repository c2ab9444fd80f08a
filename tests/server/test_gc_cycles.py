"""A finished CONNECT session is freed by reference counting, not the cyclic GC.

Every session that ends in a reference cycle waits for the collector, whose
passes then walk thousands of dead objects under load: that was a third of
a worker's latency tail (bench/RESULTS.md).  Here a real server on a
:class:`DantexReactor` relays real sockets on loopback, with the collector
switched off and ``DEBUG_SAVEALL`` catching whatever a collection finds.
"""

from __future__ import annotations

import gc
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from dantex.config import parse
from dantex.log.output import DanteLog
from dantex.server.context import Policy, Runtime
from dantex.server.factory import SocksFactory
from dantex.server.lean import LeanPort, listening_socket
from dantex.server.reactor import DantexReactor
from dantex.server.session import SocksSession

CONFIG = """
internal: 127.0.0.1 port = 0
external: 127.0.0.1
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 }
socks pass { from: 127.0.0.0/8 to: 0/0 }
"""

_RESET = struct.pack("ii", 1, 0)


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """The collector off; after ``save_from_now()`` a ``gc.collect()`` keeps
    what it finds in the list (``gc.garbage``)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def save_from_now() -> None:
    """Free what is garbage so far (imports, first uses), keep what comes."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)


def _poll_until(reactor: DantexReactor, done: Callable[[], bool]) -> None:
    for _ in range(500):  # bounded: 500 polls of at most 10 ms
        if done():
            return
        reactor.runUntilCurrent()
        reactor.doPoll(0.01)
    raise AssertionError("the server did not get there in 500 polls")


def _read(reactor: DantexReactor, sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from a non-blocking socket, polling the server meanwhile."""
    got = bytearray()

    def enough() -> bool:
        try:
            got.extend(sock.recv(n - len(got)))
        except BlockingIOError:
            pass
        return len(got) >= n

    _poll_until(reactor, enough)
    return bytes(got)


@pytest.mark.parametrize("relay_mode", ["splice", "copy"])
def test_connect_sessions_leave_no_cyclic_garbage(
    saved_garbage: list[object], relay_mode: str
) -> None:
    reactor = DantexReactor()  # type: ignore[no-untyped-call]
    runtime = Runtime(reactor, relay_mode=relay_mode)  # type: ignore[arg-type]
    policy = Policy(parse(CONFIG, "gc.conf"), DanteLog(()))
    listener = listening_socket("127.0.0.1", 0)
    port = LeanPort(reactor, listener, SocksFactory(policy, runtime))
    port.startListening()
    proxy = listener.getsockname()[1]
    upstream = socket.create_server(("127.0.0.1", 0))
    target_port = upstream.getsockname()[1]
    try:
        for i in range(4):
            if i == 1:  # the first session imported and built things once
                save_from_now()
            client = socket.create_connection(("127.0.0.1", proxy), timeout=5)
            client.setblocking(False)
            # RFC 1928: greeting (v5, 1 method: 0x00), then CONNECT to an IPv4
            client.send(b"\x05\x01\x00")
            request = b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1")
            client.send(request + struct.pack("!H", target_port))
            replies = _read(reactor, client, 12)  # 2-byte method + 10-byte reply
            assert replies[:4] == b"\x05\x00\x05\x00"
            served, _ = upstream.accept()
            served.sendall(b"pong")
            assert _read(reactor, client, 4) == b"pong"
            # the client resets, as the benchmark's load generator does
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            client.close()
            _poll_until(reactor, lambda: not runtime.sessions)
            served.close()
        gc.collect()
        kinds = sorted({type(o).__qualname__ for o in saved_garbage})
        assert kinds == []
        alive = [o for o in gc.get_objects() if isinstance(o, SocksSession)]
        assert alive == []
    finally:
        port.stopListening()
        upstream.close()
        reactor.removeAll()  # type: ignore[no-untyped-call]
        reactor._poller.close()
