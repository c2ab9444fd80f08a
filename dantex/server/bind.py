"""The BIND command (RFC 1928 §4 and §6, SOCKS 4): Dante's semantics (§2.7).

A listening socket is bound on the external side first, because the
socks-rules see BIND with ``to:`` = the address bound.  The first reply
carries that address (or ``external.advertise``); the first connection to it
gets the second reply, with the connecting peer's address, and is then
relayed over the control connection like a CONNECT (splice or copy relay,
same backpressure and half-close).  Only one connection is taken: if the
request named a peer address, a connection from any other address ends the
session with reply 0x02 (the port is ignored, as Dante does); the peer must
also pass the socks-rules as ``bindreply`` (``from:`` = the peer, ``to:`` =
the client).  Waiting for the peer is bounded by ``timeout.io`` only (Dante
waits as long as the client stays connected; so does the default, 0).

A request for 255.255.255.255 asks for Dante's BIND extension (keep
listening, connect each peer back to the client): refused as danted refuses
it when ``extension: bind`` is off.  Not implemented: Dante 1.4's own client
never sends that request (socksify asks for 0.0.0.0 and its port, observed).

Log lines follow danted 1.4.2 as observed: ``tcp/bind [`` at the first
reply, ``tcp/bindreply [`` at the second, and at the end ``tcp/bindreply ]``
with the counts, ``tcp/bind ]`` without, ``tcp/accept ]``.  In the
``bindreply`` session Dante calls the peer the "local client" and the SOCKS
client the "remote peer"; the end reasons keep that wording.

Not implemented: the BIND extension (above), ``compatibility: sameport``
(binding a privileged port the client asked for).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.log.format import client_text, dante_addr, session_line
from dantex.protocol import socks4
from dantex.protocol.address import Address, AddressType
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match, SocksFacts
from dantex.server.connect import _kernel_source, choose_source, rule_timeout
from dantex.server.context import family_of
from dantex.server.errors import ConnectFailed
from dantex.server.relay import EndReason, Relay

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFDSet

    from dantex.server.session import SocksSession

__all__ = ["BIND_EXTENSION_ADDRESS", "BindWait", "advertised", "start_bind"]

#: The request address that asks for Dante's BIND extension (since 1.2).
BIND_EXTENSION_ADDRESS = "255.255.255.255"
#: Client bytes held while waiting for the peer before the client is paused.
_WAIT_BUFFER = 65536
#: Pending connections the kernel may queue on a BIND socket.
_BACKLOG = 8
#: Where the default route leads, to learn the default source address.
_ROUTE_PROBE: dict[int, str] = {
    socket.AF_INET: "192.0.2.1",
    socket.AF_INET6: "2001:db8::1",
}


def start_bind(session: SocksSession) -> None:
    """Carry out a BIND request for ``session`` (rules are checked here)."""
    target = session.target
    assert target is not None
    if target.type is AddressType.IPV4 and target.host == BIND_EXTENSION_ADDRESS:
        _refuse_extension(session)
        return
    if target.is_ip:
        unspecified = target.host in ("0.0.0.0", "::")
        _listen(session, [] if unspecified else [target.host], family_of(target.host))
        return
    d = session.runtime.resolver.forward(target.host)
    session._pending = d  # type: ignore[assignment]

    def resolved(addresses: tuple[str, ...]) -> None:
        session._pending = None
        if session.version == socks4.VERSION:
            addresses = tuple(a for a in addresses if ":" not in a)
        if not addresses:
            session.refuse(Reply.HOST_UNREACHABLE, f"could not resolve {target.host!r}")
            return
        _listen(session, list(addresses), family_of(addresses[0]))

    d.addCallback(resolved)


def _refuse_extension(session: SocksSession) -> None:
    """Dante's BIND extension, as danted answers it when it is off: 0x02
    echoing the request and one ``tcp/accept ]`` line.  dantex has no
    ``extension: bind`` (no Dante 1.4 client sends this request)."""
    cm = session.client_match
    if cm is not None and session._logs(cm, "disconnect", "error"):
        client = client_text(session.client, session.method, session.user)
        session.policy.log.info(
            session_line(
                "block",
                cm.number,
                "tcp",
                "accept",
                "]",
                f"{client} {dante_addr(session.server)}: blocked by higher-level "
                "socks-rule #0: client requested disabled Dante extension: bind",
            )
        )
    session._write(session.reply(Reply.NOT_ALLOWED, session.target))
    session._close_now(logged=True)


def listen_address(session: SocksSession, family: int, peer: str | None) -> str:
    """The external address to listen on: a concrete one, never a wildcard.

    ``external:`` and ``external.rotation`` decide when configured (Dante
    §2.9); otherwise the kernel's source address towards the expected peer,
    else the default route's, else the address the client connected to.

    :raises ConnectFailed: no usable address of ``family`` (0x08).
    """
    probe = peer or ("0.0.0.0" if family == socket.AF_INET else "::")
    chosen = choose_source(session.policy.config, probe, session.server.host)
    if chosen is not None:
        return chosen
    for where in (peer, _ROUTE_PROBE[family]):
        if where:
            routed = _kernel_source(family, where)
            if routed is not None:
                return routed.partition("%")[0]
    if family_of(session.server.host) == family:
        return session.server.host
    kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
    raise ConnectFailed(
        Reply.ADDRESS_TYPE_NOT_SUPPORTED, f"no {kind} address to bind for the peer"
    )


def advertised(configured: tuple[str, ...], bound: Address) -> Address:
    """``bound``, or the ``*.advertise`` address of its family with its port."""
    for ip in configured:
        if family_of(ip) == family_of(bound.host):
            return Address.from_host(ip, bound.port)
    return bound


def bind_listener(address: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on ``address``, ``port`` if free.

    :raises OSError: not even an ephemeral port can be bound.
    """
    family = family_of(address)
    sock = socket.socket(
        family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            if port == 0:
                raise
            sock.bind((address, 0))  # Dante: any port when the one asked is taken
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _listen(session: SocksSession, expected: list[str], family: int) -> None:
    """Bind and listen, check the socks-rules against the bound address."""
    from dantex.server.session import State

    if session.state is not State.REQUESTED:
        return
    target = session.target
    assert target is not None
    # Dante binds the requested port only when no peer address was given,
    # and never a privileged one (that needs compatibility: sameport).
    port = target.port if not expected and target.port >= 1024 else 0
    try:
        address = listen_address(session, family, expected[0] if expected else None)
        sock = bind_listener(address, port)
    except ConnectFailed as e:
        session.refuse(e.reply, e.reason)
        return
    except OSError as e:
        session.refuse(
            Reply.NETWORK_UNREACHABLE,
            "could not get address to use on external side: failed to bind "
            f"address on external side: {os.strerror(e.errno or errno.EIO)}",
        )
        return
    host, bport = sock.getsockname()[:2]
    bound = Address.from_host(str(host), int(bport))
    facts = SocksFacts(
        session.client,
        bound,
        "bind",
        _proxyprotocol(session),
        socksmethod=session.method,
        user=session.user,
    )

    session.cleanups.append(sock.close)  # if the client leaves during DNS

    def decided(match: Match) -> None:
        if sock.close in session.cleanups:
            session.cleanups.remove(sock.close)
        if session.state is not State.REQUESTED:
            sock.close()
            return
        session.socks_match = match
        if not match.passed:
            sock.close()
            session.blocked(match)
            return
        session.external = bound
        config = session.policy.config
        reply = session.reply(
            Reply.SUCCEEDED, advertised(config.external_advertise, bound), final=False
        )
        session._write(reply)
        wait = BindWait(session, sock, bound, expected)
        session.relay_started(wait)
        wait.start()

    session.decide(
        lambda answers: session.policy.rules.match_socks(facts, answers), decided
    )


def _proxyprotocol(session: SocksSession) -> str:
    return "socks_v4" if session.version == socks4.VERSION else "socks_v5"


@implementer(IReadDescriptor)
class _Listener:
    """The BIND socket in the reactor: hands each accepted connection on."""

    def __init__(self, sock: socket.socket, wait: BindWait) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.wait = wait

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "dantex-bind"

    def doRead(self) -> None:
        try:
            conn, addr = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as e:
            if e.errno in (errno.EPROTO, errno.ENETUNREACH, errno.EHOSTUNREACH):
                return  # the half-open connection died; keep listening (Dante)
            self.wait.failed(f"failed to accept(2) bindreply: {e.strerror}")
            return
        conn.setblocking(False)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.wait.accepted(conn, addr)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the socket (``doRead`` raised): end the wait."""
        if self.wait._listener is self:
            self.wait._listener = None
            self.sock.close()
            self.wait.failed(f"session error ({reason.getErrorMessage()})")


class BindWait(Relay):
    """A session between BIND's two replies: the client is read (for EOF and
    early bytes), the BIND socket is watched for the peer.

    :param expected: the peer addresses allowed to connect (empty: anyone).
    """

    kind = "bind-wait"

    def __init__(
        self,
        session: SocksSession,
        sock: socket.socket,
        bound: Address,
        expected: list[str],
    ) -> None:
        super().__init__(
            session.runtime.clock,
            self._wait_ended,
            rule_timeout(session, "io_tcp"),
        )
        self.session = session
        self.bound = bound
        self.expected = frozenset(expected)
        self.buffered = b""
        self.peer_sock: socket.socket | None = None
        self.peer: Address | None = None
        self.relay: Relay | None = None
        self.reply_match: Match | None = None
        self.reply_started = 0.0
        self._reactor: IReactorFDSet = session.runtime.reactor
        self._listener: _Listener | None = _Listener(sock, self)

    # -- Relay interface, used while waiting ----------

    def start(self) -> None:
        """Resume reading the client and start watching the BIND socket."""
        self.session._resume()
        if self._listener is not None:
            self._reactor.addReader(self._listener)

    def counts(self) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    def client_data(self, data: bytes) -> None:
        """Bytes before the second reply: kept for the peer, bounded."""
        self.buffered += data
        self.last_active = self.session.runtime.clock.seconds()
        if len(self.buffered) >= _WAIT_BUFFER:
            self.session._pause()

    def client_eof(self) -> None:
        """The client closed while we wait: the session ends."""
        self._ended(EndReason("client"))

    def client_lost(self, reason: Failure) -> None:
        """The client's connection is gone."""
        from dantex.server.relay import _error_text

        self._ended(EndReason("client", _error_text(reason)))

    def abort(self, reason: EndReason, *, reset: bool = True) -> None:
        self._ended(reason)

    def failed(self, why: str) -> None:
        """The BIND socket failed: end with ``why``."""
        self._ended(EndReason("error", why))

    # -- the peer ----------

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._reactor.removeReader(listener)
            listener.sock.close()

    def accepted(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        """A connection arrived on the BIND socket: check it, answer, relay."""
        from dantex.server.session import State

        self._stop_listening()
        session = self.session
        peer = Address.from_host(str(addr[0]).partition("%")[0], int(addr[1]))
        self.peer_sock = conn
        self.peer = peer
        self.last_active = session.runtime.clock.seconds()
        if self.expected and peer.host not in self.expected:
            target = session.target
            assert target is not None
            expected = Address.from_host(target.host, 0)
            self._reply_blocked(
                Match(None),
                f"expected bindreply from {dante_addr(expected)}, "
                f"but got it from {dante_addr(peer)}",
            )
            return
        facts = SocksFacts(
            peer,
            session.client,
            "bindreply",
            _proxyprotocol(session),
            socksmethod=session.method,
            user=session.user,
        )

        def decided(match: Match) -> None:
            if session.state is State.CLOSED or self.peer_sock is None:
                return
            if not match.passed:
                self._reply_blocked(match, "")
                return
            self._relay(match)

        session.decide(
            lambda answers: session.policy.rules.match_socks(facts, answers), decided
        )

    def _reply_pair(self) -> str:
        """``peer bound -> internal client`` (the bindreply session's addresses)."""
        session = self.session
        client = client_text(session.client, session.method, session.user)
        return (
            f"{dante_addr(self.peer)} {dante_addr(self.bound)} -> "
            f"{dante_addr(session.server)} {client}"
        )

    def _reply_blocked(self, match: Match, why: str) -> None:
        """The peer may not connect: reply 0x02 with its address, end."""
        session = self.session
        if session._logs(match, "connect", "disconnect", "error"):
            text = self._reply_pair() + (f": {why}" if why else "")
            session.policy.log.info(
                session_line("block", match.number, "tcp", "bindreply", "]", text)
            )
        blocked = (
            f"bind-reply from {dante_addr(self.peer)} "
            f"blocked by socks-rule #{match.number}"
        )
        self._bind_end_lines("block", blocked, counts=None)
        if self.peer_sock is not None:
            self.peer_sock.close()
            self.peer_sock = None
        session._write(session.reply(Reply.NOT_ALLOWED, self.peer))
        self._finish(close=True)

    def _relay(self, match: Match) -> None:
        """Second reply, then relay the peer over the control connection."""
        session = self.session
        conn, self.peer_sock = self.peer_sock, None
        assert conn is not None and self.peer is not None
        self.reply_match = match
        self.reply_started = session.runtime.clock.seconds()
        if session._logs(match, "connect"):
            session.policy.log.info(
                session_line(
                    "pass", match.number, "tcp", "bindreply", "[", self._reply_pair()
                )
            )
        self._stop_timer()
        reply = session.reply(Reply.SUCCEEDED, self.peer)
        codec = session.codec
        assert codec is not None
        leftover = codec.leftover() + self.buffered
        self.buffered = b""
        timeout = self._reply_timeout(match)
        relay = session.runtime.start_relay(
            session, conn, reply, leftover, timeout, on_end=self._relay_ended
        )
        self.relay = relay
        session.relay = relay
        relay.start()

    def _reply_timeout(self, match: Match) -> float:
        rule = match.rule
        if rule is not None and "io_tcp" in rule.timeouts:
            return rule.timeouts["io_tcp"]
        return rule_timeout(self.session, "io_tcp")

    def _stop_timer(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    # -- the end ----------

    def _relay_ended(self, reason: EndReason) -> None:
        """The bindreply relay closed both connections: log the three lines."""
        session = self.session
        relay = self.relay
        assert relay is not None
        c_read, c_written, t_read, t_written = relay.counts()
        now = session.runtime.clock.seconds()
        why = str(_dante_side(reason))
        match = self.reply_match
        if match is not None and session._logs(match, "disconnect"):
            client = client_text(session.client, session.method, session.user)
            text = (
                f"{t_written} -> {dante_addr(self.peer)} {dante_addr(self.bound)} "
                f"-> {t_read}, {c_written} -> {dante_addr(session.server)} {client} "
                f"-> {c_read}: {why}.  "
                f"Session duration: {int(now - self.reply_started)}s"
            )
            session.policy.log.info(
                session_line("pass", match.number, "tcp", "bindreply", "]", text)
            )
        self._bind_end_lines("pass", why, counts=(c_written, c_read))
        session.handler_ended()

    def _wait_ended(self, reason: EndReason) -> None:
        """The session ended before a peer was relayed."""
        if reason.side == "client" and reason.error is None:
            why = "eof from client"
        elif reason.side == "client":
            why = f"local client error ({reason.error})"
        else:
            why = str(reason) if reason.side == "timeout" else reason.error or ""
        self._bind_end_lines("pass", why, counts=None, detail=True)
        self._finish(close=True)

    def _bind_end_lines(
        self,
        verdict: str,
        why: str,
        *,
        counts: tuple[int, int] | None,
        detail: bool = False,
    ) -> None:
        """``tcp/bind ]`` and ``tcp/accept ]`` as danted writes them."""
        session = self.session
        log = session.policy.log
        client = client_text(session.client, session.method, session.user)
        here = f"{client} {dante_addr(session.server)}"
        duration = int(session.runtime.clock.seconds() - session.started)
        flags = ("disconnect",) if verdict == "pass" else ("disconnect", "error")
        match = session.socks_match
        if match is not None and session._logs(match, *flags):
            text = f"{here} -> {dante_addr(self.bound)} {dante_addr(session.target)}"
            if verdict == "block" or detail:
                text += f": {why}"
            log.info(session_line(verdict, match.number, "tcp", "bind", "]", text))
        cm = session.client_match
        if cm is not None and session._logs(cm, *flags):
            if counts is not None:
                text = (
                    f"{counts[0]} -> {here} -> {counts[1]}: {why}.  "
                    f"Session duration: {duration}s"
                )
            else:
                text = f"{here}: {why}"
            log.info(session_line(verdict, cm.number, "tcp", "accept", "]", text))

    def _finish(self, *, close: bool) -> None:
        """Release what the wait holds and end the session."""
        self._stop_timer()
        self._on_end = None
        self._stop_listening()
        if self.peer_sock is not None:
            self.peer_sock.close()
            self.peer_sock = None
        session = self.session
        transport = session.transport
        session.handler_ended()
        if close and transport is not None:
            transport.loseConnection()


def _dante_side(reason: EndReason) -> EndReason:
    """In Dante's bindreply session the peer is the "local client"."""
    swap = {"client": "target", "target": "client"}
    return EndReason(swap.get(reason.side, reason.side), reason.error)
