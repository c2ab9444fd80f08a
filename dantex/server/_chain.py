"""Reaching a route's parents: one attempt along one path (see :mod:`.route`).

Without TLS the whole path is negotiated on the server's own lean socket:
the first parent is connected by the server's connector (``external:`` and
``external.rotation`` pick the source address towards it, as danted does),
then each parent's handshake (the sans-IO ones of
:mod:`dantex.client._handshake`) runs in turn over the same byte stream, so
the socket reaches the relay exactly as a direct connection does (splice
relay, no extra copies).  With TLS to any parent the path is built from
dantex's client endpoints around Twisted's TLS, and the relay copies through
the TLS transport (:class:`~dantex.server.relay.TransportTarget`).

Failures are the client connector's typed errors: ``ProxyConnectError``
(the first parent unreachable), a hop's refusal (``ProxyRefusedError`` with
``.reply``), ``ProxyAuthenticationError``, ``ProxyProtocolError``,
``ProxyClosedError`` and ``ProxyTimeoutError`` (``timeout.connect`` for the
whole path), plus :class:`~dantex.server.errors.ConnectFailed` for names a
SOCKS 4 parent needs resolved here.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
)
from twisted.python.failure import Failure

from dantex.client._handshake import (
    Handshake,
    HttpConnectHandshake,
    Socks4Handshake,
    Socks5Handshake,
)
from dantex.client.errors import (
    ProxyClosedError,
    ProxyConnectError,
    ProxyError,
    ProxyTimeoutError,
)
from dantex.protocol.address import Address, AddressType
from dantex.protocol.socks5 import Command, Reply
from dantex.server.connect import redirected_source, source_for
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed
from dantex.server.lean import Conn
from dantex.server.relay import TransportTarget

if TYPE_CHECKING:
    from dantex.server.route import Plan, PlannedHop
    from dantex.server.session import SocksSession

__all__ = ["Attempt", "Reached", "hop_targets"]

_READ_SIZE = 65536


@frozen
class Reached:
    """A path that stands: what the relay needs.

    :ivar target: the connection to the first parent (lean socket, or the TLS
        transport's protocol).
    :ivar bound: the last parent's BND.ADDR/PORT (None from HTTP parents).
    :ivar local: our address towards the first parent.
    :ivar leftover: bytes the last parent sent after its reply.
    """

    target: Conn | TransportTarget
    bound: Address | None
    local: Address
    leftover: bytes


def hop_targets(plan: Plan, target: Address) -> list[Address]:
    """What each parent is asked to reach: the next parent, the last one the
    target."""
    return [h.address for h in plan.hops[1:]] + [target]


def _local_address(sock: socket.socket) -> Address:
    host, port = sock.getsockname()[:2]
    return Address.from_host(str(host).partition("%")[0], int(port))


class Attempt:
    """One try of one plan; ``result`` fires with :class:`Reached` or fails.

    The last parent is asked for ``command`` on ``target``: CONNECT (the
    target), BIND (the expected peer; :attr:`on_first_reply` gets the bound
    address, ``result`` the peer's) or UDP ASSOCIATE (where our datagrams
    come from; ``result``'s ``bound`` is the parent's relay, ``target`` the
    control connection).

    :ivar answered: whether the first parent has said anything (a parent that
        accepts connections but stays silent counts as broken).
    :ivar connected: whether the TCP connection to the first parent stands.
    """

    def __init__(
        self,
        session: SocksSession,
        plan: Plan,
        target: Address,
        timeout: float,
        *,
        command: Command = Command.CONNECT,
        on_first_reply: Callable[[Address], None] | None = None,
    ) -> None:
        self.session = session
        self.plan = plan
        self.target = target
        self.timeout = timeout
        self.command = command
        #: BIND: called with the last parent's first reply (its bound
        #: address); ``timeout`` no longer runs after it.
        self.on_first_reply = on_first_reply
        self.connected = False
        self.answered = False
        self.first_replied = False
        self.result: Deferred[Reached] = Deferred(self._cancel)
        self._step: Deferred[Any] | None = None
        self._conn: Conn | None = None
        self._timer: IDelayedCall | None = None
        self._done = False

    @property
    def first(self) -> PlannedHop:
        """The first parent."""
        return self.plan.hops[0]

    def source(self, ip: str) -> tuple[str | None, tuple[int, int] | None]:
        """Where to connect to the first parent (at ``ip``) from: the usual
        external address, or the route's ``redirect from:`` address and
        source ports.

        :raises ConnectFailed: no usable address.
        """
        session = self.session
        usual = source_for(session.policy, ip, session.server.host)
        return redirected_source(self.plan.route.redirect_from, ip, usual)

    def start(self) -> Deferred[Reached]:
        """Resolve what must be resolved here, then connect."""
        clock = self.session.runtime.clock
        if self.timeout > 0:
            self._timer = clock.callLater(self.timeout, self._timed_out)
        self._resolve_names(self._targets_needing_names())
        return self.result

    # -- names --------------------------------------------------------------

    def _targets_needing_names(self) -> list[str]:
        """Host names to resolve here: the first parent's, and any a SOCKS 4
        parent must be given as an address (danted has no SOCKS 4A)."""
        names = []
        if not Address.from_host(self.first.host, 1).is_ip:
            names.append(self.first.host)
        for hop, asked in self._asks(resolved=False):
            if hop.protocol == "socks_v4" and asked.type is AddressType.DOMAIN:
                names.append(asked.host)
        return names

    def _resolve_names(self, names: list[str]) -> None:
        self._names: dict[str, str] = {}
        resolver = self.session.runtime.resolver
        pending = list(dict.fromkeys(names))

        def next_name(_: object = None) -> None:
            if self._done:
                return
            if not pending:
                self._step = None
                self._connect()
                return
            name = pending.pop(0)
            d = resolver.forward(name)
            self._step = d

            def got(addresses: tuple[str, ...]) -> None:
                v4 = [a for a in addresses if ":" not in a]
                choice = v4[0] if v4 else (addresses[0] if addresses else None)
                if choice is None:
                    self._fail(
                        ConnectFailed(
                            Reply.HOST_UNREACHABLE, f"could not resolve {name!r}"
                        )
                    )
                    return
                self._names[name] = choice
                next_name()

            d.addCallback(got)

        next_name()

    def _ip(self, host: str) -> str:
        return self._names.get(host, host)

    def _asks(self, *, resolved: bool = True) -> list[tuple[PlannedHop, Address]]:
        """Each parent with what it is asked to reach (SOCKS 4 parents get
        the names resolved here)."""
        out = []
        asks = hop_targets(self.plan, self.target)
        for hop, asked in zip(self.plan.hops, asks, strict=True):
            if (
                resolved
                and hop.protocol == "socks_v4"
                and asked.type is AddressType.DOMAIN
            ):
                asked = Address.from_host(self._names[asked.host], asked.port)
            out.append((hop, asked))
        return out

    # -- the first parent -------------------------------------------------------

    def _connect(self) -> None:
        session = self.session
        ip = self._ip(self.first.host)
        if session.runtime.is_own_address(ip, self.first.port, session.server.host):
            self._fail(
                ProxyConnectError(
                    ConnectionRefusedError("the parent is this server itself"),
                    proxy=str(self.first),
                )
            )
            return
        if self.plan.tls:
            self._connect_tls(ip)
            return
        try:
            source, ports = self.source(ip)
        except ConnectFailed as e:
            self._fail(ProxyConnectError(e, proxy=str(self.first)))
            return
        d = session.runtime.connector.connect(
            family_of(ip),
            (ip, self.first.port),
            source=source,
            source_ports=ports,
            options=session.external_options(),
            warn=session.policy.log.warning,
        )
        self._step = d
        d.addCallbacks(self._lean_connected, self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._step = None
        if self._done or failure.check(CancelledError):
            return
        reason = failure.value or ConnectionError("connect failed")
        self._fail(ProxyConnectError(reason, proxy=str(self.first)))

    # -- plain TCP: every handshake on the lean socket ----------------------------

    def _lean_connected(self, conn: Conn | socket.socket) -> None:
        self._step = None
        if not isinstance(conn, Conn):
            conn = Conn(self.session.runtime.reactor, conn)
        if self._done:
            conn.close()
            return
        self.connected = True
        self._conn = conn
        try:
            self._handshakes = self._build_handshakes()
        except ValueError as e:
            self._fail(e)
            return
        self._index = 0
        self._out = b""
        self._bound: Address | None = None
        conn.read_cb = self._readable
        conn.write_cb = self._writable
        conn.lost_cb = self._lost
        conn.set_interest(True, False)
        self._send(self._handshakes[0].start())

    def _build_handshakes(self) -> list[Handshake]:
        asks = self._asks()
        last = len(asks) - 1
        return [
            self._handshake(hop, asked, self.command if i == last else Command.CONNECT)
            for i, (hop, asked) in enumerate(asks)
        ]

    @staticmethod
    def _handshake(hop: PlannedHop, asked: Address, command: Command) -> Handshake:
        """The client handshake one parent runs (sans-IO)."""
        desc = str(hop)
        if hop.protocol == "socks_v5":
            return Socks5Handshake(
                desc, asked, command=command, credentials=hop.credentials
            )
        if hop.protocol == "socks_v4":
            return Socks4Handshake(desc, asked, bind=command == Command.BIND)
        return HttpConnectHandshake(desc, asked, credentials=hop.credentials)

    def _send(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        data = self._out + data
        try:
            sent = conn.sock.send(data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self._fail(
                ProxyClosedError(f"send failed: {e.strerror}", proxy=self._hop())
            )
            return
        self._out = data[sent:]
        conn.set_interest(True, bool(self._out))

    def _writable(self) -> None:
        if not self._done:
            self._send(b"")

    def _readable(self) -> None:
        conn = self._conn
        if self._done or conn is None:
            return
        try:
            data = conn.sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            text = f"connection lost before the proxy answered: {e.strerror}"
            self._fail(ProxyClosedError(text, proxy=self._hop()))
            return
        if not data:
            self._fail(
                ProxyClosedError(
                    "connection closed before the proxy answered", proxy=self._hop()
                )
            )
            return
        self.answered = True
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        while True:
            handshake = self._handshakes[self._index]
            try:
                out, steps = handshake.feed(data)
            except ProxyError as e:
                self._fail(e)
                return
            if out:
                self._send(out)
                if self._done:
                    return
            for step in steps:
                if not step.final:
                    self._first_reply(step.bound)
                    if self._done:
                        return
            if not steps or not steps[-1].final:
                return
            self._bound = steps[-1].bound
            data = handshake.leftover()
            self._index += 1
            if self._index == len(self._handshakes):
                self._lean_reached(data)
                return
            self._send(self._handshakes[self._index].start())
            if self._done or not data:
                return

    def _first_reply(self, bound: Address | None) -> None:
        """BIND's first reply from the last parent: the wait for the peer
        has no time limit of ours (timeout.io is the session's)."""
        self._stop_timer()
        self.first_replied = True
        if self.on_first_reply is not None and bound is not None:
            self.on_first_reply(bound)

    def _lost(self, reason: Failure) -> None:
        if not self._done:
            text = f"connection lost before the proxy answered: {reason.value}"
            self._fail(ProxyClosedError(text, proxy=self._hop()))

    def _hop(self) -> str:
        index = getattr(self, "_index", 0)
        return str(self.plan.hops[min(index, len(self.plan.hops) - 1)])

    def _lean_reached(self, leftover: bytes) -> None:
        conn = self._conn
        assert conn is not None
        if self._out:  # the last request is still being written: cannot happen
            self._fail(ProxyClosedError("unsent request bytes", proxy=self._hop()))
            return
        self._conn = None
        conn.read_cb = conn.write_cb = _nothing
        conn.lost_cb = _ignore
        self._succeed(Reached(conn, self._bound, _local_address(conn.sock), leftover))

    # -- TLS: dantex's endpoints over Twisted's TLS (see ._chaintls) ---------------

    def _connect_tls(self, ip: str) -> None:
        from dantex.server._chaintls import connect_tls

        connect_tls(self, ip)

    def tls_reached(self, reached: Reached) -> None:
        """The TLS path stands (called by ._chaintls)."""
        self._step = None
        self._succeed(reached)

    def tls_failed(self, failure: Failure) -> None:
        """The TLS path failed (called by ._chaintls)."""
        self._step = None
        if self._done or failure.check(CancelledError):
            return
        self._fail(failure.value or Exception("failed"))

    # -- endings ----------------------------------------------------------------

    def _timed_out(self) -> None:
        self._timer = None
        if self._done:
            return
        step, self._step = self._step, None
        error = ProxyTimeoutError(
            "connect" if not self.connected else "negotiate",
            self.timeout,
            proxy=self._hop(),
            target=self.target,
        )
        self._fail(error)
        if step is not None:
            step.cancel()

    def _succeed(self, reached: Reached) -> None:
        self._done = True
        self._stop_timer()
        self.result.callback(reached)

    def _fail(self, error: BaseException) -> None:
        if self._done:
            return
        self._done = True
        self._stop_timer()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(reset=True)
        step, self._step = self._step, None
        self.result.errback(Failure(error))
        if step is not None:
            step.cancel()

    def _cancel(self, d: Deferred[Reached]) -> None:
        if self._done:
            return
        self._done = True
        self._stop_timer()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(reset=True)
        step, self._step = self._step, None
        if step is not None:
            step.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _nothing() -> None:
    return None


def _ignore(reason: Failure) -> None:
    return None
