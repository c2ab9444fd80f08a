"""How a session ends: replies that refuse, Dante's end-of-session lines.

:class:`SessionEnds` is the part of :class:`~dantex.server.session.SocksSession`
that answers and closes: every way out of a session that never reached the
relay (:meth:`~SessionEnds.refuse`, :meth:`~SessionEnds.blocked`,
:meth:`~SessionEnds.finish`) and the bookkeeping of a relayed one, from the
``[`` line when the relay starts to the ``]`` line with the byte counts.
Each connection produces its log lines exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ITransport

from dantex.auth._base import printable
from dantex.log.format import client_text, dante_addr, end_counts, io_text, session_line
from dantex.log.levels import ErrorLevels, tcp_option_lines
from dantex.log.tcpinfo import negotiated
from dantex.protocol import socks4, socks5
from dantex.protocol.address import Address
from dantex.protocol.errors import RemoteProtocolError
from dantex.protocol.socks5 import Reply
from dantex.rules.engine import Match
from dantex.server import httpconnect
from dantex.server._deadlines import DeadlineQueue
from dantex.server._replyreason import reply_reason
from dantex.server._state import EMPTY, State
from dantex.server.connect import rule_timeout

if TYPE_CHECKING:
    from dantex.config.model import Rule
    from dantex.limits.monitors import Member
    from dantex.limits.sessions import Held
    from dantex.server.context import Policy, Runtime
    from dantex.server.relay import EndReason, Relay
    from dantex.server.sockopts import Compiled

__all__ = ["EMPTY", "SessionEnds", "State"]


class SessionEnds:
    """The ways out of a :class:`~dantex.server.session.SocksSession`."""

    # the session's state this part reads and writes (slots of SocksSession;
    # no __slots__ here: the instance has Protocol's __dict__ anyway)
    transport: ITransport | None
    policy: Policy
    runtime: Runtime
    state: State
    version: int
    codec: (
        socks4.Socks4ServerCodec
        | socks5.Socks5ServerCodec
        | httpconnect.HttpTunnelCodec
        | None
    )
    client: Address
    server: Address
    client_rule: Rule | None
    client_match: Match | None
    socks_match: Match | None
    method: str
    user: str | None
    command: str
    target: Address | None
    external: Address | None
    relay: Relay | None
    monitored: Member | None
    limits: Held | None
    started: float
    _deadline: IDelayedCall | DeadlineQueue | None
    _pending: Deferred[object] | None
    cleanups: list[Callable[[], None]]

    def external_options(self) -> tuple[Compiled, ...]:
        """Socket options for this session's sockets towards targets: the
        global ``external.*`` ones, then its socks-rule's."""
        match = self.socks_match
        return self.policy.socket_options(
            "external", match.rule if match is not None else None
        )

    def _logs(self, match: Match, *flags: str) -> bool:
        rule = match.rule
        return rule is None or not rule.log.isdisjoint(flags)

    # -- the ways out ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def reply(
        self, code: int, bound: Address | None = None, *, final: bool = True
    ) -> bytes:
        """The reply bytes for this client's protocol version (not written)."""
        codec = self.codec
        if isinstance(codec, socks5.Socks5ServerCodec):
            if bound is None:
                return codec.reply(code, final=final)
            return codec.reply(code, bound, final=final)
        if isinstance(codec, httpconnect.HttpTunnelCodec):
            return codec.reply(code, bound)
        assert isinstance(codec, socks4.Socks4ServerCodec)
        v4code = (
            socks4.Socks4Reply.GRANTED
            if code == Reply.SUCCEEDED
            else socks4.Socks4Reply.REJECTED
        )
        return codec.reply(v4code, bound, final=final)

    def blocked(self, match: Match, *, reason: str = "") -> None:
        """A socks-rule (or the default rule #0) blocked the request; ``reason``
        says why a passing rule blocked (its authentication check failed)."""
        dlog = self.policy.log
        target = self.target
        assert target is not None
        if self._logs(match, "connect", "disconnect", "error"):
            why = "" if match.rule else ": no rules matched; using default block rule"
            why = f": {reason}" if reason else why
            dlog.info(
                session_line(
                    "block",
                    match.number,
                    self._proto(),
                    self.command,
                    "]",
                    f"{self._pair_text()}{why}",
                )
            )
        self.log_higher_level_block(f"#{match.number}")
        self.count_refusal("auth" if reason else "socks-rule")
        self._write(self.reply(Reply.NOT_ALLOWED, target if target.is_ip else None))
        self._close_now(logged=True)

    def log_higher_level_block(self, socks_rule: str) -> None:
        """The client-rule's ``tcp/accept ]`` line for a request a socks-rule
        blocked (``socks_rule``: ``#N`` and what follows it in the line)."""
        cm = self.client_match
        if cm is not None and self._logs(cm, "disconnect", "error"):
            self.policy.log.info(
                session_line(
                    "block",
                    cm.number,
                    "tcp",
                    "accept",
                    "]",
                    f"{self._client_text()} {dante_addr(self.server)}: "
                    f"blocked by higher-level socks-rule {socks_rule}",
                )
            )

    def refuse(self, code: int, why: str) -> None:
        """Answer a failed request with ``code`` and close, logging ``why``."""
        if self.state is State.CLOSED:
            return
        codec = self.codec
        if code is not None:
            self.count_refusal(reply_reason(code))
        if codec is not None and self.state is State.REQUESTED:
            self._write(self.reply(code))
        elif (
            isinstance(codec, socks5.Socks5ServerCodec)
            and code is not None
            and self.state is State.NEGOTIATING
        ):
            pass
        self.finish(why, reason_side="error")

    def protocol_error(self, e: RemoteProtocolError) -> None:
        """The client broke the protocol: answer as RFC 1928 says, log, close."""
        self.count_refusal("protocol-error")
        codec = self.codec
        if isinstance(codec, httpconnect.HttpTunnelCodec):
            self._write(codec.error_reply(e))
        elif e.reply is not None and codec is not None:
            try:
                if isinstance(codec, socks5.Socks5ServerCodec):
                    self._write(codec.reply(e.reply))
                else:
                    self._write(codec.reply(socks4.Socks4Reply.REJECTED))
            except Exception:
                pass
        self.finish(str(e), reason_side="client")

    def finish(
        self,
        why: str,
        *,
        reason_side: str,
        close: bool = True,
        verdict: str | None = None,
        always: bool = False,
    ) -> None:
        """End a session that never reached the relay, logging why.

        ``verdict`` overrides pass/block in the line; ``always`` logs even
        when the rule's ``log:`` does not ask for errors (failed passwords).
        """
        if self.state is State.CLOSED:
            return
        if verdict == "block":
            self.count_refusal("auth")
        dlog = self.policy.log
        level_match = (
            self.socks_match if self.socks_match is not None else self.client_match
        )
        command = self.command if self.socks_match is not None else "accept"
        line = None
        if level_match is not None:
            verdict = verdict or ("pass" if level_match.passed else "block")
            target = (
                f" -> {dante_addr(self.external)} {dante_addr(self.target)}"
                if self.socks_match is not None
                else ""
            )
            line = session_line(
                verdict,
                level_match.number,
                "tcp" if command == "accept" else self._proto(),
                command,
                "]",
                f"{self._client_text()} {dante_addr(self.server)}{target}: {why}",
            )
            if always or self._logs(level_match, "error", "disconnect"):
                dlog.info(line)
        else:  # before any rule: nothing to ask
            dlog.info(f"{self._client_text()} {dante_addr(self.server)}: {why}")
        side = "internal" if reason_side == "client" else "external"
        self._log_again(side, why, line)
        self._close_now(logged=True, close=close)

    def _levels(self) -> ErrorLevels:
        """``<side>.log.<level>.*`` in force for this session."""
        return self.policy.error_levels(
            self.client_rule, self.socks_match.rule if self.socks_match else None
        )

    def _again(self, side: str, error: str) -> list[str]:
        """``<side>.log.<level>.error``: the levels at which this failure on
        ``side`` is to be logged (again), its symbol being listed there."""
        levels = self._levels()
        return levels.levels(side, error) if levels else []

    def _log_again(self, side: str, error: str, line: str | None) -> None:
        """Log ``line`` (by default the addresses and the error) at the
        levels :meth:`_again` names."""
        for level in self._again(side, error):
            self.policy.log(
                level,
                line or f"{self._client_text()} {dante_addr(self.server)}: {error}",
            )

    def count_refusal(self, reason: str) -> None:
        """Count a refused request in the metrics, when they are on."""
        metrics = self.runtime.metrics
        if metrics is not None:
            metrics.refused(reason)

    def _close_now(self, *, logged: bool, close: bool = True) -> None:
        self.state = State.CLOSED
        self._cleanup()
        transport = self.transport
        if close and transport is not None:
            transport.loseConnection()

    def _cleanup(self) -> None:
        if self.limits is not None:
            self.limits.release(self.runtime.clock.seconds())
        while self.cleanups:
            self.cleanups.pop()()
        self._cancel_deadline()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.cancel()
        self.runtime.sessions.discard(self)

    def _cancel_deadline(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            self._deadline = None
            if isinstance(deadline, DeadlineQueue):
                deadline.remove(self)
            elif deadline.active():
                deadline.cancel()

    def _rule_negotiate_timeout(self, match: Match) -> None:
        """A client-rule's ``timeout.negotiate`` replaces the global one,
        counted from the accept."""
        rule = match.rule
        if rule is None or "negotiate" not in rule.timeouts:
            return
        self._cancel_deadline()
        timeout = rule.timeouts["negotiate"]
        if timeout > 0:
            left = self.started + timeout - self.runtime.clock.seconds()
            self._deadline = self.runtime.clock.callLater(
                max(left, 0.0), self._negotiate_timeout
            )

    def _negotiate_timeout(self) -> None:
        self._deadline = None
        rule = self.client_rule
        timeout = self.policy.timeouts.negotiate
        if rule is not None:
            timeout = rule.timeouts.get("negotiate", timeout)
        self.count_refusal("negotiate-timeout")
        self.finish(f"negotiation timed out after {timeout:g}s", reason_side="timeout")

    def _proto(self) -> str:
        """Dante's protocol word for this session's command: tcp or udp."""
        return "udp" if self.command == "udpassociate" else "tcp"

    def _client_text(self) -> str:
        user = printable(self.user) if self.user is not None else None
        return client_text(self.client, self.method, user)

    # -- relay bookkeeping ---------------------------------------------------

    def relay_started(self, relay: Relay) -> None:
        """The command handler has connected and started ``relay``."""
        self.relay = relay
        self.state = State.RELAYING
        relay.fin_wait = rule_timeout(self, "tcp_fin_wait")
        if self.policy.log_levels_used and self._levels().tcp:
            relay.keep_tcpinfo = True  # <side>.log.<level>.tcp.*: read at the end
        if self.command == "connect" and self.target is not None:
            self.monitored = self.runtime.monitors.attach(
                self.client, self.target, self.command, relay
            )
        match = self.socks_match
        if match is not None and self._logs(match, "connect"):
            self.policy.log.info(
                session_line(
                    "pass", match.number, "tcp", self.command, "[", self._pair_text()
                )
            )

    def log_flags(self) -> frozenset[str]:
        """The ``log:`` flags of the socks-rule that passed this session."""
        match = self.socks_match
        if match is None or match.rule is None:
            return EMPTY
        return match.rule.log

    def io_record(self, from_client: bool, data: bytes) -> None:
        """One relayed read, for ``log: iooperation``/``data`` (a ``-`` line)."""
        match = self.socks_match
        assert match is not None
        here = f"{self._client_text()} {dante_addr(self.server)}"
        there = f"{dante_addr(self.external)} {dante_addr(self.target)}"
        if not from_client:
            here = f"{dante_addr(self.target)} {dante_addr(self.external)}"
            there = f"{dante_addr(self.server)} {self._client_text()}"
        text = io_text(here, there, data, payload="data" in self.log_flags())
        self.policy.log.info(
            session_line("pass", match.number, "tcp", self.command, "-", text)
        )

    def _pair_text(self) -> str:
        """``client internal -> external target`` (external 0.0.0.0.0 if none)."""
        here = f"{self._client_text()} {dante_addr(self.server)}"
        return f"{here} -> {dante_addr(self.external)} {dante_addr(self.target)}"

    def handler_ended(self) -> None:
        """A command handler has logged the end of an established session."""
        self.state = State.CLOSED
        self._cleanup()
        for hook in self.runtime.on_session_end:
            hook(self)

    def relay_ended(self, reason: EndReason) -> None:
        """The relay closed both connections: write the end-of-session lines."""
        self.state = State.CLOSED
        self.runtime.sessions.discard(self)
        if self.limits is not None:
            self.limits.release(self.runtime.clock.seconds())
        relay = self.relay
        assert relay is not None
        if self.monitored is not None:
            self.monitored.ended(reason.side)
        match = self.socks_match
        cm = self.client_match
        socks_line = match is not None and self._logs(match, "disconnect")
        client_line = cm is not None and self._logs(cm, "disconnect")
        if socks_line or client_line:
            self._log_relay_end(relay, reason, socks_line, client_line)
        if self.policy.log_levels_used:
            self._log_levels_at_end(relay, reason)
        for hook in self.runtime.on_session_end:
            hook(self)

    def _log_levels_at_end(self, relay: Relay, reason: EndReason) -> None:
        """``<side>.log.<level>.error`` for the error that ended the relay,
        ``.tcp.disabled|enabled`` for the options its connections have."""
        match = self.socks_match
        again: list[tuple[str, str, str]] = []  # (level, mark, text)
        if reason.error and reason.side in ("client", "target"):
            side = "internal" if reason.side == "client" else "external"
            again += [(lv, "]", str(reason)) for lv in self._again(side, reason.error)]
        if relay.keep_tcpinfo:
            c_info, t_info = relay.tcp_info
            found = tcp_option_lines(
                self._levels().tcp, negotiated(c_info), negotiated(t_info)
            )
            again += [(level, "-", text) for level, text in found]
        for level, mark, text in again:
            pair = f"{self._client_text()} {dante_addr(self.server)}"
            target = f"{dante_addr(self.external)} {dante_addr(self.target)}"
            number = match.number if match is not None else 0
            line = f"{pair} -> {target}: {text}"
            self.policy.log(
                level,
                session_line("pass", number, self._proto(), self.command, mark, line),
            )

    def _log_relay_end(
        self, relay: Relay, reason: EndReason, socks_line: bool, client_line: bool
    ) -> None:
        """The end-of-session lines of the socks-rule and the client-rule."""
        c_read, c_written, t_read, t_written = relay.counts()
        duration = int(self.runtime.clock.seconds() - self.started)
        tail = f": {reason}.  Session duration: {duration}s"
        if relay.want_tcpinfo:
            from dantex.log.tcpinfo import describe

            c_info, t_info = relay.tcp_info
            tail += (
                f".  TCP_INFO: client: {describe(c_info)}; target: {describe(t_info)}"
            )
        dlog = self.policy.log
        match = self.socks_match
        if socks_line:
            assert match is not None
            counts = end_counts(
                c_written,
                f"{self._client_text()} {dante_addr(self.server)}",
                c_read,
                t_written,
                f"{dante_addr(self.external)} {dante_addr(self.target)}",
                t_read,
            )
            dlog.info(
                session_line(
                    "pass", match.number, "tcp", self.command, "]", counts + tail
                )
            )
        cm = self.client_match
        if client_line:
            assert cm is not None
            counts = end_counts(
                c_written, f"{self._client_text()} {dante_addr(self.server)}", c_read
            )
            dlog.info(
                session_line("pass", cm.number, "tcp", "accept", "]", counts + tail)
            )
