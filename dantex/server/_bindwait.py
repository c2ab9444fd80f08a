"""Between BIND's two replies: the wait for the peer, then its relay.

See :mod:`dantex.server.bind` for the semantics and the log lines.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from dantex.log.format import client_text, dante_addr, session_line
from dantex.protocol.address import Address
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match
from dantex.server._state import State
from dantex.server.connect import rule_timeout
from dantex.server.relay import EndReason, Relay, _error_text

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFDSet

    from dantex.server.session import SocksSession

__all__ = ["BindWait"]

#: Client bytes held while waiting for the peer before the client is paused.
_WAIT_BUFFER = 65536


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
    #: bytes for the client right after the second reply (a parent's, when
    #: the BIND went through a route)
    peer_first = b""

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
        facts = session.socks_facts(peer, session.client, "bindreply")

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
        reply = session.reply(Reply.SUCCEEDED, self.peer) + self.peer_first
        codec = session.codec
        assert codec is not None
        leftover = codec.leftover() + self.buffered
        self.buffered = b""
        timeout = self._reply_timeout(match)
        relay = session.runtime.start_relay(
            session, conn, reply, leftover, timeout, on_end=self._relay_ended
        )
        relay.fin_wait = self.fin_wait  # set on this wait by relay_started
        self.relay = relay
        session.relay = relay
        session.monitored = session.runtime.monitors.attach(
            session.client, self.peer, "bind", relay
        )
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
        if session.monitored is not None:  # counted before the relay's gone
            session.monitored.ended(reason.side)
            session.monitored = None
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
