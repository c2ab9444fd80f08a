"""In-memory stand-ins for testing code built on dantex (like ``treq.testing``).

Public and stable enough for users' own tests: a log that keeps its lines, a
resolver with fixed answers, a connector whose connects the test completes, and
:func:`memory_session` wiring a :class:`~dantex.server.session.SocksSession`
to a ``StringTransport`` and a ``MemoryReactorClock``.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from attrs import define, field
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from typing_extensions import Unpack

from dantex.auth.methods import Authenticator
from dantex.config import parse
from dantex.log.output import DanteLog
from dantex.server.connector import ConnectOptions
from dantex.server.context import Policy, Runtime
from dantex.server.lean import Conn
from dantex.server.relay import EndReason, OnEnd, Relay, TransportTarget
from dantex.server.resolve import Resolver
from dantex.server.session import SocksSession
from dantex.server.sockopts import Compiled

__all__ = [
    "FakeConnector",
    "FakeRelay",
    "MemoryLog",
    "MemorySession",
    "StaticResolver",
    "memory_session",
]


class MemoryLog(DanteLog):
    """A :class:`DanteLog` that keeps ``(level, message)`` pairs in ``lines``."""

    def __init__(self) -> None:
        super().__init__(())
        self.enabled = True
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def messages(self) -> list[str]:
        """Just the messages, in order."""
        return [m for _level, m in self.lines]


class StaticResolver(Resolver):
    """A resolver answering from fixed tables (unknown names resolve to nothing)."""

    def __init__(
        self,
        clock: Any,
        forward: Mapping[str, tuple[str, ...]] = {},
        reverse: Mapping[str, tuple[str, ...]] = {},
    ) -> None:
        super().__init__(clock)
        self.table = {"forward": dict(forward), "reverse": dict(reverse)}
        self.asked: list[tuple[str, str]] = []

    def _lookup(self, kind: str, key: str, fn: Any) -> Deferred[tuple[str, ...]]:
        self.asked.append((kind, key))
        answer = self.table[kind].get(key, ())
        self._done(answer, kind, key)
        return succeed(answer)


@define
class ConnectCall:
    """One outbound connect the session asked for."""

    family: int
    sockaddr: tuple[str, int]
    source: str | None
    timeout: float
    deferred: Deferred[socket.socket]
    cancelled: bool = False
    source_ports: tuple[int, int] | None = None
    #: the socket options the connect was asked to set
    options: tuple[Compiled, ...] = ()
    #: the source port it was asked to try first (compatibility: sameport)
    prefer_port: int = 0


@define
class FakeConnector:
    """Records connects; the test fires ``calls[i].deferred``."""

    calls: list[ConnectCall] = field(factory=list)

    def connect(
        self, family: int, sockaddr: tuple[str, int], **how: Unpack[ConnectOptions]
    ) -> Deferred[socket.socket]:
        def cancel(d: Deferred[socket.socket]) -> None:
            call.cancelled = True

        d: Deferred[socket.socket] = Deferred(cancel)
        call = ConnectCall(
            family,
            sockaddr,
            how.get("source"),
            how.get("timeout", 0.0),
            d,
            source_ports=how.get("source_ports"),
            options=how.get("options", ()),
            prefer_port=how.get("prefer_port", 0),
        )
        self.calls.append(call)
        return d

    #: as :meth:`connect`: a fake target is never connected at once
    try_connect = connect


class FakeRelay(Relay):
    """A relay that records what it was given and ends when told to."""

    kind = "fake"

    def __init__(
        self,
        runtime: Runtime,
        session: SocksSession,
        target: Conn | socket.socket | TransportTarget,
        reply: bytes,
        leftover: bytes,
        io_timeout: float,
        on_end: OnEnd | None = None,
    ) -> None:
        super().__init__(runtime.clock, on_end or session.relay_ended, io_timeout)
        self.session = session
        self.target: Any = target  # Conn, socket or TransportTarget
        self.reply = reply
        self.leftover = leftover
        self.started = False
        self.aborted: EndReason | None = None

    def start(self) -> None:
        self.started = True

    def counts(self) -> tuple[int, int, int, int]:
        return (len(self.leftover), 0, 0, len(self.leftover))

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        self.aborted = reason
        self._ended(reason)

    def end(self, reason: EndReason) -> None:
        """Finish as if both connections had closed."""
        self._ended(reason)


@define
class MemorySession:
    """A session wired to in-memory parts; see :func:`memory_session`."""

    session: SocksSession
    transport: StringTransportWithDisconnection
    clock: MemoryReactorClock
    log: MemoryLog
    connector: FakeConnector
    resolver: StaticResolver
    relays: list[FakeRelay]

    def send(self, data: bytes) -> bytes:
        """Feed ``data`` from the client; return what the server wrote since."""
        self.transport.clear()
        self.session.dataReceived(data)
        return bytes(self.transport.value())


def memory_session(
    config_text: str,
    *,
    client: tuple[str, int] = ("127.0.0.1", 40000),
    server: tuple[str, int] = ("127.0.0.1", 1080),
    forward: Mapping[str, tuple[str, ...]] = {},
    reverse: Mapping[str, tuple[str, ...]] = {},
    listening: set[tuple[str, int]] | None = None,
    auth: Authenticator | None = None,
) -> MemorySession:
    """A connected session for ``config_text`` with every part in memory.

    :param auth: authentication backends (default: built from the config,
        blocking checks run inline).
    """
    clock = MemoryReactorClock()
    log = MemoryLog()
    resolver = StaticResolver(clock, forward, reverse)
    connector = FakeConnector()
    runtime = Runtime(clock, relay_mode="copy", resolver=resolver, connector=connector)  # type: ignore[arg-type]
    runtime.listening = listening if listening is not None else {server}
    relays: list[FakeRelay] = []

    def start_relay(
        session: SocksSession,
        target: Conn | socket.socket | TransportTarget,
        reply: bytes,
        leftover: bytes,
        io_timeout: float,
        on_end: OnEnd | None = None,
    ) -> Relay:
        session.transport.write(reply)  # type: ignore[union-attr]
        relay = FakeRelay(runtime, session, target, reply, leftover, io_timeout, on_end)
        relays.append(relay)
        return relay

    runtime.start_relay = start_relay  # type: ignore[method-assign]
    policy = Policy(parse(config_text, "test.conf"), log, auth=auth, clock=clock)
    session = SocksSession(policy, runtime)
    addr = IPv6Address if ":" in client[0] else IPv4Address
    saddr = IPv6Address if ":" in server[0] else IPv4Address
    transport = StringTransportWithDisconnection(
        hostAddress=saddr("TCP", *server), peerAddress=addr("TCP", *client)
    )
    transport.protocol = session
    session.makeConnection(transport)  # type: ignore[no-untyped-call]
    return MemorySession(session, transport, clock, log, connector, resolver, relays)
